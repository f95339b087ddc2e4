#!/usr/bin/env python3
"""Counts the instructions one thread issues along one path through a kernel's SASS.

How the GEMM k-loop figures in benches/RESULTS.md were counted (no GPU needed):

    cargo run --release --example nvrtc_report -- --cubin-dir /tmp/cubins
    cuobjdump -sass /tmp/cubins/gemm.sm_90.cubin > gemm.sass
    python3 benches/sass_path.py gemm.sass gemm_large            # the k-loop's extent
    python3 benches/sass_path.py gemm.sass gemm_large 2120 4d30 2210,2670 --listing

With only a kernel's name it finds the loop with the most FFMA (the k-loop: its backward
branch) and lists its branches. With FROM and TO (hex addresses) it follows the code from
FROM to TO: straight on at a conditional branch unless its address is in TAKEN (hex, comma
separated), always at an unconditional one; an instruction predicated off still counts, as
the scheduler issues it. Choosing TAKEN is reading the listing: which branches an interior
tile's slice takes (copies due, no edge, the layout at hand).
"""
import argparse
import re
import sys
from collections import Counter

LINE = re.compile(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
BRANCH = re.compile(r"\bBRA (?:!?P\w+, )?0x([0-9a-f]+)")


def kernel_code(sass, kernel):
    """[(address, instruction)] of `kernel` in cuobjdump's listing."""
    match = re.search(r"Function : %s\n(.*?)(?=\n\s*Function : |\Z)" % re.escape(kernel), sass, re.S)
    if not match:
        sys.exit(f"no kernel {kernel!r} in the listing")
    return [(int(m.group(1), 16), m.group(2)) for m in map(LINE.match, match.group(1).splitlines()) if m]


def opcode(instruction):
    return re.sub(r"^@!?P\w+\s+", "", instruction).split()[0]


def hottest_loop(code):
    """(first, last) address of the loop whose body holds the most FFMA."""
    best = None
    for address, instruction in code:
        branch = BRANCH.search(instruction)
        if branch and int(branch.group(1), 16) < address:
            first = int(branch.group(1), 16)
            ffma = sum(opcode(i).startswith("FFMA") for a, i in code if first <= a <= address)
            if best is None or ffma > best[0]:
                best = (ffma, first, address)
    if best is None:
        sys.exit("no loop")
    return best[1], best[2]


def follow(code, first, last, taken):
    """The instructions issued from `first` to `last`, branching only where told."""
    at = {address: n for n, (address, _) in enumerate(code)}
    n, path = at[first], []
    while True:
        address, instruction = code[n]
        path.append((address, instruction))
        if address == last or len(path) > 100_000:
            return path
        branch = BRANCH.search(instruction)
        conditional = instruction.startswith("@") or re.search(r"BRA !?P\d", instruction)
        if branch and (not conditional or address in taken):
            n = at[int(branch.group(1), 16)]
        else:
            n += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sass")
    parser.add_argument("kernel")
    parser.add_argument("first", nargs="?", help="hex address to start at")
    parser.add_argument("last", nargs="?", help="hex address to stop at")
    parser.add_argument("taken", nargs="?", default="", help="hex addresses of branches taken")
    parser.add_argument("--listing", action="store_true", help="print the path too")
    args = parser.parse_args()
    code = kernel_code(open(args.sass).read(), args.kernel)
    if args.first is None:
        first, last = hottest_loop(code)
        print(f"{args.kernel}: k-loop 0x{first:x}..0x{last:x}; its branches:")
        for address, instruction in code:
            if first <= address <= last and (BRANCH.search(instruction) or "BAR" in instruction):
                print(f"  {address:05x}  {instruction}")
        return
    taken = {int(a, 16) for a in args.taken.split(",") if a}
    path = follow(code, int(args.first, 16), int(args.last, 16), taken)
    if args.listing:
        for address, instruction in path:
            print(f"  {address:05x}  {instruction}")
    kinds = Counter(opcode(i).split(".")[0] for _, i in path)
    core = kinds["FFMA"] + sum(opcode(i).startswith("LDS.") for _, i in path)
    print(f"{len(path)} instructions: {kinds['FFMA']} FFMA ({kinds['FFMA'] / len(path):.1%}), "
          f"{core} FFMA + LDS.64/128, {len(path) - core} others")
    print("  " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))


if __name__ == "__main__":
    main()
