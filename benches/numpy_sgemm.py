"""SGEMM through numpy (OpenBLAS) at the GAN's shapes and two squares, X · Wᵀ as ferrograd's
linear layer runs it: the reference for ferrograd's CPU GEMM. Prints GFLOP/s per shape (median
of --repeats timed runs) and the BLAS numpy uses.

    python3 benches/numpy_sgemm.py
"""

import argparse
import statistics
import time

import numpy as np

SHAPES = [(64, 100, 256), (64, 256, 512), (64, 512, 1024), (64, 1024, 784), (64, 784, 1024),
          (64, 1024, 512), (64, 512, 256), (1024, 64, 784), (256, 64, 100), (1024, 1024, 1024),
          (2048, 2048, 2048)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture')} "
                         f"{i['num_threads']} threads" for i in threadpool_info())
    except ImportError:
        blas = "threadpoolctl not installed"
    print(f"numpy {np.__version__} | {blas}")
    rng = np.random.default_rng(0)
    for m, k, n in SHAPES:
        x = rng.random((m, k), dtype=np.float32)
        w = rng.random((n, k), dtype=np.float32)
        flops = 2 * m * k * n
        iters = max(1, int(2e9 // flops))
        x @ w.T  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(iters):
                x @ w.T
            times.append((time.perf_counter() - t0) / iters)
        s = statistics.median(times)
        print(f"numpy gemm {m}x{k}x{n}: {s * 1e6:.1f} us, {flops / s / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
