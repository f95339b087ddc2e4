"""References for ferrograd's kernels on the same GPU: cuBLAS SGEMM through torch.matmul (TF32
off, so it is true FP32) at the GAN's shapes and at 4096³, and the device-to-device copy
bandwidth that elementwise kernels are held to (bytes read + written).

    python3 benches/cuda_reference.py

Times with CUDA events after warm-up; the median of --repeats runs of --iters calls each.
Inputs are rotated among several copies where they fit in L2, as ferrograd's bench does not.
"""

import argparse
import statistics

import torch

GAN_SHAPES = [(64, 100, 256), (64, 256, 512), (64, 512, 1024), (64, 1024, 784),
              (64, 784, 1024), (64, 1024, 512), (64, 512, 256), (4096, 4096, 4096)]


def median_us(fn, iters, repeats):
    for _ in range(3):
        fn(0)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(iters):
            fn(i)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / iters)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"pytorch {torch.__version__} | {torch.cuda.get_device_name()}")
    for m, k, n in GAN_SHAPES:
        copies = 1 if m * k * n > 1 << 30 else 8  # small operands: rotate so L2 does not flatter
        xs = [torch.rand(m, k, device="cuda") for _ in range(copies)]
        ws = [torch.rand(n, k, device="cuda") for _ in range(copies)]
        us = median_us(lambda i: torch.matmul(xs[i % copies], ws[i % copies].t()), args.iters, args.repeats)
        print(f"cublas gemm {m}x{k}x{n} (X·Wᵀ): {us:.1f} us, {2 * m * k * n / us / 1e3:.1f} GFLOP/s")
    n = 1 << 24
    x, y = torch.rand(n, device="cuda"), torch.empty(n, device="cuda")
    us = median_us(lambda i: y.copy_(x), args.iters, args.repeats)
    print(f"device copy of {n} floats: {us:.1f} us, {2 * 4 * n / us / 1e3:.1f} GB/s (read + write)")


if __name__ == "__main__":
    main()
