"""The mnist_gan training iteration in PyTorch: the reference our timings are compared with.

Same model, optimiser and batch as `examples/mnist_gan/` (G 100-256-512-1024-784 ReLU/Tanh,
D 784-1024-512-256-1 LeakyReLU(0.2)/Dropout(0.3)/Sigmoid, Adam 2e-4 (0.5, 0.999), batch 64;
one iteration = a D step and a G step). Real images are random in [-1, 1]: data loading is not
what is timed.

    python3 benches/gan_pytorch.py --device cuda --mode eager
    python3 benches/gan_pytorch.py --device cuda --mode compile   # torch.compile(reduce-overhead)
    python3 benches/gan_pytorch.py --device cpu --threads 2
    python3 benches/gan_pytorch.py --device cpu --threads 2 --autocast-bf16   # beside --bf16

Prints one line: device, mode, median µs per iteration over --repeats timed runs of --iters
iterations each (after warm-up), and images per second. On CUDA each run is timed with CUDA
events; on the CPU with perf_counter.
"""

import argparse
import statistics
import time

import torch
from torch import nn


def models(device):
    g = nn.Sequential(
        nn.Linear(100, 256), nn.ReLU(),
        nn.Linear(256, 512), nn.ReLU(),
        nn.Linear(512, 1024), nn.ReLU(),
        nn.Linear(1024, 784), nn.Tanh(),
    ).to(device)
    d = nn.Sequential(
        nn.Linear(784, 1024), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Linear(1024, 512), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Linear(256, 1), nn.Sigmoid(),
    ).to(device)
    return g, d


def make_step(g, d, device, batch, autocast_bf16=False):
    bce = nn.BCELoss()
    if autocast_bf16:
        # The networks run under autocast (their linear layers in BF16, as AMX runs them on a
        # CPU that has it); the losses in FP32, as autocast requires of BCELoss.
        def forward(net, x):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return net(x).float()
    else:
        def forward(net, x):
            return net(x)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ones = torch.ones(batch, 1, device=device)
    zeros = torch.zeros(batch, 1, device=device)

    def step(real):
        opt_d.zero_grad()
        fake = forward(g, torch.randn(batch, 100, device=device)).detach()
        d_loss = bce(forward(d, real), ones) + bce(forward(d, fake), zeros)
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        g_loss = bce(forward(d, forward(g, torch.randn(batch, 100, device=device))), ones)
        g_loss.backward()
        opt_g.step()
        return d_loss, g_loss

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mode", choices=["eager", "compile"], default="eager")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=50, help="iterations per timed run")
    parser.add_argument("--repeats", type=int, default=11, help="timed runs (the median is reported)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--autocast-bf16", action="store_true",
                        help="run the networks under torch.autocast(dtype=torch.bfloat16)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    device = torch.device(args.device)
    g, d = models(device)
    step = make_step(g, d, device, args.batch, args.autocast_bf16)
    if args.mode == "compile":
        step = torch.compile(step, mode="reduce-overhead")
    real = torch.rand(args.batch, 784, device=device) * 2 - 1
    cuda = device.type == "cuda"
    for _ in range(args.warmup):
        step(real)
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(args.repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.iters):
                step(real)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3 / args.iters)
        else:
            t0 = time.perf_counter()
            for _ in range(args.iters):
                step(real)
            times.append((time.perf_counter() - t0) * 1e6 / args.iters)
    us = statistics.median(times)
    name = torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    mode = args.mode + (", autocast bf16" if args.autocast_bf16 else "")
    print(f"pytorch {torch.__version__} | {name} | {mode} | {us:.1f} us/iter | "
          f"{args.batch * 1e6 / us:.0f} images/s")


if __name__ == "__main__":
    main()
