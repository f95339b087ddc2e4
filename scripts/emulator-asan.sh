#!/usr/bin/env bash
# Runs the CUDA kernels' emulator tests with the kernels compiled under AddressSanitizer and
# UndefinedBehaviorSanitizer: a kernel that reads or writes past a buffer it was given (on a
# GPU an illegal address, which ends the CUDA context and with it a GPU run), makes a float4
# access to an address not a multiple of 16 (a GPU's misaligned address, as fatal) or
# overflows an int fails here with a report naming the line.
# Device buffers come from the same size classes as on a GPU (src/backend/cuda/device.rs), so
# what a report flags is past an allocation there too. Part of CI (.ci/run); also worth a run
# before a GPU session. The build goes to target/asan (or $ASAN_TARGET_DIR: CI uses target/,
# its dependencies built already), leaving the usual one alone.
set -euo pipefail
cd "$(dirname "$0")/.."
asan=$(gcc -print-file-name=libasan.so)
[ -e "$asan" ] || { echo "no libasan.so (gcc's AddressSanitizer runtime: Debian's libgcc-12-dev)" >&2; exit 1; }
tests=(cuda_kernels kernel_variants gemm_rules gemm_steps devices emulator)
build=(cargo test --release --no-run --message-format=json)
for test in "${tests[@]}"; do build+=(--test "$test"); done
binaries=$(FERROGRAD_EMULATOR_ASAN=1 CARGO_TARGET_DIR=${ASAN_TARGET_DIR:-target/asan} "${build[@]}" --locked |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
# The runtime must come first (LD_PRELOAD). Fibers switch stacks, which the emulator tells
# ASan of (kernels/emulator/runtime.cpp) but not for its stack-use-after-return check, whose
# "fake stacks" would take a megabyte or more for each of a block's up to 1024 fibers: off.
# LeakSanitizer is on, for the Rust code as much as the emulator's (it runs at each binary's
# exit). A test asks for more memory than there is and expects the allocator's refusal, which
# ASan would turn into an abort unless told to return null, as malloc does.
export ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=0:halt_on_error=1:allocator_may_return_null=1
# Two tests run again the GAN step's kernels that devices' gan_steps runs here too, and would
# take more than half of this script's time (on the 2-core VM, 2026-12-07: 82 s and 62 s of
# 4.6 minutes): the step in other block orders, and checkpoints moved between devices.
# Natively they run in the suite as usual.
skipped=(--skip results_do_not_depend_on_the_order_blocks_run_in
    --skip cuda_emulator::checkpoints_move_between_devices)
for binary in $binaries; do
    echo "== $(basename "$binary") under AddressSanitizer and UndefinedBehaviorSanitizer"
    LD_PRELOAD="$asan" "$binary" --quiet "${skipped[@]}"
done
