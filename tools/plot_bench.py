#!/usr/bin/env python3
"""Plots `lockstep bench` JSON reports: throughput and latency against message size, as SVG.

Usage: tools/plot_bench.py --out DIR REPORT.json [REPORT.json ...]

Writes DIR/throughput.svg (MB/s delivered, with each report's raw TCP baseline as a dashed
line) and DIR/latency.svg (p50 and p99, microseconds, log scale). Plain SVG written by hand so
that it needs nothing beyond Python's standard library (matplotlib is not on a clean machine).
"""
import argparse
import json
import math
import os

W, H = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 80, 200, 40, 60
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def size_label(b):
    if b >= 1 << 20 and b % (1 << 20) == 0:
        return f"{b >> 20} MiB"
    if b >= 1 << 10 and b % (1 << 10) == 0:
        return f"{b >> 10} KiB"
    return f"{b} B"


def series_of(report):
    rows = [r for r in report["results"] if len(r.get("sizes", [r["size_bytes"]])) == 1]
    groups = {}
    for r in rows:
        key = f'{r["senders"]} senders, {r["mode"]}'
        groups.setdefault(key, []).append(r)
    for key in groups:
        groups[key].sort(key=lambda r: r["size_bytes"])
    return groups


def plot(path, title, ylabel, lines, hlines, ylog):
    xs = [x for _, pts, _ in lines for x, _ in pts] or [1]
    ys = [y for _, pts, _ in lines for _, y in pts if y > 0] + [y for _, y, _ in hlines]
    ys = ys or [1]
    x0, x1 = math.log2(min(xs)), math.log2(max(xs))
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    if ylog:
        y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
        if y0 == y1:
            y1 += 1
    else:
        y0, y1 = 0, max(ys) * 1.1

    def px(x):
        return LEFT + (math.log2(x) - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def py(y):
        v = math.log10(max(y, 1e-9)) if ylog else y
        return H - BOTTOM - (v - y0) / (y1 - y0) * (H - TOP - BOTTOM)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2 - 60}" y="22" font-size="15">{title}</text>',
           f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="black"/>',
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="black"/>',
           f'<text x="{(W - RIGHT + LEFT) / 2 - 40}" y="{H - 15}">message size</text>',
           f'<text x="15" y="{TOP + (H - TOP - BOTTOM) / 2}" transform="rotate(-90 15 {TOP + (H - TOP - BOTTOM) / 2})">{ylabel}</text>']
    for x in sorted(set(xs)):
        out.append(f'<line x1="{px(x)}" y1="{H - BOTTOM}" x2="{px(x)}" y2="{H - BOTTOM + 5}" stroke="black"/>')
        out.append(f'<text x="{px(x) - 18}" y="{H - BOTTOM + 20}">{size_label(x)}</text>')
    ticks = [10 ** e for e in range(y0, y1 + 1)] if ylog else [y1 * k / 5 for k in range(6)]
    for t in ticks:
        out.append(f'<line x1="{LEFT - 5}" y1="{py(t)}" x2="{W - RIGHT}" y2="{py(t)}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 70}" y="{py(t) + 4}">{t:,.0f}</text>')
    legend_y = TOP
    for i, (label, pts, dash) in enumerate(lines):
        color = COLORS[i % len(COLORS)]
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        style = ' stroke-dasharray="4,3"' if dash else ""
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{style}/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        out.append(f'<line x1="{W - RIGHT + 10}" y1="{legend_y}" x2="{W - RIGHT + 30}" y2="{legend_y}" stroke="{color}" stroke-width="2"{style}/>')
        out.append(f'<text x="{W - RIGHT + 35}" y="{legend_y + 4}" font-size="10">{label}</text>')
        legend_y += 16
    for i, (label, y, color) in enumerate(hlines):
        out.append(f'<line x1="{LEFT}" y1="{py(y)}" x2="{W - RIGHT}" y2="{py(y)}" stroke="{color}" stroke-dasharray="6,4"/>')
        out.append(f'<text x="{W - RIGHT + 10}" y="{py(y) + 4}" font-size="10">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("reports", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    throughput, latency, baselines = [], [], []
    for n, path in enumerate(args.reports):
        with open(path) as f:
            report = json.load(f)
        if report.get("schema") != "lockstep-bench/1":
            raise SystemExit(f"{path}: not a lockstep-bench/1 report")
        tag = report["commit"] if len(args.reports) > 1 else ""
        for key, rows in series_of(report).items():
            label = f"{key} {tag}".strip()
            throughput.append((label, [(r["size_bytes"], r["megabytes_per_second"]) for r in rows], False))
            latency.append((f"p50 {label}", [(r["size_bytes"], r["latency_us"]["p50"]) for r in rows], False))
            latency.append((f"p99 {label}", [(r["size_bytes"], r["latency_us"]["p99"]) for r in rows], True))
        raw = report["baseline"]["raw_tcp_megabytes_per_second"]
        baselines.append((f"raw TCP {raw:,.0f} MB/s {tag}".strip(), raw, COLORS[(n + 5) % len(COLORS)]))
    plot(os.path.join(args.out, "throughput.svg"), "Delivered throughput (slowest member)", "MB/s", throughput, baselines, True)
    plot(os.path.join(args.out, "latency.svg"), "Latency, send to delivery", "microseconds", latency, [], True)
    print(f"wrote {args.out}/throughput.svg and {args.out}/latency.svg")


if __name__ == "__main__":
    main()
