#!/usr/bin/env bash
# ferrograd's CPU backend beside PyTorch CPU and numpy/OpenBLAS on this machine, in one run:
# the GAN training iteration (ferrograd and PyTorch, 1 and 2 threads; on a processor with AMX
# or AVX512-BF16 also in BF16: --bf16 beside PyTorch's BF16 autocast) and SGEMM at the GAN's
# shapes.
# Installs torch, numpy and threadpoolctl into a venv under /tmp (not part of CI).
# Measure on an idle machine: multithreaded timings suffer most when another process holds a
# core. Record the output, date and machine in benches/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=/tmp/ferrograd-bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check torch numpy threadpoolctl
cargo build --release --example gan_bench
date -u
grep -m1 "model name" /proc/cpuinfo
for threads in 1 2; do
    echo "== $threads thread(s)"
    RAYON_NUM_THREADS=$threads target/release/examples/gan_bench --device cpu
    "$venv/bin/python" benches/gan_pytorch.py --device cpu --threads "$threads"
    if grep -qw -e amx_bf16 -e avx512_bf16 /proc/cpuinfo; then
        # BF16 products (AMX or AVX512-BF16) beside PyTorch's BF16 autocast (oneDNN's kernels).
        RAYON_NUM_THREADS=$threads target/release/examples/gan_bench --device cpu --bf16
        "$venv/bin/python" benches/gan_pytorch.py --device cpu --threads "$threads" --autocast-bf16
    fi
done
echo "== numpy / OpenBLAS, 2 threads (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for it alone)"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 "$venv/bin/python" benches/numpy_sgemm.py
