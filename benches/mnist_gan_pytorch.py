"""The mnist_gan training run in PyTorch: the reference a ferrograd run's losses are compared with.

The classic MLP GAN, as `examples/mnist_gan/` trains it: G 100-256-512-1024-784 ReLU/Tanh,
D 784-1024-512-256-1 LeakyReLU(0.2)/Dropout(0.3)/Sigmoid, Adam 2e-4 (0.5, 0.999), batch 64,
MNIST's 60 000 training images scaled to [-1, 1] and shuffled each epoch, the last short batch
kept. One iteration is a D step on a real and a fake batch, then a G step on fresh noise.

    python3 benches/mnist_gan_pytorch.py --data ../shared/data/mnist --out /tmp/torch_gan

It prints a line per epoch in mnist_gan's format (means of d_loss, g_loss, D(x), D(G(z))) and
writes what mnist_gan writes, so the two runs can be laid side by side: `losses.csv` (the same
columns) and `samples_epoch_NNN.png` (an 8 × 8 grid from a fixed noise batch). It needs only
torch and numpy: MNIST's IDX files are read here, and the PNGs written with zlib.
"""

import argparse
import gzip
import os
import struct
import time
import zlib

import numpy as np
import torch
from torch import nn

LATENT_DIM = 100
IMAGE_SIDE = 28
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"


def models():
    g = nn.Sequential(
        nn.Linear(LATENT_DIM, 256), nn.ReLU(),
        nn.Linear(256, 512), nn.ReLU(),
        nn.Linear(512, 1024), nn.ReLU(),
        nn.Linear(1024, IMAGE_SIDE * IMAGE_SIDE), nn.Tanh(),
    )
    d = nn.Sequential(
        nn.Linear(IMAGE_SIDE * IMAGE_SIDE, 1024), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Linear(1024, 512), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Linear(256, 1), nn.Sigmoid(),
    )
    return g, d


def read_images(data_dir):
    """MNIST's training images as a float tensor [60000, 784] in [-1, 1]."""
    path = os.path.join(data_dir, TRAIN_IMAGES)
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x00000803 or rows != IMAGE_SIDE or cols != IMAGE_SIDE:
        raise SystemExit(f"{path}: not MNIST's IDX3 image file (magic {magic:#010x}, {rows} x {cols})")
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16)
    if pixels.size != count * rows * cols:
        raise SystemExit(f"{path}: {pixels.size} pixels for {count} images of {rows} x {cols}")
    images = torch.from_numpy(pixels.reshape(count, rows * cols).astype(np.float32))
    return images / 255.0 * 2.0 - 1.0


def write_grid_png(path, images, cols=8, border=2):
    """`images` ([n, 784] in [-1, 1]) as white digits on black in a gray-bordered grid, as
    mnist_gan draws it: round((x + 1) / 2 · 255) per pixel."""
    pixels = ((images.clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8).numpy()
    n = pixels.shape[0]
    rows = (n + cols - 1) // cols
    cell = IMAGE_SIDE + border
    height, width = rows * cell + border, cols * cell + border
    canvas = np.full((height, width), 64, dtype=np.uint8)
    for i, image in enumerate(pixels.reshape(n, IMAGE_SIDE, IMAGE_SIDE)):
        top, left = (i // cols) * cell + border, (i % cols) * cell + border
        canvas[top:top + IMAGE_SIDE, left:left + IMAGE_SIDE] = image

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    scanlines = b"".join(b"\x00" + canvas[r].tobytes() for r in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
           + chunk(b"IDAT", zlib.compress(scanlines, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/mnist", help="directory holding MNIST's .gz files")
    parser.add_argument("--out", default="runs/mnist_gan_pytorch")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--max-iters", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    os.makedirs(args.out, exist_ok=True)

    images = read_images(args.data).to(device)
    g, d = models()
    g, d = g.to(device), d.to(device)
    bce = nn.BCELoss()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    grid_noise = torch.randn(64, LATENT_DIM, device=device)

    n = images.shape[0]
    batches = (n + args.batch_size - 1) // args.batch_size
    last_step = args.epochs * batches
    if args.max_iters is not None:
        last_step = min(last_step, args.max_iters)
    print(f"training on {n} images, {batches} batches of {args.batch_size} per epoch, "
          f"on {device} (PyTorch {torch.__version__}, {torch.get_num_threads()} threads)", flush=True)
    step = 0
    with open(os.path.join(args.out, "losses.csv"), "w") as csv:
        csv.write("epoch,iter,d_loss,g_loss,d_x,d_g_z\n")
        for epoch in range(args.epochs):
            if step >= last_step:
                break
            started = time.perf_counter()
            sums = torch.zeros(4, dtype=torch.float64)
            done = 0
            order = torch.randperm(n, device=device)
            for start in range(0, n, args.batch_size):
                if step >= last_step:
                    break
                real = images[order[start:start + args.batch_size]]
                rows = real.shape[0]
                ones = torch.ones(rows, 1, device=device)
                zeros = torch.zeros(rows, 1, device=device)

                opt_d.zero_grad()
                fake = g(torch.randn(rows, LATENT_DIM, device=device)).detach()
                d_real, d_fake = d(real), d(fake)
                d_loss = bce(d_real, ones) + bce(d_fake, zeros)
                d_loss.backward()
                opt_d.step()

                opt_g.zero_grad()
                g_loss = bce(d(g(torch.randn(rows, LATENT_DIM, device=device))), ones)
                g_loss.backward()
                opt_g.step()

                stats = torch.stack([d_loss.detach(), g_loss.detach(),
                                     d_real.detach().mean(), d_fake.detach().mean()]).double().cpu()
                sums += stats
                done += 1
                step += 1
                csv.write(f"{epoch + 1},{step}," + ",".join(f"{v:.6g}" for v in stats.tolist()) + "\n")
            seconds = time.perf_counter() - started
            m = (sums / max(done, 1)).tolist()
            print(f"epoch {epoch + 1}/{args.epochs}  d_loss {m[0]:.3f}  g_loss {m[1]:.3f}  "
                  f"D(x) {m[2]:.3f}  D(G(z)) {m[3]:.3f}  ({seconds:.1f} s, {done / seconds:.1f} it/s)",
                  flush=True)
            g.eval()
            with torch.no_grad():
                samples = g(grid_noise).cpu()
            g.train()
            write_grid_png(os.path.join(args.out, f"samples_epoch_{epoch + 1:03}.png"), samples)


if __name__ == "__main__":
    main()
