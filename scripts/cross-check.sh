#!/usr/bin/env bash
# Builds ferrograd for other systems from this Linux x86-64 machine (README, "Other systems"):
#   1. clippy on every target for macOS on Apple silicon and for Windows (GNU): the crate
#      without its CUDA emulator, as those systems build it. Nothing is linked or run.
#   2. aarch64 Linux: clippy on every target, then cross-built with the emulator, and tests
#      run under qemu-user.
#   3. Windows (GNU): every test, cross-built with MinGW and run under Wine (no emulator:
#      Windows has no `ucontext`; no GPU; the MNIST files from ../shared).
#   4. The CPU thread pool's default, on Linux and under Wine: one thread where the process
#      may use one CPU (`taskset`), and, as root, one per core where a faked topology gives
#      every core two CPUs (SMT); between the two, Ctrl-C stopping a Windows run (Wine).
# Needs (Debian): clang, g++-aarch64-linux-gnu, qemu-user-static, gcc-mingw-w64-x86-64,
# wine64; rustup adds the targets.
# Usage: bash scripts/cross-check.sh [test names for step 2, default: the list below]
# With RUST_TOOLCHAIN set (e.g. 1.89, Cargo.toml's rust-version), cargo runs that toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=target/cross${RUST_TOOLCHAIN:+-$RUST_TOOLCHAIN}
toolchain=(${RUST_TOOLCHAIN:+"+$RUST_TOOLCHAIN"})
rustup target add ${RUST_TOOLCHAIN:+--toolchain "$RUST_TOOLCHAIN"} \
    aarch64-apple-darwin x86_64-pc-windows-gnu aarch64-unknown-linux-gnu

# ring (the TLS of MNIST's download) compiles C for the target. Without the target's SDK,
# clang's own headers and these stubs stand in for the few system headers it includes: enough
# to type-check, nothing is linked.
stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT
printf '#define TARGET_OS_IPHONE 0\n#define TARGET_OS_OSX 1\n#define TARGET_OS_MAC 1\n' \
    > "$stubs/TargetConditionals.h"
printf '#define assert(x) ((void)0)\n' > "$stubs/assert.h"
printf '#include <stddef.h>\nvoid *memcpy(void *, const void *, size_t);\nvoid *memset(void *, int, size_t);\nint memcmp(const void *, const void *, size_t);\n' \
    > "$stubs/string.h"
freestanding="-ffreestanding -nostdlibinc -isystem $(clang -print-resource-dir)/include -isystem $stubs"
for target in aarch64-apple-darwin x86_64-pc-windows-gnu; do
    echo "== clippy --target $target"
    var=${target//-/_}
    env "CC_$var=clang" "CFLAGS_$var=$freestanding" \
        cargo "${toolchain[@]}" clippy --locked --target "$target" --all-targets -- -D warnings
done

echo "== aarch64 Linux: tests under qemu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
cargo "${toolchain[@]}" clippy --locked --target aarch64-unknown-linux-gnu --all-targets -- -D warnings
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(autograd gradcheck gemm determinism golden devices cuda_kernels emulator graph)
fi
cargo "${toolchain[@]}" test --locked --release --target aarch64-unknown-linux-gnu "${tests[@]/#/--test=}"

echo "== Windows (GNU): tests under Wine"
# Rust's standard library draws random numbers with ProcessPrng from bcryptprimitives.dll,
# which Debian 12's Wine (8.0) lacks: a stand-in built with MinGW, on Wine's PATH, calls the
# older RtlGenRandom instead. (Where Wine has the DLL, its own in system32 is found first.)
cat > "$stubs/bcryptprimitives.c" <<'STUB'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
STUB
x86_64-w64-mingw32-gcc -O2 -shared -o "$stubs/bcryptprimitives.dll" "$stubs/bcryptprimitives.c" -ladvapi32
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
export WINEPATH="Z:${stubs//\//\\}" WINEDEBUG=-all
cargo "${toolchain[@]}" test --locked --release --target x86_64-pc-windows-gnu

echo "== one CPU allowed (taskset): the thread pool's default on Linux and on Windows (Wine)"
cargo "${toolchain[@]}" build --locked --release --example mnist_gan
linux_gan="$CARGO_TARGET_DIR/release/examples/mnist_gan"
windows_gan="$CARGO_TARGET_DIR/x86_64-pc-windows-gnu/release/examples/mnist_gan.exe"
threads_said() { # the "on cpu (N thread" of a one-step run of the mnist_gan command given
    "$@" --data ../shared/data/mnist --out "$stubs/run" --max-iters 1 --device cpu --overwrite |
        grep -o 'on cpu ([0-9]* thread'
}
export -f threads_said
export stubs
wineserver -k 2> /dev/null || true # a running one would keep its own affinity
for gan in "$linux_gan" "wine $windows_gan"; do
    said=$(threads_said taskset -c 0 $gan)
    echo "taskset -c 0 $gan: $said"
    [ "$said" = "on cpu (1 thread" ]
done
wineserver -k 2> /dev/null || true

echo "== Ctrl-C on Windows (Wine): the run stops after its step, with a checkpoint"
# Wine turns a SIGINT to a console program into CTRL_C_EVENT, what a Windows user's Ctrl-C
# sends: the handler that ctrlc installs with SetConsoleCtrlHandler must stop the run after the
# step in flight, write the checkpoint and say how to continue (exit status 130), as the Unix
# test of the same does with kill (tests/mnist_gan_cli.rs). wine execs the program: `$!` is it.
ctrl_c_out="$stubs/ctrl-c"
wine "$windows_gan" --data ../shared/data/mnist --out "$ctrl_c_out" --device cpu --overwrite \
    > "$stubs/ctrl-c.log" 2>&1 &
windows_run=$!
for _ in $(seq 120); do grep -q "^training on" "$stubs/ctrl-c.log" && break; sleep 0.5; done
sleep 2 # some steps in
kill -INT "$windows_run"
ctrl_c_status=0
wait "$windows_run" || ctrl_c_status=$?
tail -n 3 "$stubs/ctrl-c.log"
if [ "$ctrl_c_status" != 130 ] || ! grep -q "continue with --resume" "$stubs/ctrl-c.log" ||
    [ ! -f "$ctrl_c_out/checkpoint.safetensors" ]; then
    echo "Ctrl-C under Wine: exit status $ctrl_c_status, not 130 with a checkpoint" >&2
    exit 1
fi
wineserver -k 2> /dev/null || true

echo "== SMT, faked: the thread pool's default on Linux and on Windows (Wine)"
# None of this project's machines has SMT. As root, a mount namespace puts a CPU topology of
# its own over /sys/devices/system/cpu: CPUs 2k and 2k + 1 threads of one core. Both systems'
# topology readers (ours on Linux, Wine's for GetLogicalProcessorInformationEx) must then
# count half the CPUs, and mnist_gan start one thread per core.
cpus=$(nproc --all)
if [ "$(id -u)" != 0 ] || [ $((cpus % 2)) != 0 ] || [ "$cpus" -gt 32 ]; then
    echo "skipped: needs root and an even number of CPUs, at most 32 (here $cpus)"
    exit 0
fi
fake="$stubs/cpu"
for file in online possible present offline kernel_max; do
    mkdir -p "$fake" && cat "/sys/devices/system/cpu/$file" > "$fake/$file"
done
for ((cpu = 0; cpu < cpus; cpu++)); do
    topology="$fake/cpu$cpu/topology"
    mkdir -p "$topology"
    cp /sys/devices/system/cpu/cpu$cpu/topology/* "$topology/"
    first=$((cpu / 2 * 2))
    echo $((cpu / 2)) > "$topology/core_id"
    for list in thread_siblings_list core_cpus_list; do echo "$first-$((first + 1))" > "$topology/$list"; done
    for mask in thread_siblings core_cpus; do printf '%x\n' $((3 << first)) > "$topology/$mask"; done
done
wineserver -k 2> /dev/null || true # a running one would answer from the real topology
unshare --mount bash -euo pipefail -c "
    mount --bind '$fake' /sys/devices/system/cpu
    for gan in '$linux_gan' 'wine $windows_gan'; do
        said=\$(threads_said \$gan)
        echo \"\$gan: \$said\"
        [ \"\$said\" = 'on cpu ($((cpus / 2)) thread' ]
    done"
wineserver -k 2> /dev/null || true
