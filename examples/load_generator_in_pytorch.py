"""Loads the generator of a mnist_gan checkpoint into PyTorch, by name, and samples from it.

    pip install torch safetensors
    python3 examples/load_generator_in_pytorch.py runs/mnist_gan/checkpoint.safetensors

The checkpoint stores the generator under `generator.<index>.<weight|bias>`, f32, in PyTorch's
own layout (Linear weights are [out, in]); stripping the prefix gives an nn.Sequential
state_dict. The script prints G(z) for a fixed, formula-made z, so the output can be compared
with ferrograd's (the test values in README.md were checked this way).
"""

import sys

import torch
from safetensors.torch import load_file

G = torch.nn.Sequential(
    torch.nn.Linear(100, 256), torch.nn.ReLU(),
    torch.nn.Linear(256, 512), torch.nn.ReLU(),
    torch.nn.Linear(512, 1024), torch.nn.ReLU(),
    torch.nn.Linear(1024, 784), torch.nn.Tanh(),
)
state = load_file(sys.argv[1] if len(sys.argv) > 1 else "runs/mnist_gan/checkpoint.safetensors")
prefix = "generator."
G.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

z = torch.tensor([[((i * 37 + row * 11) % 100) / 50.0 - 1.0 for i in range(100)] for row in range(2)])
with torch.no_grad():
    images = G(z)
print("loaded", sum(p.numel() for p in G.parameters()), "generator parameters")
print("G(z)[0, :5] =", [round(v, 6) for v in images[0, :5].tolist()])
print("sum G(z) =", round(images.sum().item(), 4))
