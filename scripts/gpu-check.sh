#!/usr/bin/env bash
# Prepares the GPU check: builds here (the GPU machines have no Rust toolchain and no internet)
# the release binaries it runs, copies them with MNIST into gpu-check/ (kept out of git through
# .git/info/exclude), and writes the two scripts to run on the GPU machine. gpu-check/run.sh:
#   - NVRTC's report for the GPU's own architecture, the CUDA tests (devices with the GPU
#     required: CPU↔GPU parity of every op, random numbers, training; graph: the captured
#     GAN step replayed on the GPU equals the eager steps, bit for bit; allocator; tf32: the
#     tensor-core GEMM within TF32's precision of the CPU; gemm_rules: products reading ∂L/∂y
#     through an activation's rule give the bits of the rule written out first; small_tiles:
#     32 × 32 tiles give the bits of 64 × 64 ones; tuning: the GEMM autotuner's choices are
#     applied, tuned tiles give the untuned bits; gemm_steps: the teaching GEMM kernels compute
#     the product);
#   - 300 iterations of mnist_gan --device cuda --eager;
#   - then the GPU benchmark's first part, scripts/bench-gpu.sh (in gpu-check/bench): ferrograd
#     and PyTorch side by side, the 100-epoch run, the table for benches/RESULTS.md.
# gpu-check/sweeps.sh: the benchmark's sweeps, then the NVRTC test and `cargo bench --bench
# cuda` in criterion's quick mode (benches/cuda.rs).
# Two device calls, each with carry ["gpu-check"] and every step under a time limit:
# 1. `bash gpu-check/run.sh` (about 5–7 minutes): the CUDA tests, then the benchmark's first
#    part, the figures the targets are judged on and their table (gpu-check.log and bench.log
#    go to $OUT);
# 2. `bash gpu-check/sweeps.sh` (about 4–6 minutes): the benchmark's sweeps (sweeps.log), then
#    the NVRTC test and `cargo bench --bench cuda` in criterion's quick mode (sweeps-check.log).
# If the first run goes wrong, the device time the second would have taken can mend and rerun
# it. Then, if device time is left, `bash gpu-check/bench/profile.sh` (same carry, ~3 minutes):
# Nsight Compute's stall reasons for the GEMMs, to $OUT/ncu.log.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-check
grep -qx "/$out/" .git/info/exclude 2>/dev/null || echo "/$out/" >> .git/info/exclude
rm -rf "$out" && mkdir -p "$out"

cargo build --release --examples
tests=$(cargo test --release --no-run 2>&1 | grep -o 'target/release/deps/[a-z0-9_]*-[0-9a-f]*' | sort -u)
for binary in $tests; do
    name=$(basename "$binary"); name=${name%-*}
    case "$name" in devices | nvrtc | allocator | graph | tf32 | gemm_rules | small_tiles | tuning | gemm_steps) cp "$binary" "$out/$name" ;; esac
done
cp target/release/examples/nvrtc_report "$out/"
bench=$(cargo bench --bench cuda --no-run 2>&1 | grep -o 'target/release/deps/cuda-[0-9a-f]*' | head -1)
cp "$bench" "$out/cuda_bench"
# The device tool carries 64 MiB at most, the repository's files included: every symbol goes
# (nothing looks one up at run time; a panic still prints its message), a quarter of each
# binary. Then the total is checked here, not found out on the GPU machine.
find "$out" -maxdepth 1 -type f -perm -u+x ! -name '*.sh' -exec strip {} +
bash scripts/bench-gpu.sh "$out/bench"

cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# The GPU check, then the GPU benchmark (see scripts/gpu-check.sh). Logs to $OUT (or here).
set -uo pipefail
cd "$(dirname "$0")"
log="${OUT:-.}/gpu-check.log"
source bench/step.sh # the CUDA paths, and `step` (bench-gpu.sh)
export FERROGRAD_REQUIRE_NVRTC=1 FERROGRAD_REQUIRE_GPU=1
step 10 date -u
step 10 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
# The GPU's own architecture only (CI compiles for all of nvrtc::CHECKED_ARCHITECTURES).
arch="sm_$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)"
step 60 ./nvrtc_report --arch "$arch"
step 90 ./graph
step 60 ./devices cuda_gpu # the GPU's tests (CI runs the CPU's and the emulator's)
step 30 ./allocator
step 30 ./tf32
step 60 ./gemm_rules
step 60 ./small_tiles
step 60 ./tuning
step 30 ./gemm_steps every_step # the teaching GEMM kernels (the thread-order test is the emulator's)
step 60 bench/mnist_gan --device cuda --eager --data bench/mnist --out runs/eager --max-iters 300 --overwrite
echo "== gpu check finished with status $status; the benchmark follows" | tee -a "$log"
bash bench/run.sh || status=1
exit $status
RUN
cat > "$out/sweeps.sh" <<'RUN'
#!/usr/bin/env bash
# The second device call of the GPU check (see scripts/gpu-check.sh): the benchmark's sweeps,
# then what matters least. Logs to $OUT (or here).
set -uo pipefail
cd "$(dirname "$0")"
log="${OUT:-.}/sweeps-check.log"
source bench/step.sh
export FERROGRAD_REQUIRE_NVRTC=1
bash bench/sweeps.sh || status=1
# The NVRTC test (it compiles every module and the sweeps' variants, one at a time, up to 90 s:
# CI runs it on the same NVRTC without a GPU, so here it only checks the machine's own library),
# then `cargo bench --bench cuda` (benches/cuda.rs, with the teaching GEMM steps last),
# criterion's quick mode.
step 90 ./nvrtc
step 120 ./cuda_bench --bench --quick
exit $status
RUN
chmod +x "$out/run.sh" "$out/sweeps.sh"
carried=$(du -sb "$out" | cut -f1)
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
total=$((carried + tracked))
echo "$out: $((carried >> 20)) MiB, with the repository's files $((total >> 20)) MiB of the 64 the device tool carries"
[ "$total" -le $((64 << 20)) ] || { echo "too large for the device tool: make $out smaller" >&2; exit 1; }
echo "ready: on the GPU machine run  bash $out/run.sh, then  bash $out/sweeps.sh  (device tool:"
echo "carry [\"$out\"], two calls); then, time permitting,  bash $out/bench/profile.sh  (the same carry)"
