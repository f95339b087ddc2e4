"""Reads the logs of one GPU benchmark run (scripts/bench-gpu.sh: gan_bench, gan_pytorch.py,
cuda_reference.py, the 100-epoch run; its first part's bench.log, then the sweeps' sweeps.log)
and prints the comparison table for benches/RESULTS.md: ferrograd beside PyTorch on the same
GPU, the ratio, and the GPU issue's target for it.

    python3 benches/gpu_table.py bench.log sweeps.log

Lines it does not recognise are ignored; a figure missing from the log shows as "—".
"""

import re
import sys

NUMBER = r"([0-9.]+)"
PIPELINED = "pipelined: batch uploaded, stats read a step later"


def parse(lines):
    figures = {}
    tf32, sweep = False, None
    for line in lines:
        if line.startswith("ferrograd "):
            tf32 = "TF32" in line
            sweep = (re.search(r"split-K aiming for (\d+ blocks(?: of k >= \d+)?)", line)
                     or re.search(r"kernels compiled with (.+)$", line)
                     or re.search(r"(programmatic dependent launch)", line)
                     or re.search(r"(32 × 32 GEMM tiles)", line)
                     or re.search(r"(GEMM tiles(?: and splits)? autotuned)", line))
            figures.setdefault("device", line.split(" on ", 1)[-1].split(",")[0].strip())
            if sweep:
                figures.setdefault("sweep", []).append(sweep[1])
        suffix = (" tf32" if tf32 else "") + (f" sk{sweep[1]}" if sweep else "")
        m = re.match(rf"training iteration \(batch 64, (.+?), (.+?)\): {NUMBER} us/iter", line)
        if m:
            figures[f"ours {m[1]} {m[2]}{suffix}"] = float(m[3])
        m = re.match(rf"(baseline|previous): training iteration \(batch 64, (.+?), (.+?)\): "
                     rf"{NUMBER} us/iter", line)
        if m:
            figures[f"{m[1]} {m[2]} {m[3]}"] = float(m[4])
        m = re.match(rf"baseline: gemm (\d+x\d+x\d+) .*: {NUMBER} us, {NUMBER} GFLOP/s", line)
        if m:
            figures[f"baseline gemm {m[1]}"] = float(m[3])
        m = re.match(r"== (baseline|previous): (\S+)", line)
        if m:
            figures[f"{m[1]} rev"] = m[2]
        m = re.match(rf"pytorch \S+ \| (.+?) \| (\w+) \| {NUMBER} us/iter", line)
        if m:
            figures[f"pytorch {m[2]}"] = float(m[3])
            figures["gpu"] = m[1]
        m = re.match(rf"(cublas )?gemm (\d+x\d+x\d+) .*: {NUMBER} us, {NUMBER} GFLOP/s", line)
        if m:
            who = "cublas" if m[1] else "ours"
            figures[f"{who} gemm {m[2]}{'' if m[1] else suffix}"] = float(m[4])
        m = re.match(rf"tanh over \d+ floats.*: {NUMBER} us, {NUMBER} GB/s", line)
        if m and not tf32:
            figures["ours tanh"] = float(m[2])
        m = re.match(rf"device copy of \d+ floats.*: {NUMBER} us, {NUMBER} GB/s", line)
        if m:
            figures["copy"] = float(m[2])
        m = re.match(rf"gemm sweep total: .* take {NUMBER} us as planned, {NUMBER} us at each",
                     line)
        if m:
            figures["gemm sweep planned"], figures["gemm sweep best"] = float(m[1]), float(m[2])
        m = re.match(rf"gemm sweep total with small tiles where they are faster: {NUMBER} us", line)
        if m:
            figures["gemm sweep small"] = float(m[1])
        m = re.match(rf"training iteration \(batch 64, CUDA graph, queued, each product at its "
                     rf"swept best split\): {NUMBER} us/iter.*as planned in the same turns: "
                     rf"{NUMBER} us/iter", line)
        if m:
            figures["swept splits iteration"] = float(m[1])
            figures["swept splits iteration, as planned"] = float(m[2])
        m = re.match(rf"autotune total over \d+ distinct products: planned {NUMBER} us, "
                     rf"chosen {NUMBER} us", line)
        if m and sweep:
            figures[f"autotune planned{suffix}"] = float(m[1])
            figures[f"autotune chosen{suffix}"] = float(m[2])
        m = re.match(rf"mnist_gan 100 epochs: {NUMBER} s", line)
        if m:
            figures["100 epochs"] = float(m[1])
    return figures


def fmt(value, unit=""):
    return "—" if value is None else f"{value:,.1f}{unit}"


def iteration(us):
    return "—" if us is None else f"{64e6 / us:,.0f} ({us:,.1f} µs)"


def ratio(ours, reference, higher_is_better=True):
    if ours is None or reference is None:
        return "—"
    return f"{ours / reference if higher_is_better else reference / ours:.2f}×"


def main():
    lines = []
    for path in sys.argv[1:] or ["bench.log"]:
        with open(path, encoding="utf-8") as log:
            lines.extend(log)
    f = parse(lines)
    get = f.get
    print(f"GPU: {get('gpu', get('device', '?'))}\n")
    print("| measure | ferrograd | PyTorch / cuBLAS | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    rows = [
        ("iteration: our CUDA graph / PyTorch eager", "ours CUDA graph queued", "pytorch eager",
         "≥ 5×"),
        ("iteration: our CUDA graph / torch.compile (reduce-overhead)", "ours CUDA graph queued",
         "pytorch compile", "≥ 1.5×"),
        ("iteration: our eager / PyTorch eager", "ours eager queued", "pytorch eager", ""),
        ("iteration: our CUDA graph, statistics read every step / PyTorch eager",
         "ours CUDA graph stats read each step", "pytorch eager", ""),
        ("iteration: our CUDA graph as mnist_gan runs it (batch uploaded, statistics read a "
         "step later) / PyTorch eager", f"ours CUDA graph {PIPELINED}", "pytorch eager", ""),
        ("iteration: our CUDA graph with TF32 / torch.compile (FP32)",
         "ours CUDA graph queued tf32", "pytorch compile", ""),
        ("iteration: our CUDA graph, GEMM tiles autotuned (mnist_gan's default) / "
         "torch.compile", "ours CUDA graph queued skGEMM tiles autotuned", "pytorch compile",
         "≥ 1.5×"),
        ("iteration: our CUDA graph, GEMM tiles and splits autotuned / torch.compile",
         "ours CUDA graph queued skGEMM tiles and splits autotuned", "pytorch compile", ""),
    ]
    for label, ours, reference, target in rows:
        ours, reference = get(ours), get(reference)  # µs per iteration of batch 64
        print(f"| {label} (images/s, µs/iter) | {iteration(ours)} | {iteration(reference)} | "
              f"{ratio(ours, reference, higher_is_better=False)} | {target} |")
    for which in ["baseline", "previous"]:
        rev = get(f"{which} rev", which)
        for mode in ["eager", "CUDA graph"]:
            ours, before = get(f"ours {mode} queued"), get(f"{which} {mode} queued")
            if before is None and which == "previous":
                continue
            print(f"| iteration, {mode}: now / ferrograd at {rev} (images/s, µs/iter) | "
                  f"{iteration(ours)} | {iteration(before)} (ferrograd at {rev}) | "
                  f"{ratio(ours, before, higher_is_better=False)} | |")
    rev = get("baseline rev", "baseline")
    shapes = sorted({k.split()[-1] for k in f if k.startswith("cublas gemm")},
                    key=lambda s: [int(x) for x in s.split("x")])
    for shape in shapes:
        target = "≥ 0.9×" if shape.startswith("4096") else "≥ 1×"
        ours, cublas = get(f"ours gemm {shape}"), get(f"cublas gemm {shape}")
        print(f"| SGEMM {shape} (GFLOP/s) | {fmt(ours)} | {fmt(cublas)} | {ratio(ours, cublas)} | "
              f"{target} |")
        before = get(f"baseline gemm {shape}")
        if before is not None:
            print(f"| SGEMM {shape}: now / ferrograd at {rev} (GFLOP/s) | {fmt(ours)} | "
                  f"{fmt(before)} (ferrograd at {rev}) | {ratio(ours, before)} | |")
        tf32 = get(f"ours gemm {shape} tf32")
        if tf32 is not None:
            print(f"| TF32 GEMM {shape} (GFLOP/s) | {fmt(tf32)} | {fmt(cublas)} (FP32) | "
                  f"{ratio(tf32, cublas)} | |")
    ours, copy = get("ours tanh"), get("copy")
    print(f"| tanh vs device copy (GB/s, read + write) | {fmt(ours)} | {fmt(copy)} | "
          f"{ratio(ours, copy)} | ≥ 0.9× |")
    print(f"| 100 epochs of mnist_gan (s, wall) | {fmt(get('100 epochs'))} | | | < 60 s |")
    pipelined = get(f"ours CUDA graph {PIPELINED}")
    if pipelined is not None:
        # 100 epochs of 938 batches of 64 (the last one of 32 each epoch, counted as a whole).
        print(f"| 100 epochs projected from the pipelined iteration (93,800 steps; s) | "
              f"{fmt(pipelined * 93_800 / 1e6)} | | | < 60 s |")
    planned, best = get("gemm sweep planned"), get("gemm sweep best")
    if planned is not None:
        print(f"| the iteration's GEMMs (gan_bench --gemm-sweep; kernel µs): at each one's best "
              f"split / as planned | {fmt(best)} | {fmt(planned)} (as planned) | "
              f"{ratio(best, planned, higher_is_better=False)} | |")
    small = get("gemm sweep small")
    if planned is not None and small is not None:
        print(f"| the iteration's GEMMs: at each one's best split, in 32 × 32 tiles where faster / "
              f"as planned | {fmt(small)} | {fmt(planned)} (as planned) | "
              f"{ratio(small, planned, higher_is_better=False)} | |")
    swept, as_planned = get("swept splits iteration"), get("swept splits iteration, as planned")
    if swept is not None:
        print(f"| iteration, CUDA graph, each product at its swept best split / as planned, "
              f"same turns (images/s, µs/iter) | {iteration(swept)} | {iteration(as_planned)} "
              f"(as planned) | {ratio(swept, as_planned, higher_is_better=False)} | |")
    for scope in ["tiles", "tiles and splits"]:
        key = f" skGEMM {scope} autotuned"
        planned, chosen = get("autotune planned" + key), get("autotune chosen" + key)
        if planned is not None:
            print(f"| the iteration's distinct GEMMs, one call each (kernel µs): {scope} autotuned "
                  f"/ as planned | {fmt(chosen)} | {fmt(planned)} (as planned) | "
                  f"{ratio(chosen, planned, higher_is_better=False)} | |")
    if get("sweep"):
        # The sweeps (split-K's target, kernels' compile-time parameters): the defaults beside
        # each other setting.
        settings = ["default"] + get("sweep")
        suffix = lambda s: "" if s == "default" else f" sk{s}"  # noqa: E731
        print("\n| setting | " + " | ".join(settings) + " |")
        print("| --- |" + " --- |" * len(settings))
        keys = ["CUDA graph queued", "eager queued"]
        for key in keys:
            values = [get(f"ours {key}" + suffix(s)) for s in settings]
            print(f"| iteration, {key} (µs) | " + " | ".join(fmt(v) for v in values) + " |")
        for shape in shapes:
            values = [get(f"ours gemm {shape}" + suffix(s)) for s in settings]
            print(f"| SGEMM {shape} (GFLOP/s) | " + " | ".join(fmt(v) for v in values) + " |")


if __name__ == "__main__":
    main()
