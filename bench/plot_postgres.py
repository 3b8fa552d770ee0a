"""Plots `compare_postgres`'s CSV: throughput against connections, and the
WAL each operation wrote.

    cargo run --release -p idempotent-bench --example compare_postgres
    python3 bench/plot_postgres.py target/compare_postgres.csv bench/postgres.png

Needs matplotlib (`pip install matplotlib`).
"""

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

STYLE = {
    "seed replay (INSERT, SELECT)": dict(color="#ff7f0e", linestyle=":", marker="D"),
    "idempotent replay": dict(color="#1f77b4", linestyle="-", marker="o", linewidth=2.5),
    "seed first run (INSERT, UPDATE)": dict(color="#d62728", linestyle=":", marker="v"),
    "idempotent first run": dict(color="#2ca02c", linestyle="-", marker="^", linewidth=2.5),
}


def main(source, target):
    rates = defaultdict(list)
    wal = defaultdict(list)
    with open(source, newline="") as rows:
        for row in csv.DictReader(rows):
            tasks = int(row["tasks"])
            rates[row["scenario"]].append((tasks, float(row["ops_per_sec"])))
            wal[row["scenario"]].append((tasks, float(row["wal_bytes_per_op"])))
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), dpi=120)
    for name, style in STYLE.items():
        for axes, series, scale in ((left, rates, 1000), (right, wal, 1)):
            points = sorted(series.get(name, []))
            if points:
                tasks, values = zip(*points)
                axes.plot(tasks, [value / scale for value in values], label=name, **style)
    for axes in (left, right):
        axes.set_xscale("log", base=2)
        axes.set_xticks([1, 16, 64], labels=["1", "16", "64"])
        axes.set_xlabel("concurrent tasks, one pooled connection each")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper left", fontsize=8)
    left.set_ylabel("thousand operations per second")
    left.set_title("throughput")
    right.set_ylabel("WAL bytes per operation")
    right.set_title("WAL written")
    figure.suptitle("PostgreSQL, private server, 2-core machine, 2 client workers")
    figure.tight_layout()
    figure.savefig(target)


if __name__ == "__main__":
    main(*sys.argv[1:3])
