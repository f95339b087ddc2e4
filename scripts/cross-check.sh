#!/usr/bin/env bash
# Builds ferrograd for other systems from this Linux x86-64 machine (README, "Other systems"):
#   1. clippy on every target for macOS on Apple silicon and for Windows (GNU): the crate
#      without its CUDA emulator, as those systems build it. Nothing is linked or run.
#   2. aarch64 Linux: cross-built with the emulator, and tests run under qemu-user.
# Needs (Debian): clang, g++-aarch64-linux-gnu, qemu-user-static; rustup adds the targets.
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
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(autograd gradcheck gemm determinism golden devices cuda_kernels emulator graph)
fi
cargo "${toolchain[@]}" test --locked --release --target aarch64-unknown-linux-gnu "${tests[@]/#/--test=}"
