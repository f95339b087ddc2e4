"""Refits split-K's plan from a GPU run's `gan_bench --gemm-sweep` lines.

For each setting of the plan's two parameters (the blocks it aims for, `--split-k-blocks`, and
the least k per block, `--split-k-min-k`), the splits it would give each product of the
training iteration (`GemmPlan::choose_for` in src/backend/cuda/launch.rs, mirrored here), and
the sum of the swept kernel times at those splits, weighted by how often an iteration runs each
product. Prints the best settings beside the default (128, 128) and beside each product at its
own best split (the bound no single rule beats).

    python3 benches/fit_split_k.py gpu-bench/sweeps.log

A split the sweep did not time counts at the nearest one it did.
"""

import re
import sys

DEFAULT = (128, 128)
TARGETS = [32, 48, 64, 96, 128, 192, 264, 396, 528]
MIN_KS = [16, 32, 64, 128, 256]
SPLIT_K_MAX_TILES = 1024
LARGE_TILES_TO_FILL = 128

LINE = re.compile(r"gemm sweep (\d+)x(\d+)x(\d+) \((.+), x(\d+)/iter\): planned (\d+) splits "
                  r"([0-9.]+) us \|(.*)\| best (\d+) splits ([0-9.]+) us")


def parse(lines):
    """[(m, k, n, what, per_iteration, {splits: µs})] from the sweep's lines."""
    products = []
    for line in lines:
        found = LINE.match(line.strip())
        if not found:
            continue
        m, k, n, what, per_iteration = (*map(int, found.groups()[:3]), found[4], int(found[5]))
        times = {int(found[6]): float(found[7])}
        for entry in filter(None, (e.strip() for e in found[8].split(","))):
            splits, us = entry.split(":")
            times.setdefault(int(splits), float(us))
        products.append((m, k, n, what, per_iteration, times))
    return products


def ceil_div(a, b):
    return -(-a // b)


def with_splits(k, splits):
    """GemmPlan::with_splits: chunks of whole 16-deep slices, at most `splits` of them."""
    k_chunk = max(16, ceil_div(ceil_div(k, max(splits, 1)), 16) * 16)
    return max(1, ceil_div(k, k_chunk))


def planned_splits(m, k, n, target_blocks, min_k):
    """GemmPlan::choose_for's splits (1 for the large kernel)."""
    if ceil_div(m, 128) * ceil_div(n, 128) >= LARGE_TILES_TO_FILL:
        return 1
    tiles = ceil_div(m, 64) * ceil_div(n, 64)
    target = min(max(target_blocks, 1), SPLIT_K_MAX_TILES)
    return with_splits(k, min(ceil_div(target, tiles), k // min_k))


def time_at(times, splits):
    """The swept time at `splits`, or at the nearest split swept."""
    return times[min(times, key=lambda s: (abs(s - splits), s))]


def total(products, target_blocks, min_k):
    return sum(per * time_at(times, planned_splits(m, k, n, target_blocks, min_k))
               for m, k, n, _, per, times in products)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "sweeps.log"
    with open(path, encoding="utf-8") as log:
        products = parse(log)
    if not products:
        print(f"no 'gemm sweep' lines in {path}")
        return 1
    # The mirror of the plan must give the splits the engine itself planned (default knobs).
    for m, k, n, what, _, times in products:
        ours = planned_splits(m, k, n, *DEFAULT)
        if n != 1 and ours not in times:
            print(f"note: {m}x{k}x{n} ({what}): this script plans {ours} splits, the sweep's "
                  f"plan is not among {sorted(times)} (knobs not at their defaults?)")
    default = total(products, *DEFAULT)
    bound = sum(per * min(times.values()) for *_, per, times in products)
    settings = sorted((total(products, t, k), t, k) for t in TARGETS for k in MIN_KS)
    print(f"{len(products)} products; the iteration's GEMMs (kernel µs, as swept): "
          f"default {DEFAULT} {default:.1f}, each at its own best split {bound:.1f}")
    print("| split-K target blocks | least k per block | GEMM µs per iteration | vs default |")
    print("| --- | --- | --- | --- |")
    for us, target, min_k in settings[:8]:
        print(f"| {target} | {min_k} | {us:.1f} | {default / us:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
