"""Plots the memory bench from criterion's own output: a call of 200 bytes
(plain, the floor, replay, first run), and replays under contention.

    cargo bench -p idempotent-bench --bench memory -- 'call_200B/(plain|floor_serialize_sha256|replay|first_run)$|memory_contention'
    python3 bench/plot_memory.py target/criterion bench/memory.png

Reads each benchmark's `new/estimates.json` (the median, in ns per
iteration). Needs matplotlib (`pip install matplotlib`).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

CALL = [
    ("plain", "plain call"),
    ("floor_serialize_sha256", "floor: JSON + SHA-256"),
    ("replay", "#[idempotent] replay"),
    ("first_run", "#[idempotent] first run"),
]
CONTENTION_TASKS = [1, 2, 4, 8]


def median_ns(criterion, *path):
    estimates = os.path.join(criterion, *path, "new", "estimates.json")
    try:
        with open(estimates) as file:
            return json.load(file)["median"]["point_estimate"]
    except FileNotFoundError:
        return None


def main(criterion, target):
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), dpi=120)

    bars = [(label, median_ns(criterion, "call_200B", name)) for name, label in CALL]
    bars = [(label, ns) for label, ns in bars if ns is not None]
    if not bars:
        sys.exit(f"no call_200B results under {criterion}: run the bench first")
    labels, values = zip(*bars)
    colors = ["#7f7f7f", "#ff7f0e", "#1f77b4", "#2ca02c"][: len(values)]
    drawn = left.bar(labels, values, color=colors)
    left.bar_label(drawn, labels=[f"{value:.0f} ns" for value in values])
    left.set_ylabel("ns per call (criterion median)")
    left.set_title("one call, 200-byte argument")
    left.tick_params(axis="x", labelrotation=12)

    for name, style in (
        ("one_key", dict(color="#d62728", marker="v", linestyle=":")),
        ("distinct_keys", dict(color="#1f77b4", marker="o", linewidth=2.5)),
    ):
        points = []
        for tasks in CONTENTION_TASKS:
            ns = median_ns(criterion, "memory_contention", name, str(tasks))
            if ns is not None:
                # One iteration is one replay on each of `tasks` tasks.
                points.append((tasks, tasks / ns * 1e3))
        if points:
            tasks, rates = zip(*points)
            right.plot(tasks, rates, label=name.replace("_", " "), **style)
    right.set_ylim(bottom=0)
    right.set_xscale("log", base=2)
    right.set_xticks(CONTENTION_TASKS, [str(t) for t in CONTENTION_TASKS])
    right.set_xlabel("concurrent tasks on a 2-worker runtime")
    right.set_ylabel("million replays per second")
    right.set_title("replays under contention")
    right.grid(alpha=0.3)
    right.legend()

    figure.suptitle("MemoryBackend, criterion, 2-core machine")
    figure.tight_layout()
    figure.savefig(target)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot_memory.py <target/criterion> <out.png>")
    main(sys.argv[1], sys.argv[2])
