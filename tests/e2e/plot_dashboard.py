#!/usr/bin/python3
"""Draws dashboard-like panels from the Prometheus data of the end-to-end alert test.

The input is the JSON that tests/e2e/prometheus.rs writes when ZOMBIE_PLOT_DIR is set:
query_range results (zombie_processes, zombie_oldest_age_seconds, zombie_node_pids, ALERTS,
...) over the test's window, and the moments the test saw (container started, alert pending,
firing, container removed, resolved). Needs Debian's python3-matplotlib.

    ZOMBIE_PLOT_DIR=/tmp/plot cargo test -p zombie-tests --test e2e -- prometheus
    /usr/bin/python3 tests/e2e/plot_dashboard.py /tmp/plot/prometheus-e2e.json deploy/grafana/dashboard-e2e.png

Per-pod panels show the test's pod only (other pods on the node are left out unless
--all-pods is given); node panels show the whole node.
"""

import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display: render straight to a file
import matplotlib.pyplot as plt  # noqa: E402

ALERT_COLOURS = {"pending": "#f2c744", "firing": "#e0523f"}


def series(doc, name):
    """The query_range matrix of query `name`: [(labels, [(t, value)])]."""
    result = doc["queries"].get(name, {}).get("result", [])
    return [
        (r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in result
    ]


def zero_filled(points, start, end, step):
    """`points` on the query's whole time grid, 0 where the series is absent: the daemon
    exports a pod's series only while the pod has zombies (or PID accounting)."""
    have = {round(t, 3): v for t, v in points}
    n = int(round((end - start) / step))
    grid = [round(start + i * step, 3) for i in range(n + 1)]
    return [(t, have.get(t, 0.0)) for t in grid]


def pod_label(labels):
    pod = labels.get("pod", "")
    if not pod:
        return "host processes"
    ns = labels.get("namespace", "")
    # Without a container runtime the pod label is the pod UID: shorten it.
    return f"{ns}/{pod}" if ns else f"pod {pod[:8]}…"


def spans(points, step):
    """Contiguous time ranges covered by samples spaced `step` apart."""
    out = []
    for t, _ in points:
        if out and t - out[-1][1] <= step * 1.5:
            out[-1][1] = t
        else:
            out.append([t, t])
    return [(a, b + step) for a, b in out]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="prometheus-e2e.json written by the e2e test")
    ap.add_argument("output", help="PNG to write")
    ap.add_argument("--all-pods", action="store_true", help="plot every pod on the node")
    args = ap.parse_args()

    with open(args.input) as f:
        doc = json.load(f)
    ctx = doc["context"]
    events = ctx["events"]
    t0 = events["container_started"]
    step = doc["step"]

    def ours(labels):
        return args.all_pods or labels.get("pod") == ctx["pod"]

    def rel(points, fill=False):
        if fill:
            points = zero_filled(points, doc["start"], doc["end"], step)
        return [t - t0 for t, _ in points], [v for _, v in points]

    fig, axes = plt.subplots(3, 1, figsize=(8, 7.2), sharex=True, dpi=100)
    fig.suptitle(
        "zombie-daemon scraped by a real Prometheus: 2 zombies in a runc container",
        fontsize=12,
    )

    # Alert state behind every panel, as Grafana's alert annotations do.
    alert_spans = []
    for labels, points in series(doc, "alerts"):
        if ours(labels):
            for a, b in spans(points, step):
                alert_spans.append((labels["alertstate"], a - t0, b - t0))
    for ax in axes:
        for state, a, b in alert_spans:
            ax.axvspan(a, b, color=ALERT_COLOURS[state], alpha=0.25, lw=0)
        for name in ["container_started", "container_removed"]:
            ax.axvline(events[name] - t0, color="grey", ls="--", lw=0.8)
        ax.grid(True, alpha=0.3)

    ax = axes[0]
    ax.set_title("Zombies per pod  (namespace_pod:zombie_processes:sum)", fontsize=10)
    for labels, points in series(doc, "zombies_per_pod"):
        if ours(labels):
            x, y = rel(points, fill=True)
            ax.step(x, y, where="post", lw=2, label=pod_label(labels))
    ax.set_ylabel("zombies")
    ax.set_ylim(0, None)
    ymax = ax.get_ylim()[1]
    ax.set_ylim(0, max(ymax, 3))
    top = ax.get_ylim()[1]
    ax.text(0.1, top * 0.92, "container\nstarted", fontsize=8, va="top", color="dimgrey")
    ax.text(
        events["container_removed"] - t0 + 0.1,
        top * 0.92,
        "container\nremoved",
        fontsize=8,
        va="top",
        color="dimgrey",
    )
    handles, labels = ax.get_legend_handles_labels()
    for state, colour in ALERT_COLOURS.items():
        handles.append(plt.Rectangle((0, 0), 1, 1, color=colour, alpha=0.4))
        labels.append(f"{ctx['alert']} {state}")
    ax.legend(handles, labels, loc="center left", fontsize=8)

    ax = axes[1]
    ax.set_title(
        "Oldest zombie per pod  (namespace_pod:zombie_oldest_age_seconds:max)", fontsize=10
    )
    for labels, points in series(doc, "oldest_zombie_per_pod"):
        if ours(labels):
            x, y = rel(points, fill=True)
            ax.step(x, y, where="post", lw=2, label=pod_label(labels))
    ax.set_ylabel("seconds")
    ax.set_ylim(0, None)
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[2]
    limit = series(doc, "node_pid_limit")
    limit_text = f" (limit {int(limit[0][1][-1][1]):,})" if limit else ""
    ax.set_title(f"Node tasks{limit_text}  (zombie_node_pids)", fontsize=10)
    for labels, points in series(doc, "node_pids"):
        x, y = rel(points)
        ax.step(x, y, where="post", lw=2, label=f"node {labels.get('instance', '')}")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - 2, hi + 2)
    ax.set_ylabel("tasks")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel("seconds since the container started")
    ax.set_xlim(doc["start"] - t0, doc["end"] - t0)

    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
