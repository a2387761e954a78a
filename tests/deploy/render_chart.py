#!/usr/bin/env python3
"""Renders the Helm chart with its default values, as `helm template` would (a client-side
dry-run install of release zombie-daemon in namespace zombie-daemon), and prints the objects
as one JSON array. The end-to-end test `daemonset` runs the DaemonSet it finds there.

Run it through `tests/deploy/run.sh --render-chart`, which provides helm-python-sdk.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import helm_python as helm
import yaml

NAMESPACE = "zombie-daemon"
RELEASE = "zombie-daemon"


def main() -> int:
    chart = Path(sys.argv[1]) if len(sys.argv) > 1 else \
        Path(__file__).resolve().parents[2] / "deploy" / "helm" / "zombie-daemon"
    with helm.Config(namespace=NAMESPACE, storage_driver="memory") as cfg, \
            helm.Chart.load(chart) as loaded:
        release = cfg.install(loaded, RELEASE, {}, namespace=NAMESPACE, dry_run="client")
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    json.dump(docs, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
