#!/usr/bin/env python3
"""Checks zombie-daemon's deployment files against each other and the daemon.

Run it through tests/deploy/run.sh, which provides the Python and npm packages:
  - every manifest under deploy/kubernetes (and deploy/prometheus/prometheusrule.yaml
    when it exists) validates strictly against Kubernetes 1.30, or, for Prometheus
    Operator objects, against the @kubernetes-models/prometheus-operator models;
  - the overlays (remediation, kernel-before-5.11, seccomp-unconfined) are built the way
    kustomize builds them (JSON 6902 patches), and, when kubectl is installed, compared
    with `kubectl kustomize`;
  - the Helm chart lints and renders (client-side dry-run install) with remediation
    off, dry-run and on, and every rendered object validates;
  - every DaemonSet (raw, overlay, each render) matches the daemon's requirements JSON
    (`zombie-daemon check --print-requirements`): host paths, capabilities, hostPID,
    port, probes and flags, seccomp RuntimeDefault (Unconfined in its overlay and value),
    SYS_RESOURCE only for kernels before 5.11, AppArmor Unconfined and SELinux spc_t;
  - the wiring of every build and render: Service, ServiceMonitor/PodMonitor relabelings,
    a NetworkPolicy that admits a Prometheus pod and nobody else, the ResourceQuota a
    critical priority class needs (GKE), kube-prometheus-stack's `release` selection
    (the kube-prometheus-stack overlay, Helm monitoringLabels), a kustomize `namespace:`;
  - the Dockerfile (hadolint, a cross-compiling build stage and a scratch runtime stage
    with the binary and CA bundle only, REVISION passed to the build) and one
    version everywhere; the generated files are current (`cargo xtask gen --check`).

Each check prints one PASS/FAIL/SKIP line; the last line is "N passed, M failed". With
--strict (as the suite runs it) a SKIP fails the run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import jsonpatch
import kubernetes_validate
import yaml

K8S_VERSION = "1.30"
NAMESPACE = "zombie-daemon"
RELEASE = "zombie-daemon"
IMAGE_REPO = "ghcr.io/zombie-daemon/zombie-daemon"
MONITORING_API = "monitoring.coreos.com/v1"
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
POLICY_KEYS = {
    "allow_namespaces", "deny_namespaces", "allow_host_processes", "min_zombies",
    "min_age_seconds", "max_actions_per_pod_per_hour", "max_actions_per_node_per_hour",
    "backoff_seconds", "opt_in_annotation", "verify_with_runtime",
}
# Directories another part of the project provides; absent ones are skipped.
SIBLING_DIRS = ("prometheus", "grafana")
# Of those, the ones the kustomize stand-in leaves to kubectl (they use generators).
UNBUILT_DIRS = ("grafana",)
# Priority classes that admission may limit to kube-system unless a scoped quota exists.
CRITICAL_CLASSES = ("system-node-critical", "system-cluster-critical")
# A Prometheus pod as kube-prometheus-stack and the prometheus-community chart label it,
# in a namespace of its own; and a pod that is not Prometheus.
PROMETHEUS_POD = ({"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus-stack-prometheus"},
                  {"kubernetes.io/metadata.name": "monitoring"})
OTHER_POD = ({"app": "curl"}, {"kubernetes.io/metadata.name": "default"})


class Failure(Exception):
    """A check's finding, printed as its FAIL reason."""


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise Failure(msg)


class Results:
    def __init__(self) -> None:
        self.passed = self.failed = self.skipped = 0

    def ok(self, name: str, detail: str = "") -> None:
        self.passed += 1
        print(f"PASS {name}" + (f" ({detail})" if detail else ""), flush=True)

    def fail(self, name: str, why: object) -> None:
        self.failed += 1
        text = str(why).strip().replace("\n", "\n       ")
        print(f"FAIL {name}: {text}", flush=True)

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)

    def check(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs fn; a Failure or any other exception fails the check. Returns fn's
        result, or None when it failed. A str result is shown as the PASS detail."""
        try:
            result = fn(*args, **kwargs)
        except Failure as e:
            self.fail(name, e)
            return None
        except Exception as e:  # a crash in a check is a failed check, not a crashed suite
            self.fail(name, f"{type(e).__name__}: {e}")
            return None
        self.ok(name, result if isinstance(result, str) else "")
        return result if result is not None else True

    def problems(self, name: str, problems: list[str]) -> None:
        if problems:
            self.fail(name, "\n".join(problems))
        else:
            self.ok(name)


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def obj_id(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def is_monitoring(doc: dict) -> bool:
    return doc.get("apiVersion") == MONITORING_API


# --------------------------------------------------------------------------- requirements

def load_requirements(path: Path) -> dict:
    try:
        req = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise Failure(f"cannot read requirements JSON {path}: {e}")
    problems = []
    types = {
        "capabilities": list, "capabilities_remediation": list,
        "capabilities_kernel_before_5_11": list, "host_pid": bool,
        "host_paths": list, "port": int, "liveness_path": str, "readiness_path": str,
        "metrics_path": str,
    }
    for key, typ in types.items():
        if not isinstance(req.get(key), typ) or (typ is int and isinstance(req.get(key), bool)):
            problems.append(f"{key}: expected {typ.__name__}, got {req.get(key)!r}")
    for i, hp in enumerate(req.get("host_paths") or []):
        if not (isinstance(hp, dict) and isinstance(hp.get("host_path"), str)
                and isinstance(hp.get("mount_path"), str)
                and isinstance(hp.get("read_only"), bool)):
            problems.append(f"host_paths[{i}]: expected {{host_path, mount_path, read_only}}, got {hp!r}")
    for key in ("capabilities", "capabilities_remediation", "capabilities_kernel_before_5_11"):
        if isinstance(req.get(key), list) and not all(isinstance(c, str) for c in req[key]):
            problems.append(f"{key}: expected a list of strings")
    require(not problems, f"{path} does not follow the requirements schema:\n" + "\n".join(problems))
    return req


# --------------------------------------------------------------------------- validation

def k8s_validate(doc: dict) -> str:
    """Strict schema validation, as `kubernetes-validate --strict -k 1.30` does."""
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        raise Failure(f"{obj_id(doc)}: {path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        raise Failure(f"{obj_id(doc)}: {e.message}")
    return f"{obj_id(doc)}, strict, Kubernetes {K8S_VERSION}"


class MonitoringBatch:
    """Prometheus Operator objects, validated by node in one process at the end."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, label: str, doc: dict) -> None:
        self.items.append({"label": label, "doc": doc})

    def run(self, results: Results, node_prefix: Path, tmp: Path) -> None:
        if not self.items:
            return
        script = Path(__file__).with_name("validate_monitoring.js")
        data = tmp / "monitoring-objects.json"
        data.write_text(json.dumps(self.items))
        proc = subprocess.run(["node", str(script), str(node_prefix), str(data)],
                              capture_output=True, text=True, timeout=120)
        seen = set()
        for line in proc.stdout.splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            seen.add(item["label"])
            name = f"prometheus-operator model validates {item['label']}"
            if item["ok"]:
                results.ok(name)
            else:
                results.fail(name, item["error"])
        for item in self.items:
            if item["label"] not in seen:
                results.fail(f"prometheus-operator model validates {item['label']}",
                             f"node gave no result (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")


def validate_objects(results: Results, monitoring: MonitoringBatch, source: str,
                     docs: list[dict]) -> None:
    for doc in docs:
        if is_monitoring(doc):
            monitoring.add(f"{source} {obj_id(doc)}", doc)
        else:
            results.check(f"kubernetes-validate {source} {obj_id(doc)}", k8s_validate, doc)


# --------------------------------------------------------------------------- kustomize

def target_matches(doc: dict, target: dict) -> bool:
    group, _, version = doc.get("apiVersion", "").rpartition("/")
    return all([
        target.get("group", group) == group,
        target.get("version", version) == version,
        target.get("kind", doc.get("kind")) == doc.get("kind"),
        target.get("name", doc["metadata"].get("name")) == doc["metadata"].get("name"),
        target.get("namespace", doc["metadata"].get("namespace")) == doc["metadata"].get("namespace"),
    ])


def kustomize_build(directory: Path, deploy_dir: Path, missing: set[str]) -> list[dict]:
    """Builds a kustomization the way kustomize does, for the subset this project uses:
    resources (files and directories), JSON 6902 patches with a target, and `images`.
    deploy/prometheus and deploy/grafana are left out (their kustomizations use
    generators this stand-in does not imitate); `kubectl kustomize` builds them."""
    kfile = directory / "kustomization.yaml"
    require(kfile.is_file(), f"{directory} has no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text())
    unsupported = set(k) - {"apiVersion", "kind", "resources", "patches", "images"}
    require(not unsupported,
            f"{kfile}: {sorted(unsupported)} not supported by this test's kustomize stand-in")
    docs: list[dict] = []
    for entry in k.get("resources", []):
        path = Path(os.path.normpath(directory / entry))
        if path.parent == deploy_dir and path.name in UNBUILT_DIRS:
            missing.add(str(path.relative_to(deploy_dir.parent)))
        elif path.is_dir():
            docs += kustomize_build(path, deploy_dir, missing)
        elif path.is_file():
            docs += load_docs(path)
        else:
            raise Failure(f"{kfile}: resource {entry} does not exist")
    for patch in k.get("patches", []):
        patch_file = directory / patch["path"]
        ops = yaml.safe_load(patch_file.read_text())
        require(isinstance(ops, list),
                f"{patch_file}: only JSON 6902 patches (a list of operations) are supported")
        hits = [i for i, d in enumerate(docs) if target_matches(d, patch["target"])]
        require(len(hits) == 1, f"{patch_file}: target {patch['target']} matches {len(hits)} objects")
        try:
            docs[hits[0]] = jsonpatch.apply_patch(docs[hits[0]], ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise Failure(f"{patch_file}: {e}")
    for image in k.get("images", []):
        for d in docs:
            pod = ((d.get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return docs


def kubectl_kustomize(repo: Path, tmp: Path, rel: str) -> list[dict]:
    """`kubectl kustomize` on a copy of deploy/, with stand-ins for absent sibling dirs."""
    deploy = tmp / "kustomize" / "deploy"
    if not deploy.exists():
        shutil.copytree(repo / "deploy" / "kubernetes", deploy / "kubernetes")
        for name in SIBLING_DIRS:
            src = repo / "deploy" / name
            if src.is_dir():
                shutil.copytree(src, deploy / name)
            else:
                (deploy / name).mkdir(parents=True)
                (deploy / name / "kustomization.yaml").write_text(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n")
    proc = subprocess.run(["kubectl", "kustomize", str(deploy / rel)],
                          capture_output=True, text=True, timeout=120)
    require(proc.returncode == 0, f"kubectl kustomize {rel} failed: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def same_objects(ours: list[dict], theirs: list[dict]) -> str:
    """kubectl's build holds every object of ours, identical; its extra objects must
    come from deploy/prometheus and deploy/grafana, which our stand-in leaves out."""
    key = lambda d: (d.get("kind"), d["metadata"].get("namespace", ""), d["metadata"]["name"])
    a = {key(d): d for d in ours}
    b = {key(d): d for d in theirs}
    require(len(b) == len(theirs), "kubectl's build has duplicate objects")
    require(a.keys() <= b.keys(), f"missing from kubectl's build: {sorted(a.keys() - b.keys())}")
    differing = [f"{k[0]}/{k[2]}" for k in a if a[k] != b[k]]
    require(not differing, f"content differs for {differing}")
    extra = sorted(f"{k[0]}/{k[2]}" for k in b.keys() - a.keys())
    return f"{len(a)} objects identical" + (f"; plus {', '.join(extra)}" if extra else "")


# --------------------------------------------------------------------------- consistency

def norm_cap(cap: str) -> str:
    cap = cap.upper()
    return cap[4:] if cap.startswith("CAP_") else cap


def parse_args(args: list[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """Positional words and --flag values; accepts --flag=value and --flag value."""
    positional: list[str] = []
    flags: dict[str, list[Any]] = {}
    i = 0
    while i < len(args):
        arg = str(args[i])
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg.split("=", 1)
            elif i + 1 < len(args) and not str(args[i + 1]).startswith("-"):
                name, value = arg, str(args[i + 1])
                i += 1
            else:
                name, value = arg, True
            flags.setdefault(name, []).append(value)
        else:
            positional.append(arg)
        i += 1
    return positional, flags


def one_flag(flags: dict, name: str, problems: list[str]) -> Any:
    values = flags.get(name, [])
    if len(values) > 1:
        problems.append(f"{name} given {len(values)} times")
    return values[-1] if values else None


def daemon_container(ds: dict) -> dict:
    containers = ds["spec"]["template"]["spec"]["containers"]
    named = [c for c in containers if c.get("name") == "zombie-daemon"]
    require(len(named) == 1 or len(containers) == 1, "no container named zombie-daemon")
    return named[0] if named else containers[0]


def resolve_port(container: dict, port: Any) -> Any:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p.get("containerPort")
    return f"<unknown port name {port!r}>"


def ds_consistency(ds: dict, req: dict, mode: str, old_kernel: bool = False,
                   seccomp: str = "RuntimeDefault") -> list[tuple[str, list[str]]]:
    """(aspect, problems) pairs comparing a DaemonSet with the requirements JSON and
    the deployment contract. mode is the remediation mode the DaemonSet should have;
    old_kernel: it is meant for kernels before 5.11 (and so has their extra capabilities);
    seccomp: the seccomp profile type it should have."""
    pod = ds["spec"]["template"]["spec"]
    c = daemon_container(ds)
    sc = c.get("securityContext") or {}
    positional, flags = parse_args(list(c.get("command", [])[1:]) + list(c.get("args", [])))
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = c.get("volumeMounts", [])
    out: list[tuple[str, list[str]]] = []

    p: list[str] = []
    if pod.get("hostPID", False) is not req["host_pid"]:
        p.append(f"hostPID is {pod.get('hostPID', False)}, requirements say {req['host_pid']}")
    out.append(("hostPID", p))

    p = []
    caps = sc.get("capabilities") or {}
    added = [norm_cap(x) for x in caps.get("add", [])]
    want = {norm_cap(x) for x in req["capabilities"]}
    if mode == "on":
        want |= {norm_cap(x) for x in req["capabilities_remediation"]}
    if old_kernel:
        want |= {norm_cap(x) for x in req["capabilities_kernel_before_5_11"]}
    if set(added) != want:
        p.append(f"capabilities.add is {sorted(added)}, expected exactly {sorted(want)}"
                 f" (remediation {mode}, {'kernels before 5.11' if old_kernel else 'kernels from 5.11'})")
    if len(added) != len(set(added)):
        p.append(f"capabilities.add has duplicates: {added}")
    if [norm_cap(x) for x in caps.get("drop", [])] != ["ALL"]:
        p.append(f"capabilities.drop is {caps.get('drop')}, expected [ALL]")
    out.append(("capabilities", p))

    p = []
    host_mounts = []  # (host path, mount path, readOnly, volume name)
    for m in mounts:
        v = volumes.get(m["name"])
        if v is None:
            p.append(f"volumeMount {m['name']} has no volume")
        elif "hostPath" in v:
            host_mounts.append((v["hostPath"]["path"].rstrip("/") or "/",
                                m["mountPath"].rstrip("/") or "/", bool(m.get("readOnly")), m["name"]))
    used = set()
    for hp in req["host_paths"]:
        host, mount = hp["host_path"].rstrip("/") or "/", hp["mount_path"].rstrip("/") or "/"
        found = None
        for hm in host_mounts:
            # Exact, or a mounted ancestor directory that maps the path to the same place.
            rel = posixpath.relpath(host, hm[0])
            if rel == "." or not rel.startswith(".."):
                if posixpath.normpath(posixpath.join(hm[1], rel)) == mount:
                    found = hm
                    break
        if found is None:
            p.append(f"{host} is not mounted at {mount}")
            continue
        used.add(found[3])
        if hp["read_only"] and not found[2]:
            p.append(f"{host} (volume {found[3]}) is mounted read-write; requirements say read-only")
    for hm in host_mounts:
        if hm[3] not in used:
            p.append(f"hostPath {hm[0]} -> {hm[1]} (volume {hm[3]}) is not in the requirements")
    mounted_volumes = {m["name"] for m in mounts}
    for name, v in volumes.items():
        if "hostPath" in v and name not in mounted_volumes:
            p.append(f"hostPath volume {name} ({v['hostPath']['path']}) is declared but not mounted")
    out.append(("host paths", p))

    p = []
    ports = [x for x in c.get("ports", []) if x.get("name") == "metrics"]
    if len(ports) != 1 or ports[0].get("containerPort") != req["port"]:
        p.append(f"container port 'metrics' is {[x.get('containerPort') for x in ports]}, expected {req['port']}")
    listen = one_flag(flags, "--listen", p)
    if not isinstance(listen, str):
        p.append("--listen is missing")
    else:
        host, _, port = listen.rpartition(":")
        if port != str(req["port"]):
            p.append(f"--listen={listen} does not listen on port {req['port']}")
        if host not in ("0.0.0.0", "[::]", ""):
            p.append(f"--listen={listen}: probes and Prometheus reach the pod IP, listen on 0.0.0.0")
    out.append(("port and --listen", p))

    p = []
    for probe_name, path_key in (("startupProbe", "readiness_path"), ("livenessProbe", "liveness_path"),
                                 ("readinessProbe", "readiness_path")):
        probe = (c.get(probe_name) or {}).get("httpGet")
        if not probe:
            p.append(f"{probe_name} is not an httpGet probe")
            continue
        if probe.get("path") != req[path_key]:
            p.append(f"{probe_name} path is {probe.get('path')}, expected {req[path_key]}")
        if resolve_port(c, probe.get("port")) != req["port"]:
            p.append(f"{probe_name} port {probe.get('port')} is not {req['port']}")
    start = c.get("startupProbe") or {}
    budget = start.get("periodSeconds", 10) * start.get("failureThreshold", 3)
    if budget < 60:
        p.append(f"startupProbe allows {budget} s to become ready; a busy node's first /proc scan needs more")
    out.append(("startup, liveness and readiness probes", p))

    p = []
    if sc.get("runAsUser", pod.get("securityContext", {}).get("runAsUser")) != 0:
        p.append("runAsUser is not 0 (the daemon runs as root with a reduced capability set)")
    if sc.get("allowPrivilegeEscalation") is not False:
        p.append("allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        p.append("privileged is true")
    if sc.get("readOnlyRootFilesystem") is not True:
        p.append("readOnlyRootFilesystem is not true")
    if (sc.get("seccompProfile") or {}).get("type") != seccomp:
        p.append(f"seccompProfile is {sc.get('seccompProfile')}, expected type {seccomp}")
    if pod.get("automountServiceAccountToken") is not False:
        p.append("automountServiceAccountToken is not false on the pod")
    # AppArmor's default container profile denies ptrace read and signals across
    # profiles; the field from Kubernetes 1.30, the annotation before.
    if (sc.get("appArmorProfile") or {}).get("type") != "Unconfined":
        p.append(f"appArmorProfile is {sc.get('appArmorProfile')}, expected type Unconfined")
    annotation = f"container.apparmor.security.beta.kubernetes.io/{c.get('name')}"
    annotations = ds["spec"]["template"].get("metadata", {}).get("annotations") or {}
    if annotations.get(annotation) != "unconfined":
        p.append(f"pod annotation {annotation} is {annotations.get(annotation)!r}, expected unconfined "
                 "(clusters before 1.30 ignore the appArmorProfile field)")
    if (sc.get("seLinuxOptions") or {}).get("type") != "spc_t":
        p.append(f"seLinuxOptions is {sc.get('seLinuxOptions')}, expected type spc_t "
                 "(container_t cannot connect to the CRI socket)")
    out.append(("security context", p))

    p = []
    if positional[:1] != ["run"]:
        p.append(f"the command is not `zombie-daemon run` (positional words {positional})")
    by_host = {hp["host_path"].rstrip("/"): hp["mount_path"] for hp in req["host_paths"]}
    for flag, host in (("--proc-root", "/proc"), ("--cgroup-root", "/sys/fs/cgroup")):
        value = one_flag(flags, flag, p)
        if host in by_host and value != by_host[host]:
            p.append(f"{flag}={value}, but the host's {host} is mounted at {by_host[host]}")
    endpoint = one_flag(flags, "--runtime-endpoint", p)
    if not (isinstance(endpoint, str) and endpoint.startswith("unix:///")):
        p.append(f"--runtime-endpoint={endpoint} is not a unix:/// socket")
    elif not any(endpoint[len("unix://"):].startswith(hm[1] + "/") for hm in host_mounts):
        p.append(f"--runtime-endpoint={endpoint} is not inside a hostPath mount")
    if one_flag(flags, "--log-format", p) not in ("json", "text"):
        p.append("--log-format is not json or text")
    out.append(("daemon flags", p))

    p = []
    remediate = one_flag(flags, "--remediate", p) or "off"
    policy = one_flag(flags, "--policy", p)
    if remediate != mode:
        p.append(f"--remediate is {remediate}, expected {mode}")
    if mode == "off" and policy is not None:
        p.append(f"--policy={policy} given with remediation off")
    if mode != "off":
        if not isinstance(policy, str):
            p.append("--policy is missing")
        else:
            pdir = posixpath.dirname(policy)
            cm = [m for m in mounts if m["mountPath"].rstrip("/") == pdir
                  and "configMap" in volumes.get(m["name"], {})]
            if not cm:
                p.append(f"no ConfigMap is mounted at {pdir} for --policy={policy}")
            elif not cm[0].get("readOnly"):
                p.append(f"the policy ConfigMap at {pdir} is mounted read-write")
    out.append((f"remediation {mode}", p))

    p = []
    res = c.get("resources") or {}
    want_res = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    if res != want_res:
        p.append(f"resources are {res}, expected {want_res}")
    if pod.get("priorityClassName") != "system-node-critical":
        p.append(f"priorityClassName is {pod.get('priorityClassName')}")
    if {"operator": "Exists"} not in pod.get("tolerations", []):
        p.append("no `operator: Exists` toleration: the daemon would miss tainted nodes")
    strategy = ds["spec"].get("updateStrategy") or {}
    if strategy.get("type") != "RollingUpdate" or \
            (strategy.get("rollingUpdate") or {}).get("maxUnavailable") != "10%":
        p.append(f"updateStrategy is {strategy}, expected RollingUpdate with maxUnavailable 10%")
    out.append(("scheduling and resources", p))
    return out


def check_daemonset(results: Results, source: str, ds: dict, req: dict, mode: str,
                    **variant: Any) -> None:
    try:
        aspects = ds_consistency(ds, req, mode, **variant)
    except (Failure, KeyError, TypeError) as e:
        results.fail(f"{source} DaemonSet matches the requirements", f"{type(e).__name__}: {e}")
        return
    for aspect, problems in aspects:
        results.problems(f"{source} DaemonSet {aspect}", problems)


def expected_job(repo: Path) -> str:
    """The job label the alert rules select on (up{job="..."}), else zombie-daemon."""
    rules = repo / "deploy" / "prometheus" / "rules.yaml"
    if rules.is_file():
        found = set(re.findall(r'\bup\{job="([^"]+)"', rules.read_text()))
        require(len(found) <= 1, f"{rules} uses several jobs: {sorted(found)}")
        if found:
            return found.pop()
    return "zombie-daemon"


def relabel_problems(endpoint: dict, job: str) -> list[str]:
    """The series labels deploy/prometheus and deploy/grafana rely on: job, instance =
    node name, and the workload's namespace/pod/container not renamed to exported_*."""
    problems = []
    rl = endpoint.get("relabelings") or []
    if not any(r.get("targetLabel") == "job" and r.get("replacement") == job and not r.get("sourceLabels")
               for r in rl):
        problems.append(f"no relabeling sets job={job} (the alert rules select on it)")
    if not any(r.get("targetLabel") == "instance" and
               r.get("sourceLabels") == ["__meta_kubernetes_pod_node_name"] for r in rl):
        problems.append("no relabeling sets instance to the node name")
    dropped = [re.compile(f"^(?:{r.get('regex', '')})$") for r in rl
               if str(r.get("action", "")).lower() == "labeldrop"]
    # honorLabels would not do: host-process series, which have no pod label, would
    # still get the daemon's own pod.
    for label in ("namespace", "pod", "container"):
        if not any(d.match(label) for d in dropped):
            problems.append(f"`{label}` is not dropped: the operator's target label (the daemon's "
                            f"own pod) would rename the series' {label} to exported_{label}")
    return problems


def check_wiring(docs: list[dict], req: dict, namespace: str, job: str) -> str:
    """Service -> pods, ServiceMonitor -> Service, ServiceAccount, no RBAC, one namespace."""
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    problems = []
    rbac = [obj_id(d) for d in docs if d["kind"] in RBAC_KINDS]
    if rbac:
        problems.append(f"RBAC objects present ({rbac}); the daemon calls no Kubernetes API")
    for d in docs:
        ns = d["metadata"].get("namespace")
        if d["kind"] != "Namespace" and ns != namespace:
            problems.append(f"{obj_id(d)} is in namespace {ns}, expected {namespace}")
    dss = by_kind.get("DaemonSet", [])
    require(len(dss) == 1, f"expected one DaemonSet, found {len(dss)}")
    ds = dss[0]
    pod_labels = ds["spec"]["template"]["metadata"].get("labels", {})
    selector = ds["spec"]["selector"].get("matchLabels", {})
    if not selector.items() <= pod_labels.items():
        problems.append("the DaemonSet's selector does not match its pod labels")
    sa_name = ds["spec"]["template"]["spec"].get("serviceAccountName")
    sas = [d for d in by_kind.get("ServiceAccount", []) if d["metadata"]["name"] == sa_name]
    if len(sas) != 1:
        problems.append(f"ServiceAccount {sa_name} is not among the objects")
    elif sas[0].get("automountServiceAccountToken") is not False:
        problems.append(f"ServiceAccount {sa_name} does not set automountServiceAccountToken: false")
    services = by_kind.get("Service", [])
    if len(services) != 1:
        problems.append(f"expected one Service, found {len(services)}")
    for svc in services:
        if not (svc["spec"].get("selector") or {}).items() <= pod_labels.items():
            problems.append(f"Service {svc['metadata']['name']} does not select the daemon's pods")
        ports = [p for p in svc["spec"].get("ports", []) if p.get("name") == "metrics"]
        if len(ports) != 1 or ports[0].get("port") != req["port"] or \
                ports[0].get("targetPort") not in ("metrics", req["port"]):
            problems.append(f"Service port 'metrics' is {ports}, expected port/targetPort {req['port']}")
    for pm in by_kind.get("PodMonitor", []):
        spec = pm["spec"]
        if not selects(spec.get("selector"), pod_labels):
            problems.append(f"PodMonitor {pm['metadata']['name']} does not select the daemon's pods")
        names = (spec.get("namespaceSelector") or {}).get("matchNames", [])
        if names and namespace not in names:
            problems.append(f"PodMonitor namespaceSelector {names} misses {namespace}")
        for ep in spec.get("podMetricsEndpoints", []):
            if ep.get("port") != "metrics" or ep.get("path", "/metrics") != req["metrics_path"]:
                problems.append(f"PodMonitor endpoint {ep.get('port')}{ep.get('path')} is not metrics{req['metrics_path']}")
            problems += relabel_problems(ep, job)
    if by_kind.get("PodMonitor") and by_kind.get("ServiceMonitor"):
        problems.append("a PodMonitor and a ServiceMonitor: every daemon would be scraped twice")
    for sm in by_kind.get("ServiceMonitor", []):
        spec = sm["spec"]
        match = (spec.get("selector") or {}).get("matchLabels", {})
        if not any(match.items() <= (s["metadata"].get("labels") or {}).items() for s in services):
            problems.append(f"ServiceMonitor {sm['metadata']['name']} selects no Service")
        names = (spec.get("namespaceSelector") or {}).get("matchNames", [])
        if names and namespace not in names:
            problems.append(f"ServiceMonitor namespaceSelector {names} misses {namespace}")
        for ep in spec.get("endpoints", []):
            if ep.get("port") != "metrics" or ep.get("path", "/metrics") != req["metrics_path"]:
                problems.append(f"ServiceMonitor endpoint {ep.get('port')}{ep.get('path')} is not "
                                f"metrics{req['metrics_path']}")
            problems += relabel_problems(ep, job)
    problems += quota_problems(docs, ds)
    problems += network_policy_problems(docs, ds, req)
    require(not problems, "\n".join(problems))
    return f"{len(docs)} objects"


def selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels; an
    empty selector selects everything, a missing one (None) nothing."""
    if selector is None:
        return False
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def rust_const(path: Path, name: str) -> str:
    """The value of `const NAME: &str = "...";` in a Rust file."""
    m = re.search(rf'const {name}: &str = "([^"]*)";', path.read_text())
    require(m is not None, f"{path}: no const {name}")
    return m.group(1)


def runtime_class_matches(repo: Path, docs: list[dict]) -> str:
    """One RuntimeClass, named as the daemon's diagnosis names it, whose handler is the
    containerd runtime entry `zombie-init-runtime install` writes."""
    classes = [d for d in docs if d["kind"] == "RuntimeClass"]
    require(len(classes) == 1, f"{len(classes)} RuntimeClass objects")
    rc = classes[0]
    handler = rust_const(repo / "zombie-init-runtime" / "src" / "install.rs", "RUNTIME_NAME")
    name = rust_const(repo / "zombie-core" / "src" / "diagnosis.rs", "RUNTIME_CLASS")
    require(rc["handler"] == handler, f"handler {rc['handler']} != installed runtime {handler}")
    require(rc["metadata"]["name"] == name, f"name {rc['metadata']['name']} != daemon's {name}")
    return f"RuntimeClass {name}, handler {handler}"


def quota_problems(docs: list[dict], ds: dict) -> list[str]:
    """A critical priority class outside kube-system needs a ResourceQuota scoped to it
    in the namespace (GKE admits no such pod otherwise)."""
    pcn = ds["spec"]["template"]["spec"].get("priorityClassName")
    ns = ds["metadata"].get("namespace")
    if pcn not in CRITICAL_CLASSES or ns == "kube-system":
        return []
    for q in docs:
        if q["kind"] != "ResourceQuota" or q["metadata"].get("namespace") != ns:
            continue
        for e in (q["spec"].get("scopeSelector") or {}).get("matchExpressions", []):
            if e.get("scopeName") == "PriorityClass" and e.get("operator") == "In" \
                    and pcn in e.get("values", []) and "pods" in q["spec"].get("hard", {}):
                return []
    return [f"priorityClassName {pcn} in namespace {ns} without a ResourceQuota scoped to it: "
            "GKE would create no pods"]


def network_policy_problems(docs: list[dict], ds: dict, req: dict) -> list[str]:
    """One NetworkPolicy admits the Prometheus pod to the metrics port, and nobody else."""
    pod_labels = ds["spec"]["template"]["metadata"].get("labels", {})
    pols = [d for d in docs if d["kind"] == "NetworkPolicy"
            and selects(d["spec"].get("podSelector"), pod_labels)]
    if not pols:
        return []  # switched off: checked where it must be present
    problems = []
    if len(pols) != 1:
        problems.append(f"{len(pols)} NetworkPolicies select the daemon's pods, expected one")
    pol = pols[0]["spec"]
    if "Ingress" not in pol.get("policyTypes", []):
        problems.append("the NetworkPolicy does not restrict Ingress")

    def admitted(pod: tuple[dict, dict]) -> bool:
        labels, ns_labels = pod
        for rule in pol.get("ingress") or []:
            ports = rule.get("ports") or []
            if ports and not any(p.get("port") in ("metrics", req["port"]) for p in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True  # no `from`: everyone
            for peer in peers:
                if "ipBlock" in peer:
                    return True
                if selects(peer.get("podSelector", {}), labels) and \
                        selects(peer.get("namespaceSelector", {"matchLabels": {
                            "kubernetes.io/metadata.name": ds["metadata"]["namespace"]}}), ns_labels):
                    return True
        return False
    if not admitted(PROMETHEUS_POD):
        problems.append(f"the NetworkPolicy does not admit a Prometheus pod {PROMETHEUS_POD}")
    if admitted(OTHER_POD):
        problems.append(f"the NetworkPolicy admits any pod, e.g. {OTHER_POD}")
    return problems


def release_selected(docs: list[dict], release: str) -> str:
    """kube-prometheus-stack's Prometheus (serviceMonitorSelector and ruleSelector
    `release: <release>`, any namespace) selects the ServiceMonitor and the PrometheusRule."""
    selector = {"matchLabels": {"release": release}}
    found = []
    for kind in ("ServiceMonitor", "PrometheusRule"):
        objs = [d for d in docs if d["kind"] == kind]
        require(len(objs) == 1, f"expected one {kind}, found {len(objs)}")
        require(selects(selector, objs[0]["metadata"].get("labels") or {}),
                f"{kind} labels {objs[0]['metadata'].get('labels')} lack release: {release}: "
                "kube-prometheus-stack would ignore it")
        found.append(kind)
    return f"release={release} selects {' and '.join(found)}"


def release_not_selected(docs: list[dict], release: str) -> str:
    """Negative control: without the label kube-prometheus-stack selects neither."""
    for d in docs:
        if d["kind"] in ("ServiceMonitor", "PrometheusRule"):
            require(not selects({"matchLabels": {"release": release}}, d["metadata"].get("labels") or {}),
                    f"{obj_id(d)} carries release={release} without being asked to")
    return "neither is selected"


def checker_rejects_broken(ds: dict, req: dict) -> str:
    """The consistency check must fail on DaemonSets that break the requirements."""
    def mutate(fn: Callable[[dict], None]) -> dict:
        broken = copy.deepcopy(ds)
        fn(broken)
        return broken

    def ctr(d: dict) -> dict:
        return daemon_container(d)

    def drop_btf(d: dict) -> None:
        ctr(d)["volumeMounts"] = [m for m in ctr(d)["volumeMounts"] if m["mountPath"] != "/sys/kernel/btf"]

    def proc_rw(d: dict) -> None:
        for m in ctr(d)["volumeMounts"]:
            if m["mountPath"] == "/host/proc":
                m["readOnly"] = False

    def extra_host_path(d: dict) -> None:
        d["spec"]["template"]["spec"]["volumes"].append({"name": "root", "hostPath": {"path": "/"}})
        ctr(d)["volumeMounts"].append({"name": "root", "mountPath": "/host", "readOnly": True})

    mutations = {
        "btf mount removed": drop_btf,
        "/proc mounted read-write": proc_rw,
        "host / mounted": extra_host_path,
        "SYS_ADMIN added": lambda d: ctr(d)["securityContext"]["capabilities"]["add"].append("SYS_ADMIN"),
        "KILL added with remediation off":
            lambda d: ctr(d)["securityContext"]["capabilities"]["add"].append("KILL"),
        "hostPID off": lambda d: d["spec"]["template"]["spec"].update(hostPID=False),
        "liveness path changed": lambda d: ctr(d)["livenessProbe"]["httpGet"].update(path="/health"),
        "startup probe removed": lambda d: ctr(d).pop("startupProbe"),
        "--listen on another port": lambda d: ctr(d).update(
            args=[a.replace(":9899", ":9900") for a in ctr(d)["args"]]),
        "AppArmor profile removed": lambda d: ctr(d)["securityContext"].pop("appArmorProfile"),
        "AppArmor annotation removed": lambda d: d["spec"]["template"]["metadata"].pop("annotations"),
        "SELinux type removed": lambda d: ctr(d)["securityContext"].pop("seLinuxOptions"),
    }
    missed = []
    for name, fn in mutations.items():
        aspects = ds_consistency(mutate(fn), req, "off")
        if not any(problems for _, problems in aspects):
            missed.append(name)
    require(not missed, f"the consistency check accepted broken DaemonSets: {missed}")
    return f"{len(mutations)} broken variants rejected"


# --------------------------------------------------------------------------- helm

def helm_install_dry_run(chart: str | Path, values: dict) -> tuple[list[dict], str]:
    with helm.Config(namespace=NAMESPACE, storage_driver="memory") as cfg, \
            helm.Chart.load(chart) as loaded:
        release = cfg.install(loaded, RELEASE, values, namespace=NAMESPACE, dry_run="client")
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    return docs, release.get("notes", "")


def helm_lint(chart: Path, values: dict) -> str:
    report = helm.lint(chart, values, strict=True, namespace=NAMESPACE, kube_version=f"v{K8S_VERSION}.0")
    bad = [f"[{m['severity']}] {m['path']}: {m['error']}" for m in report.get("messages", [])
           if m.get("severity", 0) >= 2] + list(report.get("errors") or [])
    require(not bad, "\n".join(bad))
    return f"{len(report.get('messages', []))} info messages"


def helm_must_fail(chart: Path, values: dict, needle: str) -> str:
    try:
        helm_install_dry_run(chart, values)
    except helm.HelmError as e:
        require(needle in str(e), f"failed, but without mentioning {needle!r}: {e}")
        return f"refused: {str(e).strip().splitlines()[-1].strip()[:100]}"
    raise Failure(f"values {values} were accepted")


def find(docs: list[dict], kind: str, suffix: str = "") -> dict:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    require(len(hits) == 1, f"expected one {kind}*{suffix}, found {len(hits)}")
    return hits[0]


# --------------------------------------------------------------------------- Dockerfile

def hadolint(path: Path) -> str:
    exe = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(exe), "--no-color", "--failure-threshold", "warning", str(path)],
                          capture_output=True, text=True, timeout=120)
    require(proc.returncode == 0, (proc.stdout + proc.stderr).strip() or f"exit {proc.returncode}")
    return "no warnings"


def dockerfile_stages(path: Path) -> list[dict]:
    """Stages of a Dockerfile (parsed by BuildKit's own parser), ARG defaults expanded."""
    import dockerfile  # imported here: only this check needs it

    args: dict[str, str] = {}
    stages: list[dict] = []

    def expand(text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)

    for c in dockerfile.parse_file(str(path)):
        if c.cmd == "ARG":
            name, _, default = c.value[0].partition("=")
            if default:
                args[name] = expand(default)
        elif c.cmd == "FROM":
            stages.append({"image": expand(c.value[0]),
                           "name": c.value[2] if len(c.value) > 2 else None, "cmds": []})
        if stages and c.cmd != "FROM":
            stages[-1]["cmds"].append((c.cmd, c.json, tuple(c.flags), tuple(expand(v) for v in c.value)))
    return stages


def check_dockerfile(path: Path, entrypoint: list[str], port: int, rust_version: str) -> str:
    stages = dockerfile_stages(path)
    require(len(stages) >= 2, f"{len(stages)} stage(s): expected a build stage and a runtime stage")
    build, final = stages[0], stages[-1]
    # The rust image (rustup, the musl targets) at the workspace's rust-version, on bookworm
    # (Debian's rustc-web for the eBPF programs), run on the build machine's platform.
    require(build["image"] == f"rust:{rust_version}-bookworm",
            f"build stage is FROM {build['image']}, expected rust:{rust_version}-bookworm "
            "(the workspace's rust-version)")
    text = path.read_text()
    require(re.search(r"^FROM --platform=\$BUILDPLATFORM \S+ AS build$", text, re.M),
            "the build stage does not run on $BUILDPLATFORM (it cross-compiles; emulating it is slow)")
    require(final["image"] == "scratch",
            f"runtime stage is FROM {final['image']}: expected scratch (a static binary needs no libc)")
    require(not [c for c in final["cmds"] if c[0] == "RUN"], "the runtime stage RUNs commands (it has no shell)")
    runs = " ".join(" ".join(v) for cmd, _, _, v in build["cmds"] if cmd == "RUN")
    for needle in ("rustc-web", "cargo-web", "libstd-rust-web-dev-bpf", "llvm-22-dev",
                   "LLVM_PREFIX=/usr/lib/llvm-22", "bpf-linker@0.13.0",
                   "--no-default-features --features llvm-22",
                   'cargo xtask build --target "${TARGETARCH}"'):
        require(needle in re.sub(r"\s+", " ", runs), f"the build stage never runs `{needle}`")
    # build.rs takes the revision from ZOMBIE_GIT_REVISION: the context has no .git.
    # (On the file's text: ARG defaults are expanded in the parsed stages.)
    require(re.search(r'ZOMBIE_GIT_REVISION="?\$\{?REVISION\}?"? cargo xtask build', text),
            "the build does not get ZOMBIE_GIT_REVISION=${REVISION}: zombie_build_info would say revision=\"unknown\"")
    require(re.search(r'org\.opencontainers\.image\.revision="?\$\{?REVISION\}?', text),
            "no org.opencontainers.image.revision label")
    require(len(re.findall(r"^ARG REVISION\b", text, re.M)) == 3,
            "REVISION must be declared globally and in both stages (an ARG does not cross a FROM)")
    require(len(re.findall(r"^ARG TARGETARCH$", text, re.M)) == 2,
            "TARGETARCH must be declared in both stages")
    copies = [c for c in final["cmds"] if c[0] in ("COPY", "ADD")]
    require(all(c[2] == (f"--from={build['name']}",) for c in copies),
            f"the runtime stage copies from elsewhere than the build stage: {copies}")
    dests = sorted(c[3][-1] for c in copies)
    require(dests == sorted([entrypoint[0], "/etc/ssl/certs/ca-certificates.crt"]),
            f"the runtime stage should hold the binary at {entrypoint[0]} and the CA bundle, nothing "
            f"else: it copies to {dests}")
    binary = [c for c in copies if c[3][-1] == entrypoint[0]][0]
    require(binary[3][0] == "/out/${TARGETARCH}/zombie-daemon",
            f"the binary comes from {binary[3][0]}, not the build stage's /out/${{TARGETARCH}}")
    eps = [c for c in final["cmds"] if c[0] == "ENTRYPOINT"]
    require(len(eps) == 1 and eps[0][1], "the runtime stage needs one exec-form (JSON) ENTRYPOINT")
    require(list(eps[0][3]) == entrypoint, f"ENTRYPOINT {list(eps[0][3])} != the DaemonSet's command {entrypoint}")
    exposed = [v for c in final["cmds"] if c[0] == "EXPOSE" for v in c[3]]
    require(exposed in ([], [str(port)], [f"{port}/tcp"]), f"EXPOSE {exposed} is not {port}")
    return f"{build['image']} -> {final['image']}, ENTRYPOINT {entrypoint}, revision passed"


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--tmp", type=Path, required=True)
    ap.add_argument("--node-prefix", type=Path, required=True)
    ap.add_argument("--requirements", type=Path, required=True)
    ap.add_argument("--strict", action="store_true",
                    help="a check that cannot run (a file or tool missing) fails: the suite "
                         "runs with this, so a missing install step is never a green run")
    opts = ap.parse_args()
    repo, tmp = opts.repo.resolve(), opts.tmp
    deploy = repo / "deploy"
    kube_dir = deploy / "kubernetes"
    chart_dir = deploy / "helm" / "zombie-daemon"
    results = Results()
    monitoring = MonitoringBatch()
    job = expected_job(repo)

    req = results.check(f"requirements JSON {opts.requirements} follows the schema",
                        load_requirements, opts.requirements)
    if req is None:
        print(f"{results.passed} passed, {results.failed} failed")
        return 1

    # 1. Every YAML file under deploy/kubernetes.
    patch_files = set()
    for kfile in sorted(kube_dir.rglob("kustomization.yaml")):
        for patch in yaml.safe_load(kfile.read_text()).get("patches", []):
            patch_files.add((kfile.parent / patch["path"]).resolve())
    for path in sorted(kube_dir.rglob("*.y*ml")):
        rel = path.relative_to(repo)
        docs = results.check(f"{rel} parses as YAML", load_docs, path)
        if not docs:
            continue
        if path.resolve() in patch_files:
            print(f"     ({rel} is a JSON 6902 patch: checked through the overlay below)")
            continue
        for doc in docs:
            if doc.get("kind") in ("Kustomization", "Component"):
                continue  # built below
            if is_monitoring(doc):
                monitoring.add(f"{rel} {obj_id(doc)}", doc)
            else:
                results.check(f"kubernetes-validate {rel} {obj_id(doc)}", k8s_validate, doc)
    prom_rule = deploy / "prometheus" / "prometheusrule.yaml"
    if prom_rule.is_file():
        for doc in load_docs(prom_rule):
            monitoring.add(f"{prom_rule.relative_to(repo)} {obj_id(doc)}", doc)
    else:
        results.skip("deploy/prometheus/prometheusrule.yaml", "not there yet")

    # 2. The kustomizations, built in Python and, when kubectl exists, by kubectl.
    missing: set[str] = set()
    base = results.check("kustomize build deploy/kubernetes (JSON 6902 stand-in)",
                         kustomize_build, kube_dir, deploy, missing)
    overlay = results.check("kustomize build deploy/kubernetes/remediation (JSON 6902 stand-in)",
                            kustomize_build, kube_dir / "remediation", deploy, missing)
    kps = results.check("kustomize build deploy/kubernetes/kube-prometheus-stack (JSON 6902 stand-in)",
                        kustomize_build, kube_dir / "kube-prometheus-stack", deploy, missing)
    for m in sorted(missing):
        if not (repo / m / "kustomization.yaml").is_file():
            results.skip(f"kustomize resource {m}", "directory not there yet")
    if shutil.which("kubectl"):
        for rel, ours in (("kubernetes", base), ("kubernetes/remediation", overlay),
                          ("kubernetes/kube-prometheus-stack", kps)):
            if ours:
                results.check(f"kubectl kustomize deploy/{rel} gives the same objects",
                              lambda r=rel, o=ours: same_objects(o, kubectl_kustomize(repo, tmp, r)))
    else:
        results.skip("kubectl kustomize cross-check",
                     "kubectl is not installed (deploy/prometheus and deploy/grafana stay unbuilt)")

    def kustomize_namespace() -> str:
        """An overlay with `namespace: other` moves every object, and the wiring holds."""
        overlay_dir = tmp / "kustomize" / "deploy" / "in-other-namespace"
        kubectl_kustomize(repo, tmp, "kubernetes")  # makes the copy of deploy/
        overlay_dir.mkdir(exist_ok=True)
        (overlay_dir / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "namespace: other\nresources:\n  - ../kubernetes\n")
        docs = kubectl_kustomize(repo, tmp, "in-other-namespace")
        check_wiring([d for d in docs if d["kind"] != "Namespace"], req, "other", job)
        names = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
        require(names == ["other"], f"Namespace objects: {names}")
        return f"{len(docs)} objects in namespace other, ServiceMonitor and dashboard included"
    if shutil.which("kubectl"):
        results.check("kubectl kustomize with `namespace: other` moves everything (ServiceMonitor, dashboard)",
                      kustomize_namespace)

    raw_ds = None
    if base:
        own = base
        results.check("deploy/kubernetes wiring (Service, ServiceMonitor, ServiceAccount, no RBAC)",
                      check_wiring, own, req, NAMESPACE, job)
        raw_ds = find(base, "DaemonSet")
        check_daemonset(results, "deploy/kubernetes", raw_ds, req, "off")
        results.check("deploy/kubernetes has the NetworkPolicy and the priority-class ResourceQuota",
                      lambda: require(any(d["kind"] == "NetworkPolicy" for d in base)
                                      and any(d["kind"] == "ResourceQuota" for d in base),
                                      f"kinds: {sorted({d['kind'] for d in base})}"))
        results.check("consistency check rejects broken DaemonSets", checker_rejects_broken, raw_ds, req)
    if kps:
        release = yaml.safe_load((kube_dir / "kube-prometheus-stack" / "release-label.yaml")
                                 .read_text())[0]["value"]
        results.check("deploy/kubernetes/kube-prometheus-stack wiring", check_wiring, kps, req, NAMESPACE, job)
        results.check("deploy/kubernetes/kube-prometheus-stack: its Prometheus selects the "
                      "ServiceMonitor and PrometheusRule", release_selected, kps, release)
        if base:
            results.check("deploy/kubernetes without the overlay: not selected by release (control)",
                          release_not_selected, base, release)
    prevention = results.check("kustomize build deploy/kubernetes/prevention (JSON 6902 stand-in)",
                               kustomize_build, kube_dir / "prevention", deploy, missing)
    if prevention:
        results.check("deploy/kubernetes/prevention is the RuntimeClass the node install and the "
                      "daemon name", runtime_class_matches, repo, prevention)
    if base:
        results.check("deploy/kubernetes without the prevention overlay: no RuntimeClass (off by default)",
                      lambda: require(not [d for d in base if d["kind"] == "RuntimeClass"],
                                      "the base renders a RuntimeClass"))
    for rel, variant in (("kernel-before-5.11", {"old_kernel": True}),
                         ("seccomp-unconfined", {"seccomp": "Unconfined"})):
        built = results.check(f"kustomize build deploy/kubernetes/{rel} (JSON 6902 stand-in)",
                              kustomize_build, kube_dir / rel, deploy, missing)
        if not built:
            continue
        vds = find(built, "DaemonSet")
        results.check(f"kubernetes-validate deploy/kubernetes/{rel} DaemonSet (patched)", k8s_validate, vds)
        check_daemonset(results, f"deploy/kubernetes/{rel}", vds, req, "off", **variant)
        if shutil.which("kubectl"):
            results.check(f"kubectl kustomize deploy/kubernetes/{rel} gives the same objects",
                          lambda r=rel, o=built: same_objects(o, kubectl_kustomize(repo, tmp, f"kubernetes/{r}")))
    overlay_policy = None
    if overlay:
        ods = find(overlay, "DaemonSet")
        results.check("kubernetes-validate deploy/kubernetes/remediation DaemonSet (patched)", k8s_validate, ods)
        check_daemonset(results, "deploy/kubernetes/remediation", ods, req, "on")
        overlay_policy = yaml.safe_load(find(overlay, "ConfigMap", "-policy")["data"]["policy.yaml"])

    # 3. The Helm chart.
    chart_meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    app_version = str(chart_meta.get("appVersion"))
    chart_values = yaml.safe_load((chart_dir / "values.yaml").read_text())

    # The canonical rules and dashboard, and the chart's byte-identical copies.
    fixtures = Path(__file__).with_name("fixtures")
    chart_files = [("files/rules.yaml", deploy / "prometheus" / "rules.yaml", fixtures / "rules.sample.yaml"),
                   ("files/zombie-daemon.json", deploy / "grafana" / "zombie-daemon.json",
                    fixtures / "dashboard.sample.json")]
    for inner, canonical, _ in chart_files:
        name = f"chart {inner} is a byte-identical copy of {canonical.relative_to(repo)}"
        copy_path = chart_dir / inner
        if not canonical.is_file():
            results.skip(name, f"{canonical.relative_to(repo)} not there yet")
        elif not copy_path.is_file():
            results.fail(name, "missing: run `cargo xtask gen`")
        elif copy_path.read_bytes() != canonical.read_bytes():
            results.fail(name, "differs: run `cargo xtask gen`")
        else:
            results.ok(name)

    # A packaged copy with every optional object on; absent chart files get stand-ins
    # so that the templates are still rendered. Packaging proves the copies survive it.
    full_dir = tmp / "chart-full" / "zombie-daemon"
    shutil.copytree(chart_dir, full_dir)
    stand_ins = []
    for inner, _, fixture in chart_files:
        if not (full_dir / inner).is_file():
            (full_dir / inner).parent.mkdir(exist_ok=True)
            shutil.copyfile(fixture, full_dir / inner)
            stand_ins.append(inner)
    if stand_ins:
        results.skip(f"chart renders with the real {', '.join(stand_ins)}",
                     "not in the chart yet: rendered with tests/deploy/fixtures stand-ins")
    package = results.check("helm package (all files inside the archive)",
                            lambda: helm.package(full_dir, destination=tmp / "chart-full"))
    everything = {"remediation": {"mode": "on"}, "serviceMonitor": {"enabled": True},
                  "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}

    results.check("helm lint --strict (defaults)", helm_lint, chart_dir, {})
    results.check("helm lint --strict (remediation on, all monitoring objects)", helm_lint, full_dir, everything)

    renders = [("defaults", chart_dir, {}, "off"),
               ("remediation.mode=dry-run", chart_dir, {"remediation": {"mode": "dry-run"}}, "dry-run"),
               ("remediation.mode=on", package or full_dir, everything, "on")]
    for label, chart, values, mode in renders:
        source = f"helm[{label}]"
        rendered = results.check(f"{source} client-side dry-run install renders",
                                 lambda c=chart, v=values: helm_install_dry_run(c, v)[0])
        if not rendered:
            continue
        validate_objects(results, monitoring, source, rendered)
        results.check(f"{source} wiring (Service, ServiceMonitor, ServiceAccount, no RBAC)",
                      check_wiring, rendered, req, NAMESPACE, job)
        ds = find(rendered, "DaemonSet")
        check_daemonset(results, source, ds, req, mode)
        results.check(f"{source} image is {IMAGE_REPO}:{app_version}",
                      lambda d=ds: require(daemon_container(d)["image"] == f"{IMAGE_REPO}:{app_version}",
                                           f"image is {daemon_container(d)['image']}"))
        if mode != "off":
            def same_policy(docs: list[dict] = rendered) -> str:
                rendered_policy = yaml.safe_load(find(docs, "ConfigMap", "-policy")["data"]["policy.yaml"])
                require(set(rendered_policy) == POLICY_KEYS,
                        f"policy keys {sorted(rendered_policy)} != {sorted(POLICY_KEYS)}")
                require(rendered_policy == chart_values["remediation"]["policy"],
                        "rendered policy differs from values.yaml")
                require(overlay_policy is None or rendered_policy == overlay_policy,
                        "values.yaml's remediation.policy differs from "
                        "deploy/kubernetes/remediation/policy-configmap.yaml")
                return "same as the kubectl overlay's"
            results.check(f"{source} policy ConfigMap", same_policy)
        if label == "remediation.mode=on":
            def chart_files_rendered(docs: list[dict] = rendered) -> str:
                rules = yaml.safe_load((full_dir / "files/rules.yaml").read_text())
                require(find(docs, "PrometheusRule")["spec"]["groups"] == rules["groups"],
                        "PrometheusRule groups differ from files/rules.yaml")
                dash = find(docs, "ConfigMap", "-dashboard")["data"]["zombie-daemon.json"]
                require(dash == (full_dir / "files/zombie-daemon.json").read_text(),
                        "dashboard ConfigMap data differs from files/zombie-daemon.json")
                json.loads(dash)
                return "PrometheusRule groups and dashboard JSON are the files' content"
            results.check(f"{source} PrometheusRule and dashboard come from the chart files",
                          chart_files_rendered)

    # Values that must be refused, and a CRI-O socket.
    results.check("helm refuses an unquoted `mode: on` (boolean)", helm_must_fail, chart_dir,
                  {"remediation": {"mode": True}}, "remediation")
    results.check("helm refuses remediation.mode=bogus", helm_must_fail, chart_dir,
                  {"remediation": {"mode": "bogus"}}, "remediation")
    for label, values, variant in (
            ("sysResourceCapability=true", {"sysResourceCapability": True}, {"old_kernel": True}),
            ("sysResourceCapability=false", {"sysResourceCapability": False}, {}),
            ("seccompProfile.type=Unconfined", {"seccompProfile": {"type": "Unconfined"}},
             {"seccomp": "Unconfined"})):
        rendered = results.check(f"helm[{label}] renders", lambda v=values: helm_install_dry_run(chart_dir, v)[0])
        if rendered:
            check_daemonset(results, f"helm[{label}]", find(rendered, "DaemonSet"), req, "off", **variant)
    results.check("helm refuses sysResourceCapability=maybe", helm_must_fail, chart_dir,
                  {"sysResourceCapability": "maybe"}, "sysResourceCapability")
    bare = tmp / "chart-bare" / "zombie-daemon"
    shutil.copytree(chart_dir, bare)
    shutil.rmtree(bare / "files", ignore_errors=True)
    results.check("helm refuses prometheusRule.enabled without files/rules.yaml", helm_must_fail, bare,
                  {"prometheusRule": {"enabled": True}}, "files/rules.yaml")

    def kube_prometheus_stack() -> str:
        values = {"monitoringLabels": {"release": "kps"}, "serviceMonitor": {"enabled": True},
                  "prometheusRule": {"enabled": True}}
        docs, _ = helm_install_dry_run(package or full_dir, values)
        bare_docs, _ = helm_install_dry_run(package or full_dir, {k: v for k, v in values.items()
                                                                   if k != "monitoringLabels"})
        release_not_selected(bare_docs, "kps")
        return release_selected(docs, "kps") + "; without monitoringLabels neither"
    results.check("helm monitoringLabels.release=kps: kube-prometheus-stack selects both objects",
                  kube_prometheus_stack)

    def rule_values() -> str:
        values = {"job": "zd", "prometheusRule": {"enabled": True, "kubeStateMetricsJob": "ksm",
                                                  "disabledAlerts": ["ZombieProcessOld", "NodePIDUsage"]},
                  "serviceMonitor": {"enabled": True}}
        docs, _ = helm_install_dry_run(package or full_dir, values)
        check_wiring(docs, req, NAMESPACE, "zd")
        rules = [r for g in find(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
        exprs = "\n".join(r["expr"] for r in rules)
        require('job="zombie-daemon"' not in exprs and 'up{job="zd"}' in exprs, "the job value is not used")
        require('job="ksm",namespace="zombie-daemon",daemonset="zombie-daemon"' in exprs,
                "the kube-state-metrics selector is not job=ksm, namespace and DaemonSet of the release")
        names = {r.get("alert") for r in rules}
        require(not names & {"ZombieProcessOld", "NodePIDUsage"}, f"disabled alerts rendered: {sorted(names - {None})}")
        all_rules = yaml.safe_load((full_dir / "files/rules.yaml").read_text())
        want = sum(len(g["rules"]) for g in all_rules["groups"]) - 3
        require(len(rules) == want, f"{len(rules)} rules rendered, expected {want}")
        other, _ = helm_install_dry_run(package or full_dir, {"prometheusRule": {"enabled": True},
                                                              "fullnameOverride": "zombies"})
        other_exprs = "\n".join(r["expr"] for g in find(other, "PrometheusRule")["spec"]["groups"]
                                 for r in g["rules"])
        require('daemonset="zombies"' in other_exprs, "the DaemonSet selector does not follow the full name")
        return "job, kube-state-metrics job, DaemonSet name and disabledAlerts take effect"
    results.check("helm job, prometheusRule.kubeStateMetricsJob and .disabledAlerts", rule_values)

    def switched_off() -> str:
        docs, _ = helm_install_dry_run(chart_dir, {"networkPolicy": {"enabled": False},
                                                   "resourceQuota": {"enabled": False}})
        kinds = {d["kind"] for d in docs}
        require(not kinds & {"NetworkPolicy", "ResourceQuota"}, f"still rendered: {sorted(kinds)}")
        on, _ = helm_install_dry_run(chart_dir, {})
        kinds_on = {d["kind"] for d in on}
        require({"NetworkPolicy", "ResourceQuota"} <= kinds_on, f"defaults render {sorted(kinds_on)}")
        other, _ = helm_install_dry_run(chart_dir, {"priorityClassName": "zombie-daemon-critical"})
        require("ResourceQuota" not in {d["kind"] for d in other},
                "a ResourceQuota is rendered for a non-critical priority class")
        return "on by default; off with networkPolicy.enabled/resourceQuota.enabled=false"
    results.check("helm NetworkPolicy and ResourceQuota are switchable", switched_off)

    def runtime_class() -> str:
        off, _ = helm_install_dry_run(chart_dir, {})
        require(not [d for d in off if d["kind"] == "RuntimeClass"], "a RuntimeClass by default")
        on, _ = helm_install_dry_run(chart_dir, {"runtimeClass": {"enabled": True}})
        rc = find(on, "RuntimeClass")
        k8s_validate(rc)
        runtime_class_matches(repo, [rc])
        require("scheduling" not in rc, f"scheduling without a nodeSelector: {rc}")
        sel = {"zombie-daemon.io/zombie-init": "true"}
        other, _ = helm_install_dry_run(chart_dir, {"runtimeClass": {"enabled": True, "nodeSelector": sel}})
        rc = find(other, "RuntimeClass")
        k8s_validate(rc)
        require(rc["scheduling"] == {"nodeSelector": sel}, f"scheduling {rc.get('scheduling')}")
        return "off by default; on: strict-valid, handler zombie-init, nodeSelector as scheduling"
    results.check("helm runtimeClass.enabled renders the zombie-init RuntimeClass", runtime_class)
    results.check("helm refuses a runtimeClass.handler that is not a DNS label", helm_must_fail, chart_dir,
                  {"runtimeClass": {"enabled": True, "handler": "Zombie Init"}}, "runtimeClass")

    def narrowed_policy() -> str:
        peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
        docs, _ = helm_install_dry_run(chart_dir, {"networkPolicy": {"from": [peer]}})
        problems = network_policy_problems(docs, find(docs, "DaemonSet"), req)
        require(not problems, "\n".join(problems))
        pol = find(docs, "NetworkPolicy")
        require(pol["spec"]["ingress"][0]["from"] == [peer], f"{pol['spec']}")
        return "networkPolicy.from is used as given"
    results.check("helm networkPolicy.from narrows the admitted Prometheus", narrowed_policy)

    def checker_rejects_open_policy() -> str:
        docs, _ = helm_install_dry_run(chart_dir, {"networkPolicy": {"from": [{"namespaceSelector": {}}]}})
        problems = network_policy_problems(docs, find(docs, "DaemonSet"), req)
        require(problems, "a policy admitting every pod was accepted")
        no_quota = [d for d in docs if d["kind"] != "ResourceQuota"]
        require(quota_problems(no_quota, find(docs, "DaemonSet")), "a missing ResourceQuota was accepted")
        return "an open NetworkPolicy and a missing ResourceQuota are rejected"
    results.check("wiring check rejects an open NetworkPolicy and a missing quota (control)",
                  checker_rejects_open_policy)

    def pod_monitor() -> str:
        values = {"podMonitor": {"enabled": True, "relabelings": [
            {"action": "replace", "targetLabel": "cluster", "replacement": "eu-1"}]},
            "monitoringLabels": {"release": "kps"}}
        docs, _ = helm_install_dry_run(package or full_dir, values)
        check_wiring(docs, req, NAMESPACE, job)
        pm = find(docs, "PodMonitor")
        monitoring.add("helm[podMonitor.enabled] PodMonitor", pm)
        require(pm["metadata"]["labels"].get("release") == "kps", "monitoringLabels missing on the PodMonitor")
        rl = pm["spec"]["podMetricsEndpoints"][0]["relabelings"]
        require(rl[-1] == values["podMonitor"]["relabelings"][0], f"extra relabeling not appended: {rl}")
        require(not [d for d in docs if d["kind"] == "ServiceMonitor"], "a ServiceMonitor too")
        return "selects the pods, job/instance relabelings, extra relabeling appended"
    results.check("helm podMonitor.enabled renders a PodMonitor wired like the ServiceMonitor", pod_monitor)
    results.check("helm refuses serviceMonitor and podMonitor together", helm_must_fail, chart_dir,
                  {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}, "not both")

    def extras() -> str:
        values = {"extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/ca/ca.crt"}],
                  "extraVolumes": [{"name": "ca", "configMap": {"name": "ca"}}],
                  "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
                  "scrapeAnnotations": True,
                  "probes": {"startup": {"periodSeconds": 10, "failureThreshold": 30}},
                  "serviceMonitor": {"enabled": True, "metricRelabelings": [
                      {"action": "drop", "sourceLabels": ["__name__"], "regex": "zombie_pod_pids"}]}}
        docs, _ = helm_install_dry_run(chart_dir, values)
        ds = find(docs, "DaemonSet")
        k8s_validate(ds)
        problems = [f"{a}: {x}" for a, ps in ds_consistency(ds, req, "off") for x in ps]
        require(not problems, "\n".join(problems))
        c = daemon_container(ds)
        require(c["env"] == values["extraEnv"], f"env {c.get('env')}")
        require(values["extraVolumeMounts"][0] in c["volumeMounts"], "extra mount missing")
        require(values["extraVolumes"][0] in ds["spec"]["template"]["spec"]["volumes"], "extra volume missing")
        ann = ds["spec"]["template"]["metadata"]["annotations"]
        require(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(req["port"])
                and ann.get("prometheus.io/path") == req["metrics_path"], f"annotations {ann}")
        require(c["startupProbe"]["periodSeconds"] == 10 and c["startupProbe"]["failureThreshold"] == 30,
                f"startupProbe {c['startupProbe']}")
        sm = find(docs, "ServiceMonitor")
        require(sm["spec"]["endpoints"][0]["metricRelabelings"] == values["serviceMonitor"]["metricRelabelings"],
                "metricRelabelings not passed")
        default_ann = find(helm_install_dry_run(chart_dir, {})[0], "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
        require("prometheus.io/scrape" not in default_ann, "scrape annotations by default")
        return "extraEnv/Volumes/VolumeMounts, scrapeAnnotations, probes, metricRelabelings take effect"
    results.check("helm extra env/volumes, scrape annotations, probe timings, metricRelabelings", extras)

    def security_contexts() -> str:
        values = {"securityContext": {"runAsGroup": 1000, "procMount": "Default"},
                  "podSecurityContext": {"supplementalGroups": [1000]}}
        docs, _ = helm_install_dry_run(chart_dir, values)
        ds = find(docs, "DaemonSet")
        k8s_validate(ds)
        problems = [f"{a}: {x}" for a, ps in ds_consistency(ds, req, "off") for x in ps]
        require(not problems, "\n".join(problems))
        sc = daemon_container(ds)["securityContext"]
        require(sc["runAsGroup"] == 1000 and sc["procMount"] == "Default", f"not merged: {sc}")
        require(sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"],
                f"defaults lost in the merge: {sc}")
        require(ds["spec"]["template"]["spec"]["securityContext"] == values["podSecurityContext"],
                "podSecurityContext not passed")
        # A value that takes a requirement away is caught by the same consistency check.
        docs, _ = helm_install_dry_run(chart_dir, {"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["BPF"]}}})
        broken = [x for _, ps in ds_consistency(find(docs, "DaemonSet"), req, "off") for x in ps]
        require(broken, "dropping capabilities through securityContext went unnoticed")
        default = find(helm_install_dry_run(chart_dir, {})[0], "DaemonSet")["spec"]["template"]["spec"]
        require("securityContext" not in default, "a pod securityContext by default")
        return "merged over the defaults; a value that drops a requirement is caught"
    results.check("helm securityContext and podSecurityContext values", security_contexts)

    def crio() -> str:
        docs, _ = helm_install_dry_run(chart_dir, {"runtimeSocket": "/var/run/crio/crio.sock"})
        c = daemon_container(find(docs, "DaemonSet"))
        vols = {v["name"]: v for v in find(docs, "DaemonSet")["spec"]["template"]["spec"]["volumes"]}
        mount = [m for m in c["volumeMounts"] if m["name"] == "runtime-socket"][0]
        require(vols["runtime-socket"]["hostPath"]["path"] == "/var/run/crio", f"{vols['runtime-socket']}")
        require(mount["mountPath"] == "/host/var/run/crio" and mount["readOnly"], f"{mount}")
        require("--runtime-endpoint=unix:///host/var/run/crio/crio.sock" in c["args"], f"{c['args']}")
        return "/var/run/crio -> /host/var/run/crio, unix:///host/var/run/crio/crio.sock"
    results.check("helm runtimeSocket=/var/run/crio/crio.sock mounts its directory", crio)

    def kubepods_prefixes() -> str:
        prefixes = ["/kubelet.slice", "/system.slice/*/kubelet"]
        docs, _ = helm_install_dry_run(chart_dir, {"kubepodsPrefixes": prefixes})
        args = daemon_container(find(docs, "DaemonSet"))["args"]
        want = [f"--kubepods-prefix={p}" for p in prefixes]
        require([a for a in args if a.startswith("--kubepods-prefix")] == want, f"{args}")
        default = daemon_container(find(helm_install_dry_run(chart_dir, {})[0], "DaemonSet"))["args"]
        require(not any(a.startswith("--kubepods-prefix") for a in default), f"{default}")
        helm_must_fail(chart_dir, {"kubepodsPrefixes": ["kubelet.slice"]}, "kubepodsPrefixes")
        return "one --kubepods-prefix per value, none by default, a relative one refused"
    results.check("helm kubepodsPrefixes become --kubepods-prefix flags", kubepods_prefixes)

    # The chart's copies, the PrometheusRule and README's values table come from one source.
    def generated_current() -> str:
        proc = subprocess.run(["cargo", "xtask", "gen", "--check"], cwd=repo, capture_output=True,
                              text=True, timeout=600)
        require(proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-1500:])
        return "PrometheusRule, chart files/ and deploy/README.md's values table"
    if shutil.which("cargo"):
        results.check("generated files are current (cargo xtask gen --check)", generated_current)
    else:
        results.skip("cargo xtask gen --check", "cargo is not installed")

    # 4. One version everywhere.
    def versions() -> str:
        require(raw_ds is not None, "no raw DaemonSet")
        image = daemon_container(raw_ds)["image"]
        require(image == f"{IMAGE_REPO}:{app_version}",
                f"deploy/kubernetes image {image} != {IMAGE_REPO}:{app_version} (Chart appVersion)")
        cargo = repo / "Cargo.toml"
        if cargo.is_file():
            ws = tomllib.loads(cargo.read_text()).get("workspace", {}).get("package", {})
            if "version" in ws:
                require(ws["version"] == app_version,
                        f"Cargo workspace version {ws['version']} != Chart appVersion {app_version}")
                docker_version = re.search(r"^ARG VERSION=(\S+)$", (repo / "deploy" / "Dockerfile").read_text(), re.M)
                require(docker_version is not None and docker_version.group(1) == app_version,
                        f"deploy/Dockerfile ARG VERSION {docker_version and docker_version.group(1)} != {app_version}")
                return f"{app_version} in Cargo.toml, Chart.yaml, the Dockerfile and the manifests"
        return f"{app_version} in Chart.yaml and the manifests"
    results.check("one version: image tag, Chart appVersion, Cargo workspace", versions)

    # 5. The Dockerfile: hadolint, and what it builds against what the DaemonSet runs.
    dockerfile_path = deploy / "Dockerfile"
    results.check("hadolint deploy/Dockerfile", hadolint, dockerfile_path)
    if raw_ds is not None:
        results.check("deploy/Dockerfile builds what the DaemonSet runs", check_dockerfile, dockerfile_path,
                      list(daemon_container(raw_ds).get("command", [])), req["port"],
                      tomllib.loads((repo / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"])

    # 6. The Prometheus Operator objects collected above, in one node process.
    monitoring.run(results, opts.node_prefix, tmp)

    tail = f", {results.skipped} skipped" if results.skipped else ""
    print(f"{results.passed} passed, {results.failed} failed{tail}")
    if opts.strict and results.skipped:
        print(f"FAIL --strict: {results.skipped} check(s) could not run (SKIP above)")
        return 1
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
