#!/usr/bin/env bash
# Prepares the GPU speed measurement (the GPU machines have no Rust toolchain): builds
# examples/gan_bench here into gpu-bench/ (kept out of git through .git/info/exclude) and
# writes gpu-bench/run.sh, which prints, on the GPU, in one run:
#   - ferrograd: the GAN training iteration (µs/iter, images/s) eager and captured as a CUDA
#     graph, each with its statistics read every step and queued; the GEMM at the GAN's
#     shapes and 4096³ (FP32, then again with TF32 tensor cores); tanh's bandwidth;
#   - PyTorch on the same GPU: the same iteration eager and torch.compile(reduce-overhead)
#     (benches/gan_pytorch.py), cuBLAS FP32 GEMM and the copy bandwidth (benches/cuda_reference.py).
# With the device tool: run `bash gpu-bench/run.sh` with carry ["gpu-bench"]; record the
# figures, device and date in benches/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-bench
grep -qx "/$out/" .git/info/exclude 2>/dev/null || echo "/$out/" >> .git/info/exclude
rm -rf "$out" && mkdir -p "$out"
cargo build --release --example gan_bench
cp target/release/examples/gan_bench "$out/"
strip --strip-debug "$out/gan_bench"
cp benches/gan_pytorch.py benches/cuda_reference.py "$out/"
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
set -uo pipefail
cd "$(dirname "$0")"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FERROGRAD_CUDA_INCLUDE=/usr/local/cuda/include
date -u
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
./gan_bench --device cuda
./gan_bench --device cuda --tf32
python3 gan_pytorch.py --device cuda --mode eager
python3 gan_pytorch.py --device cuda --mode compile
python3 cuda_reference.py
RUN
chmod +x "$out/run.sh"
du -sh "$out"
echo "ready: on the GPU machine run  bash $out/run.sh  (device tool: carry [\"$out\"])"
