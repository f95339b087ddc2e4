#!/usr/bin/env bash
# Prepares the GPU check: builds here (the GPU machines have no Rust toolchain and no internet)
# the release binaries it runs, copies them with MNIST into gpu-check/ (kept out of git through
# .git/info/exclude), and writes gpu-check/run.sh, the one command to run on the GPU machine:
#   - NVRTC's report for the GPU's own architecture, the CUDA tests (nvrtc, devices with the
#     GPU required: CPU↔GPU parity of every op, random numbers, training; graph: the captured
#     GAN step replayed on the GPU equals the eager steps, bit for bit; allocator; tf32: the
#     tensor-core GEMM within TF32's precision of the CPU);
#   - one epoch of mnist_gan --device cuda (CUDA graph), 300 iterations with --eager;
#   - gan_bench on the GPU: the iteration eager and as a graph, SGEMM, elementwise bandwidth.
# With the device tool: run `bash gpu-check/run.sh` with carry ["gpu-check"].
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-check
grep -qx "/$out/" .git/info/exclude 2>/dev/null || echo "/$out/" >> .git/info/exclude
rm -rf "$out" && mkdir -p "$out/mnist"

cargo build --release --examples
tests=$(cargo test --release --no-run 2>&1 | grep -o 'target/release/deps/[a-z_]*-[0-9a-f]*' | sort -u)
for binary in $tests; do
    name=$(basename "$binary"); name=${name%-*}
    case "$name" in devices | nvrtc | allocator | graph | tf32) cp "$binary" "$out/$name" ;; esac
done
cp target/release/examples/{mnist_gan,nvrtc_report,gan_bench} "$out/"
find "$out" -maxdepth 1 -type f -exec strip --strip-debug {} + # the device tool carries 64 MiB at most
cp ../shared/data/mnist/*.gz "$out/mnist/"

cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# The GPU check (see scripts/gpu-check.sh). Writes its log to $OUT (or gpu-check/) as well.
set -uo pipefail
cd "$(dirname "$0")"
log="${OUT:-.}/gpu-check.log"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FERROGRAD_CUDA_INCLUDE=/usr/local/cuda/include FERROGRAD_REQUIRE_NVRTC=1 FERROGRAD_REQUIRE_GPU=1
status=0
step() { echo "== $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1; }
step date -u
step nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
step ./nvrtc_report
step ./nvrtc
step ./devices
step ./allocator
step ./graph
step ./tf32
step ./gan_bench --device cuda
step ./mnist_gan --device cuda --data mnist --out "${OUT:-.}/mnist_gan" --epochs 1
step ./mnist_gan --device cuda --eager --data mnist --out "${OUT:-.}/mnist_gan_eager" --max-iters 300
echo "== gpu check finished with status $status" | tee -a "$log"
exit $status
RUN
chmod +x "$out/run.sh"
du -sh "$out"
echo "ready: on the GPU machine run  bash $out/run.sh  (device tool: carry [\"$out\"])"
