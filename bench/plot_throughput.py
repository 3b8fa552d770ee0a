"""Plots throughput against concurrency from `compare_redis`'s CSV.

    cargo run --release -p idempotent-bench --example compare_redis
    python3 bench/plot_throughput.py target/compare_redis.csv bench/throughput.png

Needs matplotlib (`pip install matplotlib`). Only the plot needs it: the
runner itself prints every figure.
"""

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

STYLE = {
    "raw GET": dict(color="#555555", linestyle="--", marker="o"),
    "raw EVALSHA (return 1)": dict(color="#999999", linestyle="--", marker="s"),
    "naive GET+SETEX (miss)": dict(color="#d62728", linestyle=":", marker="v"),
    "idempotent replay": dict(color="#1f77b4", linestyle="-", marker="o", linewidth=2.5),
    "idempotent first run": dict(color="#2ca02c", linestyle="-", marker="^", linewidth=2.5),
}


def main(source, target):
    series = defaultdict(list)
    with open(source, newline="") as rows:
        for row in csv.DictReader(rows):
            series[row["scenario"]].append((int(row["tasks"]), float(row["ops_per_sec"])))
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    for name, style in STYLE.items():
        points = sorted(series.get(name, []))
        if points:
            tasks, rates = zip(*points)
            axes.plot(tasks, [rate / 1000 for rate in rates], label=name, **style)
    axes.set_xscale("log", base=2)
    axes.set_xticks([1, 4, 16, 64], labels=["1", "4", "16", "64"])
    axes.set_xlabel("concurrent tasks on one shared connection")
    axes.set_ylabel("thousand operations per second")
    axes.set_title("Redis 7.0, private server, 2-core machine, one client thread")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left")
    cached = sorted(series.get("idempotent replay, cached", []))
    if cached:
        rates = ", ".join(f"{rate / 1e6:.2f} M" for _, rate in cached)
        axes.text(
            0.99, 0.02,
            f"replay with the local cache (no round trip): {rates} ops/s, off the chart",
            transform=axes.transAxes, ha="right", fontsize=8, color="#1f77b4",
        )
    figure.tight_layout()
    figure.savefig(target)


if __name__ == "__main__":
    main(*sys.argv[1:3])
