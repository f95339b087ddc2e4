"""References for ferrograd's kernels on the same GPU: cuBLAS SGEMM through torch.matmul (TF32
off, so it is true FP32) at the GAN's shapes and at 4096³, and the device-to-device copy
bandwidth that elementwise kernels are held to (bytes read + written).

    python3 benches/cuda_reference.py

Measured as `examples/gan_bench.rs` measures ferrograd's kernels: kernel time, `calls` calls
captured in a CUDA graph and replayed (so the host's launch overhead is left out), the median
of --repeats replays timed with CUDA events; each call on its own copy of the operands, copies
enough that those in rotation hold 128 MiB (more than twice an H100's L2), so no call finds
its inputs in L2 where an earlier one left them.
"""

import argparse
import statistics

import torch

GAN_SHAPES = [(64, 100, 256), (64, 256, 512), (64, 512, 1024), (64, 1024, 784),
              (64, 784, 1024), (64, 1024, 512), (64, 512, 256), (4096, 4096, 4096)]


def rotation(operand_bytes):
    """(copies, calls per graph), as gan_bench's gpu_rotation."""
    copies = min(max(-(-(128 << 20) // operand_bytes), 1), 1024)
    calls = 20 if copies == 1 else max(copies, 200)
    return copies, calls


def graph_median_us(fn, calls, repeats):
    """Time per call of fn(i), i = 0..calls, captured in a CUDA graph and replayed."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
        for i in range(3):
            fn(i)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        keep = [fn(i) for i in range(calls)]  # outputs stay alive: no reuse inside the graph
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / calls)
    del keep
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"pytorch {torch.__version__} | {torch.cuda.get_device_name()}")
    for m, k, n in GAN_SHAPES:
        copies, calls = rotation(4 * (m * k + k * n))
        xs = [torch.rand(m, k, device="cuda") for _ in range(copies)]
        ws = [torch.rand(n, k, device="cuda") for _ in range(copies)]
        us = graph_median_us(lambda i: torch.matmul(xs[i % copies], ws[i % copies].t()), calls, args.repeats)
        print(f"cublas gemm {m}x{k}x{n} (X·Wᵀ, kernel time: {calls} calls in a CUDA graph): "
              f"{us:.1f} us, {2 * m * k * n / us / 1e3:.1f} GFLOP/s")
    n = 1 << 24
    copies, calls = rotation(2 * 4 * n)
    x, y = torch.rand(n, device="cuda"), torch.empty(n, device="cuda")
    us = graph_median_us(lambda i: y.copy_(x), calls, args.repeats)
    print(f"device copy of {n} floats (kernel time: {calls} calls in a CUDA graph): {us:.1f} us, "
          f"{2 * 4 * n / us / 1e3:.1f} GB/s (read + write)")


if __name__ == "__main__":
    main()
