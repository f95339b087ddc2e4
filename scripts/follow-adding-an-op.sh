#!/usr/bin/env bash
# Follows docs/adding-an-op.md as a reader would, to check that the page still works: in a
# scratch worktree of HEAD (target/adding-an-op; the checkout is not touched) it writes the
# page's code where the page says (src/ops/softplus.rs and its `mod` line, the gradient test,
# the CUDA kernels, the kernel test's case, the kernel count raised by two), then runs the
# tests the page names. Builds share this checkout's target/ (the dependencies are not
# rebuilt). tests/nvrtc.rs needs NVRTC as .ci/run sets it up; without, it says it skipped.
# Usage: bash scripts/follow-adding-an-op.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
scratch=target/adding-an-op
git worktree remove --force "$scratch" 2> /dev/null || rm -rf "$scratch"
git worktree add --quiet --detach "$scratch" HEAD
trap 'git -C "$repo" worktree remove --force "$scratch"' EXIT
cd "$scratch"

python3 - << 'EOF'
import re

doc = open("docs/adding-an-op.md").read()
blocks = re.findall(r"```(\w*)\n(.*?)```", doc, re.S)
rust = [code for lang, code in blocks if lang == "rust"]
cuda = [code for lang, code in blocks if lang == "cuda"]
op, gradient_test, kernel_case = rust  # steps 1, 2 and 4, in the page's order
(kernels,) = cuda  # step 3


def edit(path, old, new):
    text = open(path).read()
    if old not in text:
        raise SystemExit(f"{path}: the page's anchor {old!r} is gone")
    open(path, "w").write(text.replace(old, new, 1))


open("src/ops/softplus.rs", "w").write(op)
edit("src/ops/mod.rs", "mod sigmoid;\n", "mod sigmoid;\nmod softplus;\n")
with open("tests/gradcheck.rs", "a") as f:
    f.write("\n" + gradient_test)
with open("kernels/elementwise.cu", "a") as f:
    f.write("\n" + kernels)
cases = "        (\"sigmoid\", Tensor::sigmoid, 0.0, true),\n"
edit("tests/cuda_kernels.rs", "[(&str, Op, f32, bool); 4]", "[(&str, Op, f32, bool); 5]")
edit("tests/cuda_kernels.rs", cases, cases + kernel_case)
text = open("tests/cuda_kernels.rs").read()
count = int(re.search(r"assert_eq!\(count, (\d+)\);", text).group(1))
edit("tests/cuda_kernels.rs", f"assert_eq!(count, {count});", f"assert_eq!(count, {count + 2});")
print(f"followed the page: softplus added, kernel count {count} -> {count + 2}")
EOF

export CARGO_TARGET_DIR="$repo/target"
cargo test --release --test gradcheck softplus
cargo test --release --test cuda_kernels --test nvrtc
echo "docs/adding-an-op.md followed at $(git rev-parse --short HEAD): every test it names passes"
