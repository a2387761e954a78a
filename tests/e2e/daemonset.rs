//! The DaemonSet run as shipped: the image `cargo xtask image` built from deploy/Dockerfile,
//! imported into a real containerd and run through its CRI exactly as the rendered manifests
//! say — `kubectl kustomize deploy/kubernetes` and the Helm chart's default values — mapped
//! field by field the way the kubelet maps a pod spec to CRI calls, so that a change to the
//! manifests, the chart or the image that breaks the daemon fails here.
//!
//! Two substitutions, both facts of these machines and not of the manifests: the pod runs
//! on the host network (there is no CNI here; the probes then reach 127.0.0.1), and the
//! runtime-socket volume's host path (`/run/containerd`) is the test containerd's own
//! directory, which holds its `containerd.sock`. Everything else a field says is passed on,
//! and a field this mapping does not know fails the test instead of being left out.
//!
//! What each run shows: ready on the manifest's capabilities alone (the container's
//! bounding set is exactly them), a neighbour pod's zombies named `namespace/pod/container`
//! with cause and remedy, `/metrics` served (no series per sandbox, the daemon's own hostPID
//! pod not reported as sharing a pod's PID namespace), and a clean detach on StopContainer:
//! exit 0 within the grace period and none of its programs left in the kernel.

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ContainerStatusRequest, ImageSpec, Int64Value,
    KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, SeLinuxOption, SecurityProfile, StopContainerRequest,
    security_profile::ProfileType,
};
use serde_json::Value;

use crate::{
    containerd::{BUSYBOX_IMAGE, Containerd},
    harness::{http_get, poll},
};

/// What `cargo xtask image` writes (xtask/src/image.rs).
const IMAGE_ARCHIVE: &str = "target/image/zombie-daemon.oci.tar";
/// The kubelet's default masked and read-only paths for a container that is not privileged
/// (`procMount: Default`), which it passes in every CreateContainer.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
/// The kubelet's oom_score_adj for a node-critical pod (`system-node-critical`).
const NODE_CRITICAL_OOM_SCORE_ADJ: i64 = -997;
/// The neighbour: a `sh -c` PID 1 whose subshell starts three sleepers and exits, so they
/// are handed to PID 1, which then becomes `sleep` and never reaps them.
const NEIGHBOUR_ZOMBIES: usize = 3;
const NEIGHBOUR: &str = "( sleep 1 & sleep 1 & sleep 1 & ) ; exec sleep 3600";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The DaemonSet of `kubectl kustomize deploy/kubernetes`.
fn kustomize_daemonset() -> Value {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("deploy/kubernetes"))
        .output()
        .expect("kubectl is missing: run cargo xtask setup --test as root");
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/kubernetes failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    the_daemonset(docs)
}

/// The DaemonSet of the chart rendered with its default values (release and namespace
/// `zombie-daemon`), by Helm's own SDK (tests/deploy/render_chart.py).
fn helm_daemonset() -> Value {
    let out = Command::new("bash")
        .arg(repo().join("tests/deploy/run.sh"))
        .arg("--render-chart")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rendering the chart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    the_daemonset(serde_json::from_slice(&out.stdout).unwrap())
}

fn the_daemonset(docs: Vec<Value>) -> Value {
    let mut found: Vec<Value> = docs
        .into_iter()
        .filter(|d| d["kind"] == "DaemonSet")
        .collect();
    assert_eq!(found.len(), 1, "expected one DaemonSet");
    found.remove(0)
}

/// A field this mapping does not translate: the test must learn it, not skip it.
fn unmapped(what: &str, v: &Value) -> ! {
    panic!("the manifest has {what} = {v}: map it in tests/e2e/daemonset.rs as the kubelet does")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A Kubernetes quantity of CPU in millicores ("500m", "1", "0.5").
fn millicpu(q: &Value) -> i64 {
    let s = q
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| q.to_string());
    match s.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => (s.parse::<f64>().unwrap() * 1000.0) as i64,
    }
}

/// A Kubernetes quantity of memory in bytes ("256Mi", "1Gi", "64M", "1000").
fn bytes(q: &Value) -> i64 {
    let s = q
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| q.to_string());
    for (suffix, mult) in [
        ("Ki", 1i64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ] {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<i64>().unwrap() * mult;
        }
    }
    s.parse().unwrap()
}

/// A seccomp or AppArmor profile's type; `default` where the manifest sets none.
fn profile_type(v: &Value, default: ProfileType) -> ProfileType {
    match v["type"].as_str() {
        None => default,
        Some("RuntimeDefault") => ProfileType::RuntimeDefault,
        Some("Unconfined") => ProfileType::Unconfined,
        Some(_) => unmapped("a profile", v),
    }
}

fn profile(t: ProfileType) -> SecurityProfile {
    SecurityProfile {
        profile_type: t as i32,
        localhost_ref: String::new(),
    }
}

/// The pod as CRI receives it from the kubelet: its sandbox config and its one container's.
struct Pod {
    sandbox: PodSandboxConfig,
    container: ContainerConfig,
    /// The HTTP port of the probes (the named port resolved) and their paths.
    port: u16,
    startup_path: String,
    readiness_path: String,
    liveness_path: String,
    /// How long the startup probe lets it become ready: period x failureThreshold.
    startup_budget: Duration,
    /// terminationGracePeriodSeconds: the StopContainer timeout.
    grace: i64,
    /// The capabilities the container is given.
    capabilities: Vec<String>,
    seccomp: ProfileType,
}

/// Maps a rendered DaemonSet to CRI as the kubelet does (kuberuntime's
/// generatePodSandboxConfig and generateContainerConfig), with the two substitutions of the
/// module doc. `socket_dir` is the test containerd's directory.
fn to_cri(ds: &Value, uid: &str, socket_dir: &Path, scratch: &Path) -> Pod {
    let template = &ds["spec"]["template"];
    let spec = &template["spec"];
    let c = the_container(spec);
    let name = ds["metadata"]["name"].as_str().unwrap();
    let pod = PodName {
        name: format!("{name}-e2e01"),
        namespace: ds["metadata"]["namespace"].as_str().unwrap(),
        uid,
    };
    let namespaces = pod_namespaces(spec);
    let res = &c["resources"];
    let (req, lim) = (&res["requests"], &res["limits"]);
    let cgroup_parent = qos_cgroup_parent(req, lim, uid);
    let annotations = string_map(&template["metadata"]["annotations"]);
    let log_dir = scratch.join(format!("{}_{}_{uid}", pod.namespace, pod.name));
    fs::create_dir_all(&log_dir).unwrap();
    let sandbox = sandbox_config(
        &pod,
        string_map(&template["metadata"]["labels"]),
        annotations.clone(),
        cgroup_parent,
        &log_dir,
        namespaces.clone(),
    );

    let sc = &c["securityContext"];
    check_container_security_context(sc);
    let capabilities = strings(&sc["capabilities"]["add"]);
    // The kubelet's default without --seccomp-default.
    let seccomp = profile_type(&sc["seccompProfile"], ProfileType::Unconfined);
    let mounts = container_mounts(spec, c, socket_dir, &log_dir);
    let envs = container_envs(c);
    let container_name = c["name"].as_str().unwrap();
    let labels = container_labels(container_name, &pod);
    let resources = container_resources(req, lim);
    check_node_critical(spec);
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: container_name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: c["image"].as_str().unwrap().into(),
            ..Default::default()
        }),
        command: strings(&c["command"]),
        args: strings(&c["args"]),
        envs,
        mounts,
        labels,
        annotations,
        log_path: format!("{container_name}/0.log"),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(container_security_context(
                sc,
                &capabilities,
                seccomp,
                namespaces,
            )),
        }),
        ..Default::default()
    };
    let probes = probes(c);
    Pod {
        sandbox,
        container,
        port: probes.port,
        startup_path: probes.startup_path,
        readiness_path: probes.readiness_path,
        liveness_path: probes.liveness_path,
        startup_budget: probes.startup_budget,
        grace: spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(30),
        capabilities,
        seccomp,
    }
}

/// The pod's name as the kubelet passes it in labels and metadata.
struct PodName<'a> {
    name: String,
    namespace: &'a str,
    uid: &'a str,
}

/// The pod spec's one container, once the pod-level fields this mapping does not translate
/// are known to be absent.
fn the_container(spec: &Value) -> &Value {
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "one container");
    if !spec["initContainers"].is_null() {
        unmapped("initContainers", &spec["initContainers"]);
    }
    for key in ["hostNetwork", "hostIPC", "shareProcessNamespace"] {
        if spec[key].as_bool() == Some(true) {
            unmapped(key, &spec[key]);
        }
    }
    if !spec["securityContext"].is_null()
        && spec["securityContext"] != Value::Object(Default::default())
    {
        unmapped("the pod's securityContext", &spec["securityContext"]);
    }
    &containers[0]
}

/// The pod's namespaces: no CNI here, so the host network (see the module doc).
fn pod_namespaces(spec: &Value) -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: if spec["hostPID"].as_bool() == Some(true) {
            NamespaceMode::Node
        } else {
            NamespaceMode::Container
        } as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The pod's cgroup by its QoS class, from requests and limits (one container): Guaranteed
/// when they are equal for CPU and memory, BestEffort when neither is set, else Burstable.
fn qos_cgroup_parent(req: &Value, lim: &Value, uid: &str) -> String {
    let qos = if req.is_null() && lim.is_null() {
        "besteffort"
    } else if !lim["cpu"].is_null()
        && !lim["memory"].is_null()
        && (req["cpu"].is_null() || millicpu(&req["cpu"]) == millicpu(&lim["cpu"]))
        && (req["memory"].is_null() || bytes(&req["memory"]) == bytes(&lim["memory"]))
    {
        "guaranteed"
    } else {
        "burstable"
    };
    if qos == "guaranteed" {
        format!("/kubepods/pod{uid}")
    } else {
        format!("/kubepods/{qos}/pod{uid}")
    }
}

/// A manifest's labels or annotations (a map of strings; none when absent).
fn string_map(v: &Value) -> HashMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn sandbox_config(
    pod: &PodName,
    mut labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    cgroup_parent: String,
    log_dir: &Path,
    namespaces: NamespaceOption,
) -> PodSandboxConfig {
    labels.insert("io.kubernetes.pod.name".into(), pod.name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), pod.namespace.into());
    labels.insert("io.kubernetes.pod.uid".into(), pod.uid.into());
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.name.clone(),
            uid: pod.uid.into(),
            namespace: pod.namespace.into(),
            attempt: 0,
        }),
        // runc refuses a hostname without a UTS namespace of the pod's own.
        hostname: String::new(),
        log_directory: log_dir.to_str().unwrap().into(),
        labels,
        annotations,
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent,
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container's securityContext has only fields this mapping knows, and is not
/// privileged.
fn check_container_security_context(sc: &Value) {
    let known_sc = [
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "privileged",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "capabilities",
        "seccompProfile",
        "appArmorProfile",
        "seLinuxOptions",
    ];
    for (k, v) in sc.as_object().unwrap() {
        if !known_sc.contains(&k.as_str()) {
            unmapped(&format!("securityContext.{k}"), v);
        }
    }
    assert_eq!(
        sc["privileged"].as_bool(),
        Some(false),
        "a privileged container would prove nothing about the capabilities"
    );
}

/// The container's hostPath volume mounts, and the kubelet's own: the termination message
/// file (written into `log_dir`).
fn container_mounts(spec: &Value, c: &Value, socket_dir: &Path, log_dir: &Path) -> Vec<Mount> {
    let volumes: HashMap<String, &Value> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect();
    let mut mounts = Vec::new();
    for m in c["volumeMounts"].as_array().unwrap() {
        let v = volumes[m["name"].as_str().unwrap()];
        let Some(host) = v["hostPath"]["path"].as_str() else {
            unmapped("a volume that is not a hostPath", v)
        };
        if !m["mountPropagation"].is_null() || !m["subPath"].is_null() {
            unmapped("a volumeMount", m);
        }
        // The runtime socket's directory is this node's containerd's (see the module doc).
        let host_path = if host == "/run/containerd" {
            socket_dir.to_path_buf()
        } else {
            PathBuf::from(host)
        };
        mounts.push(Mount {
            container_path: m["mountPath"].as_str().unwrap().into(),
            host_path: host_path.to_str().unwrap().into(),
            readonly: m["readOnly"].as_bool().unwrap_or(false),
            ..Default::default()
        });
    }
    // The kubelet's own mount: the termination message file.
    let termination = log_dir.join("termination-log");
    fs::write(&termination, "").unwrap();
    mounts.push(Mount {
        container_path: c["terminationMessagePath"]
            .as_str()
            .unwrap_or("/dev/termination-log")
            .into(),
        host_path: termination.to_str().unwrap().into(),
        ..Default::default()
    });
    mounts
}

fn container_envs(c: &Value) -> Vec<KeyValue> {
    c["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| KeyValue {
                    key: e["name"].as_str().unwrap().into(),
                    value: e["value"]
                        .as_str()
                        .unwrap_or_else(|| unmapped("an env var without a value", e))
                        .into(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn container_labels(container_name: &str, pod: &PodName) -> HashMap<String, String> {
    HashMap::from([
        (
            "io.kubernetes.container.name".to_string(),
            container_name.to_string(),
        ),
        ("io.kubernetes.pod.name".to_string(), pod.name.clone()),
        (
            "io.kubernetes.pod.namespace".to_string(),
            pod.namespace.to_string(),
        ),
        ("io.kubernetes.pod.uid".to_string(), pod.uid.to_string()),
    ])
}

/// CPU and memory from requests and limits, and a node-critical pod's oom_score_adj.
fn container_resources(req: &Value, lim: &Value) -> LinuxContainerResources {
    let cpu_limit = if lim["cpu"].is_null() {
        0
    } else {
        millicpu(&lim["cpu"])
    };
    let cpu_request = if req["cpu"].is_null() {
        cpu_limit
    } else {
        millicpu(&req["cpu"])
    };
    LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: cpu_limit * 100,
        // The kubelet's milliCPUToShares.
        cpu_shares: (cpu_request * 1024 / 1000).max(2),
        memory_limit_in_bytes: if lim["memory"].is_null() {
            0
        } else {
            bytes(&lim["memory"])
        },
        oom_score_adj: NODE_CRITICAL_OOM_SCORE_ADJ,
        ..Default::default()
    }
}

/// The oom_score_adj above is a node-critical pod's: the manifest must say it is one.
fn check_node_critical(spec: &Value) {
    let critical = matches!(
        spec["priorityClassName"].as_str(),
        Some("system-node-critical" | "system-cluster-critical")
    );
    if !critical {
        unmapped("priorityClassName", &spec["priorityClassName"]);
    }
}

fn container_security_context(
    sc: &Value,
    capabilities: &[String],
    seccomp: ProfileType,
    namespaces: NamespaceOption,
) -> LinuxContainerSecurityContext {
    let int64 = |v: &Value| v.as_i64().map(|value| Int64Value { value });
    LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: capabilities.to_vec(),
            drop_capabilities: strings(&sc["capabilities"]["drop"]),
            ..Default::default()
        }),
        privileged: false,
        namespace_options: Some(namespaces),
        selinux_options: (!sc["seLinuxOptions"].is_null()).then(|| SeLinuxOption {
            user: sc["seLinuxOptions"]["user"].as_str().unwrap_or("").into(),
            role: sc["seLinuxOptions"]["role"].as_str().unwrap_or("").into(),
            r#type: sc["seLinuxOptions"]["type"].as_str().unwrap_or("").into(),
            level: sc["seLinuxOptions"]["level"].as_str().unwrap_or("").into(),
        }),
        run_as_user: int64(&sc["runAsUser"]),
        run_as_group: int64(&sc["runAsGroup"]),
        readonly_rootfs: sc["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
        no_new_privs: sc["allowPrivilegeEscalation"].as_bool() == Some(false),
        masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
        readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
        seccomp: Some(profile(seccomp)),
        apparmor: Some(profile(profile_type(
            &sc["appArmorProfile"],
            ProfileType::RuntimeDefault,
        ))),
        ..Default::default()
    }
}

/// The probes' HTTP port (the named port resolved) and paths, and the startup budget.
struct Probes {
    port: u16,
    startup_path: String,
    readiness_path: String,
    liveness_path: String,
    startup_budget: Duration,
}

/// The probes: httpGet on a port (by name or number) of this container.
fn probes(c: &Value) -> Probes {
    let port_of = |p: &Value| -> u16 {
        match p {
            Value::Number(n) => n.as_u64().unwrap() as u16,
            Value::String(name) => c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == *name)
                .unwrap_or_else(|| panic!("no port named {name}"))["containerPort"]
                .as_u64()
                .unwrap() as u16,
            other => unmapped("a probe port", other),
        }
    };
    let probe = |key: &str| -> (&Value, String, u16) {
        let p = &c[key];
        let get = &p["httpGet"];
        if get.is_null() {
            unmapped(key, p);
        }
        (
            p,
            get["path"].as_str().unwrap().to_string(),
            port_of(&get["port"]),
        )
    };
    let (startup, startup_path, port) = probe("startupProbe");
    let (_, readiness_path, p2) = probe("readinessProbe");
    let (_, liveness_path, p3) = probe("livenessProbe");
    assert!(p2 == port && p3 == port, "the probes use different ports");
    let startup_budget = Duration::from_secs(
        startup["periodSeconds"].as_u64().unwrap_or(10)
            * startup["failureThreshold"].as_u64().unwrap_or(3),
    );
    Probes {
        port,
        startup_path,
        readiness_path,
        liveness_path,
        startup_budget,
    }
}

/// Capability numbers (linux/capability.h) of the names a manifest may add.
fn cap_bit(name: &str) -> u64 {
    let n = match name.trim_start_matches("CAP_") {
        "KILL" => 5,
        "SYS_PTRACE" => 19,
        "SYS_RESOURCE" => 24,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other} is not known to this test"),
    };
    1 << n
}

fn status_field(pid: i32, key: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// The ids of the BPF programs a process holds (`prog_id` in its descriptors' fdinfo).
fn prog_ids(pid: i32) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for e in fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        if let Ok(text) = fs::read_to_string(e.path()) {
            ids.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:"))
                    .filter_map(|v| v.trim().parse::<u32>().ok()),
            );
        }
    }
    ids
}

/// Whether the kernel still has program `id` (bpftool looks it up by id).
fn prog_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .expect("bpftool is missing: run cargo xtask setup --test as root")
        .status
        .success()
}

fn metrics(port: u16) -> String {
    let (code, body) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200, "{body}");
    body
}

fn run_as_shipped(source: &str, ds: Value) {
    let (mut c, pod) = start_containerd_with_the_image(&ds);
    let t = Instant::now();
    let sandbox = c.run_pod_config(pod.sandbox.clone());
    let id = c.run_container_config(&sandbox, pod.container.clone());
    let pid = c.container_pid(&id);
    wait_ready(source, &pod, t);
    let programs = check_confinement(source, &pod, pid);
    let neighbour = check_neighbour_named(source, &mut c, &pod);
    check_metrics(source, &pod, [&sandbox, &neighbour], &programs);
    check_clean_stop(source, &c, &pod, &id, &programs);
}

/// A containerd of the test's own with the image imported, and the DaemonSet mapped to CRI
/// for it.
fn start_containerd_with_the_image(ds: &Value) -> (Containerd, Pod) {
    let archive = repo().join(IMAGE_ARCHIVE);
    assert!(
        archive.is_file(),
        "{} is missing: run `cargo xtask image` (cargo xtask test builds it before this suite)",
        archive.display()
    );
    let c = Containerd::start();
    let scratch = c.dir().join("pods");
    c.ctr(&["images", "import", archive.to_str().unwrap()]);
    let uid = "d0d0d0d0-1111-2222-3333-444444444444";
    let pod = to_cri(ds, uid, c.dir(), &scratch);
    // Host network: the port must be ours.
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", pod.port)).is_ok(),
        "port {} is taken on this machine: the pod runs on the host network here",
        pod.port
    );
    (c, pod)
}

/// Ready on these capabilities alone: the startup probe's budget (from `t`, RunPodSandbox)
/// is the contract; then the readiness and liveness probes answer too.
fn wait_ready(source: &str, pod: &Pod, t: Instant) {
    poll(
        &format!("{source}: {} answering 200", pod.startup_path),
        pod.startup_budget,
        || {
            http_get(pod.port, &pod.startup_path)
                .ok()
                .filter(|(code, _)| *code == 200)
        },
    );
    let ready_after = t.elapsed();
    for path in [&pod.readiness_path, &pod.liveness_path] {
        let (code, body) = http_get(pod.port, path).unwrap();
        assert_eq!(code, 200, "{path}: {body}");
    }
    eprintln!("daemonset[{source}]: ready {ready_after:?} after RunPodSandbox");
}

/// The container got exactly the manifest's capabilities, and the daemon kept SYS_PTRACE
/// only after the load; the seccomp profile is the manifest's; its programs are attached.
/// Returns the ids of the programs the daemon holds.
fn check_confinement(source: &str, pod: &Pod, pid: i32) -> BTreeSet<u32> {
    let want: u64 = pod.capabilities.iter().map(|n| cap_bit(n)).sum();
    let bounding = u64::from_str_radix(&status_field(pid, "CapBnd"), 16).unwrap();
    assert_eq!(bounding, want, "{source}: bounding set {bounding:x}");
    let effective = u64::from_str_radix(&status_field(pid, "CapEff"), 16).unwrap();
    assert_eq!(
        effective,
        cap_bit("SYS_PTRACE"),
        "{source}: CapEff {effective:x}"
    );
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    // The daemon installs one filter of its own; RuntimeDefault adds the runtime's.
    let filters: u32 = status_field(pid, "Seccomp_filters").parse().unwrap();
    let runtimes = u32::from(pod.seccomp == ProfileType::RuntimeDefault);
    assert_eq!(filters, 1 + runtimes, "{source}: Seccomp_filters");
    let body = metrics(pod.port);
    assert!(
        body.contains("zombie_ebpf_programs_attached 5"),
        "{source}: {body}"
    );
    let programs = prog_ids(pid);
    assert!(programs.len() >= 5, "{source}: programs held {programs:?}");
    programs
}

/// A neighbour pod leaks zombies: named by the runtime, with cause and remedy. Returns its
/// sandbox id.
fn check_neighbour_named(source: &str, c: &mut Containerd, pod: &Pod) -> String {
    let neighbour_uid = "e1e1e1e1-1111-2222-3333-444444444444";
    let neighbour = c.run_pod(
        "leaky",
        "shop",
        neighbour_uid,
        &format!("/kubepods/besteffort/pod{neighbour_uid}"),
    );
    c.run_container(&neighbour, "app", BUSYBOX_IMAGE, &["sh", "-c", NEIGHBOUR]);
    let zombies = poll(
        &format!("{source}: the neighbour's {NEIGHBOUR_ZOMBIES} zombies, named"),
        Duration::from_secs(15),
        || {
            let (_, body) = http_get(pod.port, "/zombies?namespace=shop&pod=leaky").ok()?;
            let z: Vec<Value> = serde_json::from_str(&body).ok()?;
            (z.len() == NEIGHBOUR_ZOMBIES && z.iter().all(|z| z["container"] == "app")).then_some(z)
        },
    );
    for z in &zombies {
        assert_eq!(z["namespace"], "shop", "{z}");
        assert_eq!(z["pod"], "leaky", "{z}");
        assert_eq!(z["cause"], "pid1_not_init", "{z}");
        assert!(z["remedy"].as_str().is_some_and(|r| !r.is_empty()), "{z}");
    }
    neighbour
}

/// /metrics: the neighbour's series by name; no series names a sandbox by its id; the
/// daemon's own container (hostPID) does not share a pod's PID namespace. Its programs are
/// still in the kernel.
fn check_metrics(source: &str, pod: &Pod, sandboxes: [&String; 2], programs: &BTreeSet<u32>) {
    let body = poll(
        &format!("{source}: the neighbour in /metrics"),
        Duration::from_secs(5),
        || {
            let b = metrics(pod.port);
            b.contains(&format!(
            "zombie_processes{{container=\"app\",namespace=\"shop\",pod=\"leaky\"}} {NEIGHBOUR_ZOMBIES}"
        ))
        .then_some(b)
        },
    );
    for sb in sandboxes {
        assert!(
            !body.contains(sb.as_str()),
            "{source}: a series names sandbox {sb}:\n{body}"
        );
    }
    let own = poll(
        &format!("{source}: the daemon's own container in zombie_container_init_info"),
        Duration::from_secs(20),
        || {
            metrics(pod.port)
                .lines()
                .find(|l| {
                    l.starts_with("zombie_container_init_info{")
                        && l.contains("container=\"zombie-daemon\"")
                })
                .map(str::to_string)
        },
    );
    assert!(
        own.contains("shared_pid_namespace=\"false\""),
        "{source}: {own}"
    );
    for held in programs {
        assert!(prog_exists(*held), "bpftool does not find program {held}");
    }
}

/// StopContainer with the grace period: exit 0 in time, nothing left in the kernel.
fn check_clean_stop(source: &str, c: &Containerd, pod: &Pod, id: &str, programs: &BTreeSet<u32>) {
    let t = Instant::now();
    let req = StopContainerRequest {
        container_id: id.to_string(),
        timeout: pod.grace,
    };
    c.call("StopContainer", |mut s| async move {
        s.stop_container(req).await
    });
    let stopped_in = t.elapsed();
    let req = ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    };
    let status = c
        .call("ContainerStatus", |mut s| async move {
            s.container_status(req).await
        })
        .status
        .unwrap();
    assert_eq!(status.exit_code, 0, "{source}: {status:?}");
    assert!(
        stopped_in < Duration::from_secs(pod.grace as u64),
        "{source}: SIGKILL after the grace period ({stopped_in:?})"
    );
    // The kernel frees a program once its last reference (the link, the descriptor) is
    // gone, which on exit is deferred to a work queue: allow it a moment.
    poll(
        &format!("{source}: programs {programs:?} gone from the kernel"),
        Duration::from_secs(5),
        || programs.iter().all(|p| !prog_exists(*p)).then_some(()),
    );
    eprintln!(
        "daemonset[{source}]: stopped (exit 0) in {stopped_in:?}, {} programs gone",
        programs.len()
    );
}

#[test]
fn the_kustomize_daemonset_runs_as_shipped() {
    run_as_shipped("kubectl kustomize deploy/kubernetes", kustomize_daemonset());
}

#[test]
fn the_helm_charts_daemonset_runs_as_shipped() {
    run_as_shipped("helm defaults", helm_daemonset());
}
