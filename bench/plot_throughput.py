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
    "naive GET+JSON (hit)": dict(color="#ff7f0e", linestyle=":", marker="D"),
    "idempotent replay": dict(color="#1f77b4", linestyle="-", marker="o", linewidth=2.5),
    "idempotent first run": dict(color="#2ca02c", linestyle="-", marker="^", linewidth=2.5),
}


TITLES = {
    "current": "one client thread",
    "multi": "2 client worker threads",
}


def main(source, target):
    # setup -> scenario -> [(tasks, ops/s)]; CSVs without a setup column
    # (older runs) are one client thread.
    series = defaultdict(lambda: defaultdict(list))
    with open(source, newline="") as rows:
        for row in csv.DictReader(rows):
            setup = row.get("setup", "current")
            series[setup][row["scenario"]].append((int(row["tasks"]), float(row["ops_per_sec"])))
    setups = [setup for setup in TITLES if setup in series]
    figure, panels = plt.subplots(1, len(setups), figsize=(7 * len(setups), 5), dpi=120, squeeze=False)
    for axes, setup in zip(panels[0], setups):
        plot(axes, setup, series[setup])
    figure.suptitle("Redis 7.0, private server, 2-core machine, one shared connection")
    figure.tight_layout()
    figure.savefig(target)


def plot(axes, setup, series):
    for name, style in STYLE.items():
        points = sorted(series.get(name, []))
        if points:
            tasks, rates = zip(*points)
            axes.plot(tasks, [rate / 1000 for rate in rates], label=name, **style)
    axes.set_xscale("log", base=2)
    axes.set_xticks([1, 4, 16, 64], labels=["1", "4", "16", "64"])
    axes.set_xlabel("concurrent tasks on one shared connection")
    axes.set_ylabel("thousand operations per second")
    axes.set_title(TITLES[setup])
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    cached = sorted(series.get("idempotent replay, cached", []))
    if cached:
        rates = ", ".join(f"{rate / 1e6:.2f} M" for _, rate in cached)
        axes.text(
            0.99, 0.02,
            f"replay with the local cache (no round trip): {rates} ops/s, off the chart",
            transform=axes.transAxes, ha="right", fontsize=7, color="#1f77b4",
        )


if __name__ == "__main__":
    main(*sys.argv[1:3])
