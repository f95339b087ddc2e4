#!/usr/bin/env bash
# Prepares the GPU speed measurement (the GPU machines have no Rust toolchain and no internet):
# builds gan_bench and mnist_gan here into DIR (default gpu-bench/, kept out of git through
# .git/info/exclude) with MNIST and the PyTorch references, and writes three scripts for the
# GPU, each a device call of its own, logging to $OUT when set:
# 1. DIR/run.sh (bench.log), the figures the targets are judged on, most telling first:
#    - ferrograd: the GAN training iteration (µs/iter, images/s) eager and captured as a CUDA
#      graph, each with its statistics read every step, queued, and pipelined as mnist_gan
#      runs it; each kernel's share of the eager iteration (--kernel-times); the GEMM at the
#      GAN's shapes and 4096³; tanh's bandwidth;
#    - the same iteration and GEMMs with the engine as it was at $BASELINE (default daabdd1:
#      the engine of the first H200 run, before the cp.async GEMM pipeline), and the iteration
#      with the engine at $PREVIOUS (default 3b46364: before the activations' backward rules
#      went into the GEMMs, 51 launches a step), for before/after ratios from the same run;
#    - PyTorch on the same GPU: the same iteration eager and torch.compile(reduce-overhead)
#      (benches/gan_pytorch.py), cuBLAS FP32 GEMM and the copy bandwidth
#      (benches/cuda_reference.py);
#    - the classic run's wall time: mnist_gan, 100 epochs, CUDA graph (cut off after 120 s);
#    - the iteration as mnist_gan runs it by default, its products autotuned (--autotune tiles);
#    - the table for benches/RESULTS.md, with the ratios and the targets (benches/gpu_table.py).
# 2. DIR/sweeps.sh (sweeps.log), the data that settles the defaults: the autotuner with splits;
#    each product of the iteration at every split of k (--gemm-sweep) and split-K's plan refitted
#    to it (benches/fit_split_k.py); programmatic dependent launch (--pdl); 32 × 32 GEMM tiles
#    (--small-tiles); split-K's target (half a block and 2 blocks per SM instead of 1); the
#    GEMMs' compile-time parameters (kernels/sweep.txt); TF32 tensor cores. The whole table
#    comes from both logs: python3 benches/gpu_table.py bench.log sweeps.log.
# 3. DIR/profile.sh (ncu.log), if device time is left: Nsight Compute's stall reasons for the
#    GEMMs, and their shared-memory wavefronts and bank conflicts beside the emulator's counts
#    (cargo run --release --example bank_conflicts).
# Two calls rather than one: the first is what the targets need, and a first run gone wrong
# (a GPU-only failure) then leaves device time to mend it and run it again.
# With the device tool: run `bash gpu-bench/run.sh`, then `bash gpu-bench/sweeps.sh`, each with
# carry ["gpu-bench"]; record the figures, device and date in benches/RESULTS.md.
# scripts/gpu-check.sh includes all of this.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-bench}
case "$out" in
    */*) ;; # inside a folder that is excluded already (gpu-check/bench)
    *) grep -qx "/$out/" .git/info/exclude 2>/dev/null || echo "/$out/" >> .git/info/exclude ;;
esac
rm -rf "$out" && mkdir -p "$out/mnist"
cargo build --release --example gan_bench --example mnist_gan
cp target/release/examples/{gan_bench,mnist_gan} "$out/"
strip "$out/gan_bench" "$out/mnist_gan" # the device tool carries 64 MiB at most (gpu-check.sh)
cp benches/gan_pytorch.py benches/cuda_reference.py benches/gpu_table.py benches/fit_split_k.py "$out/"
cp kernels/sweep.txt "$out/"
# The baselines: gan_bench built from earlier commits, each in a worktree of its own.
build_gan_bench_at() { # rev name
    local worktree
    worktree=$(mktemp -d)
    git worktree add --quiet --detach "$worktree" "$1"
    (cd "$worktree" && CARGO_TARGET_DIR="$OLDPWD/target/$2" cargo build --quiet --release --example gan_bench)
    cp "target/$2/release/examples/gan_bench" "$out/$2_gan_bench"
    git worktree remove --force "$worktree"
    strip "$out/$2_gan_bench"
    echo "$1 $(git log -1 --format='%h %cs' "$1")" > "$out/$2.txt"
}
build_gan_bench_at "${BASELINE:-daabdd1}" baseline
build_gan_bench_at "${PREVIOUS:-3b46364}" previous
cp ../shared/data/mnist/*.gz "$out/mnist/"
# What the benchmark's scripts (and gpu-check's) share: the CUDA paths, and `step`, which runs a command under
# a time limit (a hung or slow step costs its limit, not the run) and logs it to $log.
cat > "$out/step.sh" <<'RUN'
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FERROGRAD_CUDA_INCLUDE=/usr/local/cuda/include
status=0
step() { local limit=$1; shift; echo "== $*" | tee -a "$log"; timeout "$limit" "$@" 2>&1 | tee -a "$log"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1; }
RUN
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# The GPU benchmark's first part (see scripts/bench-gpu.sh): the figures the targets are judged
# on, most telling first, and the table. The sweeps are a second device call (sweeps.sh), so
# that a first run gone wrong leaves device time to mend it and run it again.
set -uo pipefail
cd "$(dirname "$0")"
log="${OUT:-.}/bench.log"
source ./step.sh
step 10 date -u
step 10 nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
step 60 ./gan_bench --device cuda --kernel-times
echo "== baseline: $(cat baseline.txt)" | tee -a "$log"
timeout 60 ./baseline_gan_bench --device cuda 2>&1 | sed 's/^/baseline: /' | tee -a "$log"
echo "== previous: $(cat previous.txt)" | tee -a "$log"
timeout 45 ./previous_gan_bench --device cuda --iteration-only 2>&1 | sed 's/^/previous: /' | tee -a "$log"
step 60 python3 gan_pytorch.py --device cuda --mode eager
step 90 python3 cuda_reference.py
step 150 python3 gan_pytorch.py --device cuda --mode compile
earlier=$status status=0 start=$(date +%s%N)
step 120 ./mnist_gan --device cuda --data mnist --out runs/mnist_gan_100 --epochs 100 --overwrite
ms=$((($(date +%s%N) - start) / 1000000))
if [ "$status" -eq 0 ]; then
    printf 'mnist_gan 100 epochs: %d.%03d s wall\n' $((ms / 1000)) $((ms % 1000)) | tee -a "$log"
else
    echo "mnist_gan 100 epochs: not timed (it failed, or was cut off after 120 s)" | tee -a "$log"
fi
status=$((earlier | status))
cp runs/mnist_gan_100/{samples_latest.png,losses.svg} "${OUT:-.}/" 2>/dev/null
# The step as mnist_gan runs it by default: each product tuned in 64 × 64 or 32 × 32 tiles
# (Gan::tune_products; the same bits).
step 45 ./gan_bench --device cuda --autotune tiles --repeats 3
python3 gpu_table.py "$log" | tee -a "$log"
exit $status
RUN
cat > "$out/sweeps.sh" <<'RUN'
#!/usr/bin/env bash
# The GPU benchmark's second part (see scripts/bench-gpu.sh), a device call after run.sh: the
# sweeps that settle the defaults, logged to sweeps.log. The whole table comes from both logs:
# python3 benches/gpu_table.py bench.log sweeps.log.
set -uo pipefail
cd "$(dirname "$0")"
log="${OUT:-.}/sweeps.log"
source ./step.sh
step 10 date -u
# The GEMM autotuner with splits as well (last-bit differences from untuned).
step 60 ./gan_bench --device cuda --autotune splits --repeats 3
# Every product of the iteration at each split of k, then the iteration with each product at
# its best split beside the iteration as planned: the data for split-K's plan.
step 75 ./gan_bench --device cuda --gemm-sweep --repeats 3
# Programmatic dependent launch: each kernel scheduled while the one before it still runs.
step 45 ./gan_bench --device cuda --pdl --repeats 3
# The FP32 products in 32 × 32 tiles (set_small_tiles): the same bits, 4× the blocks.
step 45 ./gan_bench --device cuda --small-tiles --repeats 3
step 45 ./gan_bench --device cuda --split-k-blocks 64 --repeats 3
step 45 ./gan_bench --device cuda --split-k-blocks 264 --repeats 3
# The GEMMs' compile-time parameters, compiled in by NVRTC: each variant of kernels/sweep.txt
# (the batch-64 kernels' pipeline depth and rule look-ahead, gemm_large's slice and pipeline
# depths; each checked on the emulator to give the defaults' bits, tests/kernel_variants.rs).
mapfile -t variants < <(grep -v '^#' sweep.txt | grep -v '^ *$')
for defines in "${variants[@]}"; do
    echo "== FERROGRAD_KERNEL_DEFINES=\"$defines\"" | tee -a "$log"
    FERROGRAD_KERNEL_DEFINES="$defines" step 45 ./gan_bench --device cuda --repeats 3
done
# TF32 tensor cores (opt-in, off by default as in PyTorch): last, as no default depends on it.
step 60 ./gan_bench --device cuda --tf32
python3 gpu_table.py "$log" | tee -a "$log"
python3 fit_split_k.py "$log" | tee -a "$log"
exit $status
RUN
chmod +x "$out/run.sh" "$out/sweeps.sh"
cat > "$out/profile.sh" <<'RUN'
#!/usr/bin/env bash
# Nsight Compute on the GEMMs (see scripts/bench-gpu.sh), a second device call after run.sh:
# the batch-64 gemm launches of an iteration and the 4096³ gemm_large one, with the warps'
# stall reasons (what each warp waited on, per instruction issued) and the memory tables: each
# kind of shared-memory access's wavefronts and bank conflicts, what the emulator counts on
# any machine (examples/bank_conflicts.rs; a GAN step's within 0.1 % of the ideal since
# 2026-12-08), here as the GPU meets them. Logs to $OUT/ncu.log.
set -uo pipefail
cd "$(dirname "$0")"
log="${OUT:-.}/ncu.log"
source ./step.sh
export PATH="$PATH:/usr/local/cuda/bin"
stalls='regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
sections="--section SpeedOfLight --section LaunchStats --section Occupancy \
    --section SchedulerStats --section WarpStateStats --section InstructionStats \
    --section MemoryWorkloadAnalysis_Tables"
step 90 ncu --kernel-name regex:'^gemm$' --launch-count 3 $sections --metrics "$stalls" \
    ./gan_bench --device cuda --iteration-only --repeats 1
# The 4096³ product (the first gemm_large launch of the benchmark).
step 90 ncu --kernel-name gemm_large --launch-count 1 $sections --metrics "$stalls" \
    ./gan_bench --device cuda --repeats 1
exit $status
RUN
chmod +x "$out/profile.sh"
du -sh "$out"
echo "ready: on the GPU machine run  bash $out/run.sh, then  bash $out/sweeps.sh  (device tool: carry [\"$out\"])"
