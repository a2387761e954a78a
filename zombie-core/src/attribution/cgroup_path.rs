//! Cgroup path → Kubernetes pod and container identity.
//!
//! Every zombie we see comes with the cgroup path of its task. This module
//! turns that path into "which pod, which container, which runtime, which QoS
//! class", or says it is a host process, or admits it does not know. It is a
//! pure function of the string: no /proc, no runtime socket, no allocation
//! beyond the strings it hands back.
//!
//! Why hand-written: no maintained crate maps kubelet's cgroup naming to pod
//! identity (`procfs` and `cgroups-rs` stop at the raw path), and a regex
//! engine would add a dependency to a per-zombie path for a handful of fixed
//! shapes while still leaving the systemd `_`→`-` unescaping to us.
//!
//! Layouts understood (kubelet `pkg/kubelet/cm`, CRI-O and containerd naming):
//!
//! * systemd driver: `…/kubepods[-<qos>]-pod<uid_with_underscores>.slice/<prefix>-<id>.scope`,
//!   where the slice prefix may carry a cgroup root (`kubelet-kubepods-…` in kind).
//! * cgroupfs driver: `…/kubepods[/<qos>]/pod<uid>/<id>` (CRI-O: `crio-<id>`).
//! * runc given a systemd `slice:prefix:id` triple by a runtime not using the
//!   systemd driver: `…/kubepods-<qos>-pod<uid>.slice:cri-containerd:<id>`.
//! * any of the above below a prefix (kind, minikube, docker-in-docker, k3s
//!   rootless, `/sys/fs/cgroup/<controller>` mount paths) or relative to a
//!   cgroup namespace (`/../../kubepods…`).
//!
//! Choices worth knowing:
//!
//! * A pod is recognised only at the top of the hierarchy: the path (after any `..` that
//!   leaves our cgroup namespace) starts with the kubepods root, its QoS level or the pod
//!   itself. A process with a delegated subtree (a systemd user session has `Delegate=yes`;
//!   rootless engines and CI runners too) can create any name below its own cgroup, but not
//!   at the top, which only the node's root makes. Nested layouts (kind, k3s rootless,
//!   minikube, docker-in-docker) put kubepods below a prefix: the operator names it
//!   ([`set_kubepods_prefixes`], `--kubepods-prefix`), and nothing is guessed.
//! * The outermost pod wins: a kind cluster running inside a pod belongs, as
//!   far as this node's kubelet is concerned, to that outer pod.
//! * Static pods have a 32-hex-digit UID (an md5 of the manifest, kubelet
//!   `config/common.go`), not an 8-4-4-4-12 one; both are accepted as is.
//! * `crio-conmon-<id>` is CRI-O's monitor for container `<id>`: it reports
//!   that id with `is_conmon` set, so callers can tell it from the container.
//! * A pause (sandbox) container looks like any other container; telling them
//!   apart needs the runtime, not the path.
//! * Paths are meaningful only from the host cgroup namespace: a process that
//!   reads its own `/proc/self/cgroup` inside a private namespace sees `/`.

use std::borrow::Cow;

/// The container runtime named by a cgroup leaf such as `cri-containerd-<id>.scope`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    /// An unrecognised `<prefix>-<64 hex>` prefix, kept verbatim (`libpod`, …).
    Other(String),
}

impl Runtime {
    pub fn as_str(&self) -> &str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Other(prefix) => prefix,
        }
    }

    fn from_prefix(prefix: &str) -> Runtime {
        match prefix {
            "cri-containerd" => Runtime::Containerd,
            "crio" => Runtime::CriO,
            "docker" => Runtime::Docker,
            other => Runtime::Other(other.to_owned()),
        }
    }
}

/// Kubernetes QoS class, as encoded in the pod's parent cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(&self) -> &'static str {
        match self {
            Qos::Guaranteed => "guaranteed",
            Qos::Burstable => "burstable",
            Qos::BestEffort => "besteffort",
        }
    }
}

/// Who a cgroup belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Inside a pod's cgroup.
    Pod,
    /// A well-formed path outside every pod (`/system.slice/…`, `/user.slice/…`, `/`).
    Host,
    /// Kubernetes-looking but malformed, outside our cgroup namespace, or not a path.
    Unknown,
}

impl Owner {
    pub fn as_str(&self) -> &'static str {
        match self {
            Owner::Pod => "pod",
            Owner::Host => "host",
            Owner::Unknown => "unknown",
        }
    }
}

/// What a cgroup path says about its owner.
///
/// `pod_uid` and `qos` are set only for [`Owner::Pod`]. A host process may
/// still carry `container_id`/`runtime` when it runs in a container no pod
/// owns (a plain docker container, a kind node, CRI-O's conmon moved to
/// `system.slice`). `raw` is the input, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupInfo {
    pub owner: Owner,
    /// Lowercase, dashed (`8-4-4-4-12`), or 32 hex digits for static pods.
    pub pod_uid: Option<String>,
    /// 64 lowercase hex digits.
    pub container_id: Option<String>,
    pub runtime: Option<Runtime>,
    pub qos: Option<Qos>,
    /// The cgroup is CRI-O's (or podman's) conmon for `container_id`, not the container.
    pub is_conmon: bool,
    pub raw: String,
}

/// The prefixes below which a kubepods hierarchy is accepted besides the top, set once at
/// start from `--kubepods-prefix`.
static KUBEPODS_PREFIXES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Why a `--kubepods-prefix` value is refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "--kubepods-prefix {0:?} is not a cgroup path prefix: give an absolute path such as \
     /kubelet.slice or /user.slice/user-1000.slice/user@1000.service/k3s-rootless.service \
     (`*` stands for one whole segment), without `..`"
)]
pub struct BadPrefix(pub String);

/// Checks one `--kubepods-prefix` value and returns it without a trailing slash.
pub fn check_prefix(prefix: &str) -> Result<String, BadPrefix> {
    let trimmed = prefix.trim_end_matches('/');
    let ok = trimmed.starts_with('/')
        && trimmed[1..]
            .split('/')
            .all(|s| !s.is_empty() && s != ".." && s != "." && (s == "*" || !s.contains('*')));
    if ok {
        Ok(trimmed.to_string())
    } else {
        Err(BadPrefix(prefix.to_string()))
    }
}

/// Sets the extra kubepods prefixes for every later [`parse`]; the first call wins.
pub fn set_kubepods_prefixes(prefixes: Vec<String>) {
    let _ = KUBEPODS_PREFIXES.set(prefixes);
}

/// The extra kubepods prefixes in force.
pub fn kubepods_prefixes() -> &'static [String] {
    KUBEPODS_PREFIXES.get().map_or(&[], Vec::as_slice)
}

/// Parses one cgroup path (the part after the second `:` of a
/// `/proc/<pid>/cgroup` line, or a path below a cgroup mount). Never fails:
/// anything it cannot place is [`Owner::Unknown`] with `raw` kept. Pods are
/// accepted at the top and below the configured prefixes ([`set_kubepods_prefixes`]).
pub fn parse(path: &str) -> CgroupInfo {
    parse_under(path, kubepods_prefixes())
}

/// [`parse`] with the given extra kubepods prefixes (see [`check_prefix`]).
pub fn parse_under(path: &str, prefixes: &[String]) -> CgroupInfo {
    scan(path, prefixes).into_info(path.to_owned())
}

/// [`parse`] for bytes from the kernel. The path ends at the first NUL, as in
/// a fixed-size buffer filled by an eBPF probe; invalid UTF-8 is replaced with
/// U+FFFD in `raw` (no name we match on contains non-ASCII).
pub fn parse_bytes(path: &[u8]) -> CgroupInfo {
    let path = match path.iter().position(|&b| b == 0) {
        Some(end) => &path[..end],
        None => path,
    };
    match String::from_utf8_lossy(path) {
        Cow::Borrowed(path) => parse(path),
        Cow::Owned(path) => {
            let mut info = scan(&path, kubepods_prefixes()).into_info(String::new());
            info.raw = path;
            info
        }
    }
}

/// The result of a scan, borrowing from the path; strings are copied once,
/// in [`Scan::into_info`].
struct Scan<'a> {
    owner: Owner,
    /// As written in the path: dashes or underscores, not yet normalised.
    pod_uid: Option<&'a str>,
    qos: Option<Qos>,
    container: Option<Container<'a>>,
}

struct Container<'a> {
    id: &'a str,
    /// Runtime prefix with any `-conmon` removed; `None` for a bare id.
    runtime: Option<&'a str>,
    is_conmon: bool,
}

impl<'a> Scan<'a> {
    const UNKNOWN: Scan<'static> = Scan {
        owner: Owner::Unknown,
        pod_uid: None,
        qos: None,
        container: None,
    };

    fn into_info(self, raw: String) -> CgroupInfo {
        let (container_id, runtime, is_conmon) = match self.container {
            Some(c) => (
                Some(c.id.to_owned()),
                c.runtime.map(Runtime::from_prefix),
                c.is_conmon,
            ),
            None => (None, None, false),
        };
        CgroupInfo {
            owner: self.owner,
            pod_uid: self.pod_uid.map(|uid| uid.replace('_', "-")),
            container_id,
            runtime,
            qos: self.qos,
            is_conmon,
            raw,
        }
    }
}

fn scan<'a>(path: &'a str, prefixes: &[String]) -> Scan<'a> {
    // A line read from a file may keep its newline; it is not part of the path.
    let path = path.trim_end_matches(['\n', '\r']);
    if path.is_empty() || path.contains('\0') {
        return Scan::UNKNOWN;
    }

    let segments: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    // `..` at the start: the path is relative to our cgroup namespace, whose root is
    // somewhere in the host's hierarchy; what follows is where it leads from there.
    let ups = segments.iter().take_while(|s| **s == "..").count();
    let mut starts = vec![ups];
    for prefix in prefixes {
        let want: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        let have = segments.get(ups..ups + want.len());
        if have.is_some_and(|have| have.iter().zip(&want).all(|(h, w)| *w == "*" || h == w)) {
            starts.push(ups + want.len());
        }
    }
    starts.sort_unstable();
    starts.dedup();
    for start in starts {
        if let Some(found) = pod_at(&segments, start) {
            return found;
        }
    }

    let mut parent: Option<&str> = None;
    let mut looks_kubernetes = false;
    let mut host_container: Option<Container<'_>> = None;
    for segment in &segments {
        looks_kubernetes = looks_kubernetes || looks_like_kubernetes(segment);
        if host_container.is_none() {
            host_container = container_segment(segment, parent);
        }
        parent = Some(segment);
    }

    // Relative paths and `..` point outside what we can see; a kubepods or
    // pod-shaped name we could not accept (one a tenant may have made in its own
    // subtree) is a layout we do not know.
    if looks_kubernetes || ups > 0 || !path.starts_with('/') {
        return Scan::UNKNOWN;
    }
    Scan {
        owner: Owner::Host,
        pod_uid: None,
        qos: None,
        container: host_container,
    }
}

/// A pod whose segment is at `start`, or below at most two kubepods-root or QoS segments
/// that begin at `start`: the only places kubelet puts one.
fn pod_at<'a>(segments: &[&'a str], start: usize) -> Option<Scan<'a>> {
    let mut parent = start.checked_sub(1).map(|i| segments[i]);
    for i in start..segments.len().min(start + 3) {
        let segment = segments[i];
        if let Some(pod) = pod_segment(segment, parent) {
            let container = match pod.inline_container {
                Some(container) => container,
                None => segments
                    .get(i + 1)
                    .and_then(|next| container_segment(next, None)),
            };
            return Some(Scan {
                owner: Owner::Pod,
                pod_uid: Some(pod.uid),
                qos: pod.qos,
                container,
            });
        }
        if !is_kubepods_level(segment) {
            return None;
        }
        parent = Some(segment);
    }
    None
}

/// The kubepods root or a QoS level, in either driver's naming (`kubepods`,
/// `kubepods.slice`, `kubelet-kubepods-burstable.slice`, `besteffort`).
fn is_kubepods_level(segment: &str) -> bool {
    match segment.strip_suffix(".slice") {
        Some(name) => {
            name == "kubepods"
                || name.ends_with("-kubepods")
                || name.ends_with("kubepods-burstable")
                || name.ends_with("kubepods-besteffort")
        }
        None => matches!(segment, "kubepods" | "burstable" | "besteffort"),
    }
}

struct PodSegment<'a> {
    uid: &'a str,
    qos: Option<Qos>,
    /// `Some` when the segment is a `slice:prefix:id` triple: the container
    /// it names (`None` inside if that part is malformed).
    inline_container: Option<Option<Container<'a>>>,
}

fn pod_segment<'a>(segment: &'a str, parent: Option<&str>) -> Option<PodSegment<'a>> {
    let (head, triple_tail) = match segment.split_once(':') {
        Some((head, tail)) => (head, Some(tail)),
        None => (segment, None),
    };
    let (uid, qos) = systemd_pod_slice(head).or_else(|| cgroupfs_pod_dir(head, parent))?;
    Some(PodSegment {
        uid,
        qos,
        inline_container: triple_tail.map(triple_container),
    })
}

/// `<root->kubepods[-burstable|-besteffort]-pod<uid>.slice`.
fn systemd_pod_slice(name: &str) -> Option<(&str, Option<Qos>)> {
    let name = name.strip_suffix(".slice")?;
    [36, 32].into_iter().find_map(|uid_len| {
        let uid_start = name.len().checked_sub(uid_len)?;
        let prefix_end = uid_start.checked_sub("-pod".len())?;
        if name.get(prefix_end..uid_start)? != "-pod" {
            return None;
        }
        let uid = name.get(uid_start..)?;
        let qos = slice_prefix_qos(name.get(..prefix_end)?)?;
        is_pod_uid(uid).then_some((uid, Some(qos)))
    })
}

fn slice_prefix_qos(prefix: &str) -> Option<Qos> {
    let (root, qos) = if let Some(root) = prefix.strip_suffix("-burstable") {
        (root, Qos::Burstable)
    } else if let Some(root) = prefix.strip_suffix("-besteffort") {
        (root, Qos::BestEffort)
    } else {
        (prefix, Qos::Guaranteed)
    };
    (root == "kubepods" || root.ends_with("-kubepods")).then_some(qos)
}

/// `pod<uid>` below `kubepods`, `burstable` or `besteffort`, or at the root of
/// a cgroup namespace (then the QoS class is not visible).
fn cgroupfs_pod_dir<'a>(name: &'a str, parent: Option<&str>) -> Option<(&'a str, Option<Qos>)> {
    let uid = name.strip_prefix("pod")?;
    if !is_pod_uid(uid) {
        return None;
    }
    let qos = match parent {
        Some("kubepods") => Some(Qos::Guaranteed),
        Some("burstable") => Some(Qos::Burstable),
        Some("besteffort") => Some(Qos::BestEffort),
        None | Some("..") => None,
        Some(_) => return None,
    };
    Some((uid, qos))
}

/// The `prefix:id` after a pod slice in a `slice:prefix:id` triple.
fn triple_container(tail: &str) -> Option<Container<'_>> {
    let (prefix, id) = tail.split_once(':')?;
    (is_container_id(id) && is_runtime_prefix(prefix)).then(|| runtime_container(prefix, id))
}

/// `<64 hex>`, `<prefix>-<64 hex>`, either optionally with `.scope`. A bare
/// id below `docker` is docker's cgroupfs layout.
fn container_segment<'a>(segment: &'a str, parent: Option<&str>) -> Option<Container<'a>> {
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    if is_container_id(name) {
        return Some(Container {
            id: name,
            runtime: (parent == Some("docker")).then_some("docker"),
            is_conmon: false,
        });
    }
    let dash = name.len().checked_sub(65)?;
    let id = name.get(dash..)?.strip_prefix('-')?;
    let prefix = name.get(..dash)?;
    (is_container_id(id) && is_runtime_prefix(prefix)).then(|| runtime_container(prefix, id))
}

fn runtime_container<'a>(prefix: &'a str, id: &'a str) -> Container<'a> {
    let (runtime, is_conmon) = match prefix {
        "crio-conmon" => ("crio", true),
        "libpod-conmon" => ("libpod", true),
        other => (other, false),
    };
    Container {
        id,
        runtime: Some(runtime),
        is_conmon,
    }
}

fn is_runtime_prefix(prefix: &str) -> bool {
    let bytes = prefix.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

/// 8-4-4-4-12 lowercase hex with one separator kind throughout (`-` in
/// cgroupfs, `_` in systemd names), or 32 lowercase hex (static pods).
fn is_pod_uid(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.len() {
        32 => bytes.iter().all(|&b| is_lower_hex(b)),
        36 => {
            let sep = bytes[8];
            (sep == b'-' || sep == b'_')
                && bytes.iter().enumerate().all(|(i, &b)| match i {
                    8 | 13 | 18 | 23 => b == sep,
                    _ => is_lower_hex(b),
                })
        }
        _ => false,
    }
}

/// A name kubelet could have made that we did not accept: anything with
/// `kubepods`, or ending in `pod` plus something UID-sized.
fn looks_like_kubernetes(segment: &str) -> bool {
    if segment.contains("kubepods") {
        return true;
    }
    let head = segment.split_once(':').map_or(segment, |(head, _)| head);
    let name = head.strip_suffix(".slice").unwrap_or(head).as_bytes();
    // Fixed offsets instead of a substring search: this runs on every segment.
    (32..=36).any(|uid_len| {
        name.len() >= uid_len + 3
            && name[name.len() - uid_len - 3..].starts_with(b"pod")
            && name[name.len() - uid_len..]
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        path: &'static str,
        owner: Owner,
        pod: Option<&'static str>,
        ctr: Option<&'static str>,
        rt: Option<&'static str>,
        qos: Option<Qos>,
        conmon: bool,
    }

    const fn pod(
        path: &'static str,
        pod: &'static str,
        ctr: Option<&'static str>,
        rt: Option<&'static str>,
        qos: Option<Qos>,
    ) -> Row {
        Row {
            path,
            owner: Owner::Pod,
            pod: Some(pod),
            ctr,
            rt,
            qos,
            conmon: false,
        }
    }

    const fn host(path: &'static str, ctr: Option<&'static str>, rt: Option<&'static str>) -> Row {
        Row {
            path,
            owner: Owner::Host,
            pod: None,
            ctr,
            rt,
            qos: None,
            conmon: false,
        }
    }

    const fn unknown(path: &'static str) -> Row {
        Row {
            path,
            owner: Owner::Unknown,
            pod: None,
            ctr: None,
            rt: None,
            qos: None,
            conmon: false,
        }
    }

    const G: Option<Qos> = Some(Qos::Guaranteed);
    const BU: Option<Qos> = Some(Qos::Burstable);
    const BE: Option<Qos> = Some(Qos::BestEffort);
    const CTRD: Option<&str> = Some("containerd");
    const CRIO: Option<&str> = Some("cri-o");
    const DOCKER: Option<&str> = Some("docker");

    // Paths are copied from the named public source; ids and UIDs are theirs.
    // "derived" rows change one thing in a sourced path to probe an edge.
    #[rustfmt::skip]
    const ROWS: &[Row] = &[
        // ---- systemd driver ----
        // cilium/tetragon pkg/sensors/exec/procevents/proc_reader_test.go (v1 pids line)
        pod("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podeb052b63_ea96_4728_ab4a_64ab3babccd7.slice/cri-containerd-5694f82f44168cc048e014ae14d1b0c8ef673bec49f329dc169911ea638f63c2.scope",
            "eb052b63-ea96-4728-ab4a-64ab3babccd7", Some("5694f82f44168cc048e014ae14d1b0c8ef673bec49f329dc169911ea638f63c2"), CTRD, BE),
        // cilium/tetragon proc_reader_test.go (dockershim era)
        pod("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podeb052b63_ea96_4728_ab4a_64ab3babccd7.slice/docker-5694f82f44168cc048e014ae14d1b0c8ef673bec49f329dc169911ea638f63c2.scope",
            "eb052b63-ea96-4728-ab4a-64ab3babccd7", Some("5694f82f44168cc048e014ae14d1b0c8ef673bec49f329dc169911ea638f63c2"), DOCKER, BE),
        // sustainable-computing-io/kepler internal/resource/container_test.go (cgroup v2)
        pod("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2c9f8a79_5391_454b_88cb_86190881cb96.slice/crio-a09343ca97901516c25036e2b954421254f8c68b384b536064e8999f0c4ed18d.scope",
            "2c9f8a79-5391-454b-88cb-86190881cb96", Some("a09343ca97901516c25036e2b954421254f8c68b384b536064e8999f0c4ed18d"), CRIO, BU),
        // opencontainers/runc#4620 (v1 freezer line, calico-node)
        pod("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope",
            "a5c1f8d5-1919-434d-add7-4afaafdaef89", Some("5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c"), CRIO, BU),
        // opencontainers/runc#4620 (name=systemd line pointing at conmon)
        Row { conmon: true, ..pod("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-conmon-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope",
            "a5c1f8d5-1919-434d-add7-4afaafdaef89", Some("5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c"), CRIO, BU) },
        // opencontainers/runc#4620 (systemctl status of a conmon scope)
        Row { conmon: true, ..pod("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod207aaad1_659f_4db8_88e0_46e0cdcc3004.slice/crio-conmon-32da98c8522068be05a7510a3eddb09cad6ed2f03286180d0e931d0d0b6224a6.scope",
            "207aaad1-659f-4db8-88e0-46e0cdcc3004", Some("32da98c8522068be05a7510a3eddb09cad6ed2f03286180d0e931d0d0b6224a6"), CRIO, BU) },
        // openshift/microshift#697 (CRI-O pause container)
        pod("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc8bad552_5c99_4d4f_b71c_c426c0cde014.slice/crio-d61328552873b5145655fa7918c7fbbce53dbe076d6c2b5fc95d660709af29c2.scope",
            "c8bad552-5c99-4d4f-b71c-c426c0cde014", Some("d61328552873b5145655fa7918c7fbbce53dbe076d6c2b5fc95d660709af29c2"), CRIO, BE),
        // openshift/microshift#697 (conmon_cgroup = system.slice: charged to the host)
        Row { conmon: true, ..host("/system.slice/crio-conmon-e0c85fe7644a858988d9687c2e0736a7d31922740d0f3e001c6b2e0aa7e5f528.scope",
            Some("e0c85fe7644a858988d9687c2e0736a7d31922740d0f3e001c6b2e0aa7e5f528"), CRIO) },
        // cilium/cilium pkg/cgroups/manager/provider_test.go (guaranteed, no QoS level), c1Id from manager_test.go
        pod("/kubepods.slice/kubepods-pod1858680e_b044_4fd5_9dd4_f137e30e2180.slice/crio-d8f227cc24940cfdce8d8e601f3b92242ac9661b0e83f0ea57fdea1cb6bc93ec.scope",
            "1858680e-b044-4fd5-9dd4-f137e30e2180", Some("d8f227cc24940cfdce8d8e601f3b92242ac9661b0e83f0ea57fdea1cb6bc93ec"), CRIO, G),
        // cilium/cilium provider_test.go (systemd provider)
        pod("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1858680e_b044_4fd5_9dd4_f137e30e2180.slice/cri-containerd-d8f227cc24940cfdce8d8e601f3b92242ac9661b0e83f0ea57fdea1cb6bc93ec.scope",
            "1858680e-b044-4fd5-9dd4-f137e30e2180", Some("d8f227cc24940cfdce8d8e601f3b92242ac9661b0e83f0ea57fdea1cb6bc93ec"), CTRD, BU),
        // kontena/pharos-cluster#440 (systemd-cgls, kube-proxy under docker)
        pod("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9692aa0e_748e_11e8_8dfa_76d458035df6.slice/docker-abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152.scope",
            "9692aa0e-748e-11e8-8dfa-76d458035df6", Some("abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152"), DOCKER, BE),
        // kontena/pharos-cluster#440 (the /pause sandbox of the same pod)
        pod("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9692aa0e_748e_11e8_8dfa_76d458035df6.slice/docker-f58c1c55e72c336d11c6af795260b57f7597d62e4d16951086f754d2e9ce5114.scope",
            "9692aa0e-748e-11e8-8dfa-76d458035df6", Some("f58c1c55e72c336d11c6af795260b57f7597d62e4d16951086f754d2e9ce5114"), DOCKER, BE),
        // lxc/lxc#3890 (/proc/self/cgroup, v1 pids line)
        pod("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d4424e6_bb13_42f4_a47a_45a4828bf54d.slice/docker-d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98.scope",
            "7d4424e6-bb13-42f4-a47a-45a4828bf54d", Some("d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98"), DOCKER, BU),
        // netdata/netdata#4868 (v1 net_cls tree)
        pod("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pode1465238_4518_4c21_832f_fd9f87033dad.slice/cri-containerd-66be9b2efdf4d85288c319b8c1a2f50d2439b5617e36f45d9d0d0be1381113be.scope",
            "e1465238-4518-4c21-832f-fd9f87033dad", Some("66be9b2efdf4d85288c319b8c1a2f50d2439b5617e36f45d9d0d0be1381113be"), CTRD, BE),
        // sustainable-computing-io/kepler pkg/kubelet test (ubuntuDocker, v1 blkio)
        pod("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod481c0ae9_7d40_46dd_b6ca_ba27cb64f87e.slice/docker-28a5e57257f81fcd6d592647dde27e06b53944d58af4fa546ad77a12ce8b41c2.scope",
            "481c0ae9-7d40-46dd-b6ca-ba27cb64f87e", Some("28a5e57257f81fcd6d592647dde27e06b53944d58af4fa546ad77a12ce8b41c2"), DOCKER, BE),
        // derived from lxc/lxc#3890: the pod-level cgroup itself, no container below it
        pod("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d4424e6_bb13_42f4_a47a_45a4828bf54d.slice",
            "7d4424e6-bb13-42f4-a47a-45a4828bf54d", None, None, BU),
        // derived: crun's `container` sub-cgroup below the scope (containers/crun#305), ids from kepler row above
        pod("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2c9f8a79_5391_454b_88cb_86190881cb96.slice/crio-a09343ca97901516c25036e2b954421254f8c68b384b536064e8999f0c4ed18d.scope/container",
            "2c9f8a79-5391-454b-88cb-86190881cb96", Some("a09343ca97901516c25036e2b954421254f8c68b384b536064e8999f0c4ed18d"), CRIO, BU),

        // ---- systemd driver inside kind / minikube (nested nodes) ----
        // sustainable-computing-io/kepler pkg/kubelet test (ubuntuContainerd: inside a kind node)
        pod("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod36f20d9d_cbc1_4ebd_b111_536eaa6a332e.slice/cri-containerd-db90aabe3ba00bab92a9bd3f0b4a9face4601651c91d28c02a953a8c81ce2cc4.scope",
            "36f20d9d-cbc1-4ebd-b111-536eaa6a332e", Some("db90aabe3ba00bab92a9bd3f0b4a9face4601651c91d28c02a953a8c81ce2cc4"), CTRD, BE),
        // sustainable-computing-io/kepler internal/resource/container_test.go (kind seen from the host)
        pod("/system.slice/docker-fd9d0ea06257a9780827cbc7fd92e3812a54fca26d63e191b73610d5d48b9cbd.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-podeab5a334_93fe_48a8_b139_9e8079c1f163.slice/cri-containerd-99f3a16ea25b7724cb56a4f0c0df1113ad9474fbf5545bead97fd5c7f61c13f4.scope",
            "eab5a334-93fe-48a8-b139-9e8079c1f163", Some("99f3a16ea25b7724cb56a4f0c0df1113ad9474fbf5545bead97fd5c7f61c13f4"), CTRD, BE),
        // sustainable-computing-io/kepler pkg/kubelet test (rhelDocker: kind from the host, static pod, 32-hex UID)
        pod("/system.slice/docker-c27755f0fa91e81ababc85ef05cb227227a4228da2e5cb2f4999299c89d4ac69.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-podd8992f589d8dd12c4342376ccb459375.slice/cri-containerd-ecbcea5cd29afb25ba519715e827cda9e66cd0a914207f49ce0a292a6aa84d66.scope",
            "d8992f589d8dd12c4342376ccb459375", Some("ecbcea5cd29afb25ba519715e827cda9e66cd0a914207f49ce0a292a6aa84d66"), CTRD, BU),
        // containerd/nri#227 (kind, a path below the cgroup2 mount)
        pod("/sys/fs/cgroup/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope",
            "1e597579-417e-482f-bf65-5fe170c3aebd", Some("a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e"), CTRD, BE),
        // containerd/nri#227 (NRI relativePath: the bare `slice:prefix:id` triple, no leading '/')
        pod("kubelet-kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice:cri-containerd:d7dfb4a21fe1703a8537e60d5af248af729315d187b24a538102d14874c8117d",
            "1e597579-417e-482f-bf65-5fe170c3aebd", Some("d7dfb4a21fe1703a8537e60d5af248af729315d187b24a538102d14874c8117d"), CTRD, BE),
        // cilium/cilium provider_test.go (nested systemd provider, kind)
        pod("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod1858680e_b044_4fd5_9dd4_f137e30e2180.slice/cri-containerd-d8f227cc24940cfdce8d8e601f3b92242ac9661b0e83f0ea57fdea1cb6bc93ec.scope",
            "1858680e-b044-4fd5-9dd4-f137e30e2180", Some("d8f227cc24940cfdce8d8e601f3b92242ac9661b0e83f0ea57fdea1cb6bc93ec"), CTRD, BU),
        // cilium/tetragon proc_reader_test.go (minikube, docker runtime, systemd driver)
        pod("/system.slice/docker-1b3319ed9c1d4cca681f9c102da9b015555785b6240c4e4619f11b535cabdc07.scope/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podeb653d22_2525_47ca_9fc4_3762497ae1d2.slice/docker-84e9ffffe97fea4c5a0f01d401611cbafbf7e559fc6190ed74abfc2b25e889d4.scope",
            "eb653d22-2525-47ca-9fc4-3762497ae1d2", Some("84e9ffffe97fea4c5a0f01d401611cbafbf7e559fc6190ed74abfc2b25e889d4"), DOCKER, BE),
        // kubernetes/minikube#11280 (crio in a docker-driver node, v1)
        pod("/docker/d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/crio-358607a37e7ada357032e7f5729c9ae6a3efdb7962acbcbe47ff6a3c5506cb1c.scope",
            "2ca4a155-3599-498d-bb9d-4446693fa3ea", Some("358607a37e7ada357032e7f5729c9ae6a3efdb7962acbcbe47ff6a3c5506cb1c"), CRIO, BE),

        // ---- containerd given a systemd triple without SystemdCgroup (cgroup v1) ----
        // DataDog/datadog-agent pkg/util/cgroups/pid_mapper_test.go ("paths contain ':'")
        pod("/kuberuntime.slice/containerd.service/kubepods-burstable-pod5be537b8_3a4e_4607_af71_31598b3a4fd3.slice:cri-containerd:1c8f503430973935b7d8a80c4f58c0946b052a021e6855b358e5ec38601af120",
            "5be537b8-3a4e-4607-af71-31598b3a4fd3", Some("1c8f503430973935b7d8a80c4f58c0946b052a021e6855b358e5ec38601af120"), CTRD, BU),
        // open-telemetry/opentelemetry-java#4507 (perf_event line)
        pod("/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459",
            "0125ec2f-b64a-4868-8f5b-94b56cbab864", Some("ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459"), CTRD, BE),
        // cilium/tetragon proc_reader_test.go ("Cgroupv1 Hierarchy with CgroupPath set")
        pod("/podruntime.slice/containerd.service/kubepods-burstable-pod29349498_197c_4919_b13f_9a928e7d001b.slice:cri-containerd:0ca2b3cd20e5f55a2bbe8d4aa3f811cf7963b40f0542ad147054b0fcb60fc400",
            "29349498-197c-4919-b13f-9a928e7d001b", Some("0ca2b3cd20e5f55a2bbe8d4aa3f811cf7963b40f0542ad147054b0fcb60fc400"), CTRD, BU),
        // sustainable-computing-io/kepler container_test.go (below the v1 systemd mount)
        pod("/sys/fs/cgroup/systemd/system.slice/containerd.service/kubepods-burstable-poda3b200c9_db51_40b4_9d2d_53f8fdf80d7f.slice:cri-containerd:286b15051ec43375190802e1f40562536980a8fd97e75bb89c7f2eec6f995f17",
            "a3b200c9-db51-40b4-9d2d-53f8fdf80d7f", Some("286b15051ec43375190802e1f40562536980a8fd97e75bb89c7f2eec6f995f17"), CTRD, BU),

        // ---- cgroupfs driver ----
        // cilium/tetragon proc_reader_test.go (v1 pids line)
        pod("/kubepods/besteffort/pod26ab26cd-6409-443f-a13c-fd6c231207c8/ae7a1981e064c217035e0b23979c8defd51c850d1af26fbcf148187e5b0da61c",
            "26ab26cd-6409-443f-a13c-fd6c231207c8", Some("ae7a1981e064c217035e0b23979c8defd51c850d1af26fbcf148187e5b0da61c"), None, BE),
        // cilium/tetragon proc_reader_test.go
        pod("/kubepods/burstable/pod1399d9c7-c86f-4371-8568-07b3d32258a4/91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5",
            "1399d9c7-c86f-4371-8568-07b3d32258a4", Some("91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5"), None, BU),
        // cilium/cilium provider_test.go (default provider, guaranteed)
        pod("/kubepods/pod1858680e-b044-4fd5-9dd4-f137e30e2180/d8f227cc24940cfdce8d8e601f3b92242ac9661b0e83f0ea57fdea1cb6bc93ec",
            "1858680e-b044-4fd5-9dd4-f137e30e2180", Some("d8f227cc24940cfdce8d8e601f3b92242ac9661b0e83f0ea57fdea1cb6bc93ec"), None, G),
        // DataDog/datadog-agent pid_mapper_test.go (cgroupV1ProcCgroup, docker-shim era)
        pod("/kubepods/burstable/pod15513b48-e7a5-48fc-b9e3-92f713f36504/a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f",
            "15513b48-e7a5-48fc-b9e3-92f713f36504", Some("a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f"), None, BU),
        // google/cadvisor container/containerd/factory_test.go (static pod, 32-hex UID)
        pod("/kubepods/besteffort/podd76e26fba3bf2bfd215eb29011d55250/40af7cdcbe507acad47a5a62025743ad3ddc6ab93b77b21363aa1c1d641047c9",
            "d76e26fba3bf2bfd215eb29011d55250", Some("40af7cdcbe507acad47a5a62025743ad3ddc6ab93b77b21363aa1c1d641047c9"), None, BE),
        // google/cadvisor container/crio/factory_test.go (CRI-O on cgroupfs)
        pod("/kubepods/pod068e8fa0-9213-11e7-a01f-507b9d4141fa/crio-81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f",
            "068e8fa0-9213-11e7-a01f-507b9d4141fa", Some("81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f"), CRIO, G),
        // google/cadvisor crio/factory_test.go (conmon on cgroupfs)
        Row { conmon: true, ..pod("/kubepods/pod068e8fa0-9213-11e7-a01f-507b9d4141fa/crio-conmon-81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f",
            "068e8fa0-9213-11e7-a01f-507b9d4141fa", Some("81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f"), CRIO, G) },
        // google/cadvisor crio/factory_test.go (a .mount below the pod is not a container)
        pod("/kubepods/pod068e8fa0-9213-11e7-a01f-507b9d4141fa/crio-81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f.mount",
            "068e8fa0-9213-11e7-a01f-507b9d4141fa", None, None, G),
        // google/cadvisor crio/factory_test.go (truncated id)
        pod("/kubepods/pod068e8fa0-9213-11e7-a01f-507b9d4141fa/crio-990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75",
            "068e8fa0-9213-11e7-a01f-507b9d4141fa", None, None, G),
        // google/cadvisor crio/factory_test.go (unknown prefix: kept verbatim, not conmon)
        pod("/kubepods/pod068e8fa0-9213-11e7-a01f-507b9d4141fa/no-crio-conmon-81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f",
            "068e8fa0-9213-11e7-a01f-507b9d4141fa", Some("81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f"), Some("no-crio-conmon"), G),
        // rancher/k3k#792 (k3s, cgroup v2 cgroupfs)
        pod("/kubepods/burstable/pod404bd273-57bc-4508-a386-e2b76d3c9cfe/3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b",
            "404bd273-57bc-4508-a386-e2b76d3c9cfe", Some("3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b"), None, BU),
        // k3s-io/k3s#3005 (rootless k3s: cgroupfs below a systemd user service)
        pod("/user.slice/user-1001.slice/user@1001.service/k3s-rootless.service/kubepods/podd0eb6921-c81a-4214-b36c-d3b9bb212fac/671b393f08437d7e89e234d9d395aecef155104c7c241f5701844360ffebacac",
            "d0eb6921-c81a-4214-b36c-d3b9bb212fac", Some("671b393f08437d7e89e234d9d395aecef155104c7c241f5701844360ffebacac"), None, G),
        // rootless-containers/usernetes#200
        pod("/user.slice/user-1001.slice/user@1001.service/u7s-rootlesskit.service/kubepods/burstable/podb2d6a0c9-95d3-4372-80e0-bce249a26f95/7bb48caa579ee164fee4e0c072aaf430c2ec7b5dc13d512a5f19ce037de010ab",
            "b2d6a0c9-95d3-4372-80e0-bce249a26f95", Some("7bb48caa579ee164fee4e0c072aaf430c2ec7b5dc13d512a5f19ce037de010ab"), None, BU),
        // sustainable-computing-io/kepler container_test.go (kind cgroupfs, relative: no leading '/')
        pod("kubelet/kubepods/besteffort/podbdd4097d-6795-404e-9bd8-6a1383386198/c79788e0da15a6597263eb2b9c51d05dd1a9a1d08c53c1161dc8c45d2dac6b38",
            "bdd4097d-6795-404e-9bd8-6a1383386198", Some("c79788e0da15a6597263eb2b9c51d05dd1a9a1d08c53c1161dc8c45d2dac6b38"), None, BE),
        // cilium/tetragon proc_reader_test.go (kind, cgroupfs under /kubelet, static pod)
        pod("/system.slice/docker-c1146e7ccca9ab4436abd69923c07d097b37b762ed21cc3f24584c2f84e77c57.scope/kubelet/kubepods/burstable/pod09a70ae9ccc491e651e5c773579b3490/b0e6aa50e847c3d3b1880e307ec7996040275c8063832cffc9274defce2cb655",
            "09a70ae9ccc491e651e5c773579b3490", Some("b0e6aa50e847c3d3b1880e307ec7996040275c8063832cffc9274defce2cb655"), None, BU),
        // cilium/tetragon proc_reader_test.go (kind, cgroupfs, guaranteed)
        pod("/system.slice/docker-c1146e7ccca9ab4436abd69923c07d097b37b762ed21cc3f24584c2f84e77c57.scope/kubelet/kubepods/pod55db13a1-c151-4cdd-a48b-e002a2b1fb58/21e677e6fe95215ea48bcb5609c10e67ba8e76a7a3ea749af704e72260eb93fe",
            "55db13a1-c151-4cdd-a48b-e002a2b1fb58", Some("21e677e6fe95215ea48bcb5609c10e67ba8e76a7a3ea749af704e72260eb93fe"), None, G),
        // cilium/tetragon proc_reader_test.go (minikube, containerd + cgroupfs)
        pod("/system.slice/docker-94acc75af8cf9c56e10676b0760ed424bec95dadc91f68f6564014686930200e.scope/kubepods/besteffort/pod13cb8437-00ed-40e4-99d8-e17193a58086/a5a6a3af5d51ad95b915ca948710b90a94abc279e84963b9d22a39f342ce67d9",
            "13cb8437-00ed-40e4-99d8-e17193a58086", Some("a5a6a3af5d51ad95b915ca948710b90a94abc279e84963b9d22a39f342ce67d9"), None, BE),
        // DataDog/datadog-agent pid_mapper_test.go (dindProcCgroup: docker-in-docker, v1)
        pod("/docker/88ea268ece65a02d68b169fd74bcbcb427eb7f28900db0e3b906fb2eeb7341df/kubelet/kubepods/burstable/poda5ea884f-9e60-4912-bd62-fef9a31db47a/a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015e",
            "a5ea884f-9e60-4912-bd62-fef9a31db47a", Some("a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015e"), None, BU),
        // kubernetes/kubernetes#94104 (pod-level cgroups, static pod UID, below a mount path)
        pod("/sys/fs/cgroup/sys/fs/cgroup/kubepods/burstable/pode3e7e53f7a71dbba7e64b7dae53fcdca",
            "e3e7e53f7a71dbba7e64b7dae53fcdca", None, None, BU),
        // kubernetes/kubernetes#94104
        pod("/sys/fs/cgroup/sys/fs/cgroup/kubepods/pode48d9140-f441-4b0f-b642-f0179a167e74",
            "e48d9140-f441-4b0f-b642-f0179a167e74", None, None, G),

        // ---- cgroup namespaces ----
        // DataDog/datadog-agent pid_mapper_test.go (cgroupV2ProcCgroupNoHost)
        pod("../../../kubepods-burstable.slice/kubepods-burstable-pod562c01d6_6aba_49fe_ae52_61c40c04eca4.slice/docker-a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f.scope",
            "562c01d6-6aba-49fe-ae52-61c40c04eca4", Some("a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f"), DOCKER, BU),
        // derived: the same as the kernel prints it (cgroup_path_ns starts with '/')
        pod("/../../../kubepods-burstable.slice/kubepods-burstable-pod562c01d6_6aba_49fe_ae52_61c40c04eca4.slice/docker-a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f.scope",
            "562c01d6-6aba-49fe-ae52-61c40c04eca4", Some("a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f"), DOCKER, BU),
        // derived from rancher/k3k#792: namespace rooted at the QoS cgroup, class not visible
        pod("/../pod404bd273-57bc-4508-a386-e2b76d3c9cfe/3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b",
            "404bd273-57bc-4508-a386-e2b76d3c9cfe", Some("3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b"), None, None),
        // derived: kind inside a pod (DataDog cgroupfs row + kepler kind row): the outer pod wins
        pod("/kubepods/burstable/pod15513b48-e7a5-48fc-b9e3-92f713f36504/a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod36f20d9d_cbc1_4ebd_b111_536eaa6a332e.slice/cri-containerd-db90aabe3ba00bab92a9bd3f0b4a9face4601651c91d28c02a953a8c81ce2cc4.scope",
            "15513b48-e7a5-48fc-b9e3-92f713f36504", Some("a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f"), None, BU),

        // ---- host processes ----
        // d2iq-archive/kubernetes-mesos#565 (/proc/1/cgroup on the host)
        host("/", None, None),
        // DataDog/datadog-agent pid_mapper_test.go (0:: line of a hybrid host)
        host("/system.slice/containerd.service", None, None),
        // kubernetes/kubernetes#19346 (name=systemd line of the kubelet)
        host("/user.slice/user-1000.slice/session-1.scope", None, None),
        // sustainable-computing-io/kepler internal/resource/testdata/procfs/1337/cgroup (a UUID that is no pod)
        host("/user.slice/user-1000.slice/user@1000.service/tmux-spawn-e780eea5-fcf4-4010-88be-18150805c48e.scope", None, None),
        // rancher/k3k#792 (k3s detaches itself to /k3s)
        host("/k3s", None, None),
        // kubernetes/kubernetes#21344 (kubelet and docker in /system on GCE)
        host("/system", None, None),
        // k3s-io/k3s#2587 (runtime cgroups /systemd/system.slice)
        host("/systemd/system.slice", None, None),
        // giantswarm/k8scloudconfig#848 (dockerd in a reserved slice)
        host("/kubereserved.slice/docker.service", None, None),
        // cilium/tetragon proc_reader_test.go (plain docker, systemd driver)
        host("/system.slice/docker-ee40841f79d52f66f4958c8a484bd2dfb453228874dcca1a3f2ec6e8420ec87c.scope",
            Some("ee40841f79d52f66f4958c8a484bd2dfb453228874dcca1a3f2ec6e8420ec87c"), DOCKER),
        // cilium/tetragon proc_reader_test.go (plain docker, cgroupfs driver)
        host("/docker/5aaf9eb7648eeb1459d86eaa0ace8bcfa93089642e5c3113a14250dae3238aaf",
            Some("5aaf9eb7648eeb1459d86eaa0ace8bcfa93089642e5c3113a14250dae3238aaf"), DOCKER),
        // cilium/tetragon proc_reader_test.go (the kind node's own kubelet)
        host("/system.slice/docker-c1146e7ccca9ab4436abd69923c07d097b37b762ed21cc3f24584c2f84e77c57.scope/system.slice/kubelet.service",
            Some("c1146e7ccca9ab4436abd69923c07d097b37b762ed21cc3f24584c2f84e77c57"), DOCKER),
        // cilium/tetragon proc_reader_test.go (the minikube node's init)
        host("/system.slice/docker-1b3319ed9c1d4cca681f9c102da9b015555785b6240c4e4619f11b535cabdc07.scope/init.scope",
            Some("1b3319ed9c1d4cca681f9c102da9b015555785b6240c4e4619f11b535cabdc07"), DOCKER),
        // DataDog/datadog-agent pid_mapper_test.go (dind 0:: line: containerd of the inner node)
        host("/docker/88ea268ece65a02d68b169fd74bcbcb427eb7f28900db0e3b906fb2eeb7341df/system.slice/containerd.service",
            Some("88ea268ece65a02d68b169fd74bcbcb427eb7f28900db0e3b906fb2eeb7341df"), DOCKER),
        // sustainable-computing-io/kepler testdata/procfs/3538356/cgroup (rootless podman)
        host("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-f992ec4ed807f76e5e54c9c67d78f0a4105bf945420271c2558ba905e38d2108.scope/container",
            Some("f992ec4ed807f76e5e54c9c67d78f0a4105bf945420271c2558ba905e38d2108"), Some("libpod")),
        // sustainable-computing-io/kepler container_test.go (podman quadlet)
        host("/system.slice/kepler.service/libpod-payload-8e363eb2287da4ccc9f52ffc5de11252ac5fe707e3ddb917a3c0bdf9bb64165b",
            Some("8e363eb2287da4ccc9f52ffc5de11252ac5fe707e3ddb917a3c0bdf9bb64165b"), Some("libpod-payload")),
        // cilium/tetragon proc_reader_test.go (podman cgroupfs conmon: no id)
        host("/libpod_parent/conmon", None, None),
        // cilium/tetragon proc_reader_test.go (GitHub Actions job container: bare id, runtime unknown)
        host("/actions_job/ec5fd62ba68d0b75a3cbdb7f7f78b526440b7969e22b2b362fb6f429ded42fdc",
            Some("ec5fd62ba68d0b75a3cbdb7f7f78b526440b7969e22b2b362fb6f429ded42fdc"), None),
        // DataDog/datadog-agent pid_mapper_test.go (ECS Fargate: not a 64-hex id)
        host("/ecs/8474ac4cec7a4f488834b00591271ec3/8474ac4cec7a4f488834b00591271ec3-3054012820", None, None),
        // google/cadvisor container/containerd/factory_test.go (a rootfs .mount is no container)
        host("/system.slice/run-containerd-io.containerd.runtime.v1.linux-k8s.io-14ae50f1d3ada102aec3ab00168fdafb2dc0986d79ca9e8d5b75581fa89e9fea-rootfs.mount", None, None),
        // kubelet "Rootless" feature-gate patch (A. Suda, 2020-06-29; the index did not name the repo):
        // no cgroupsPerQOS, so the pod is invisible in the path
        host("/user.slice/user-1001.slice/user@1001.service/user.slice/cri-containerd-6938564e754ad86269a536ed19172af0eff5f7ff0a41eefc5b433a76f1f38f16.scope",
            Some("6938564e754ad86269a536ed19172af0eff5f7ff0a41eefc5b433a76f1f38f16"), CTRD),

        // ---- unknown layouts and malformed input ----
        // kubernetes/kubernetes#36807 (kubelet 1.5 experimental QoS layout, before kubepods)
        unknown("/system.slice/docker.service/BestEffort.slice/BestEffort-pod0d33f94b_ab1a_11e6_9e1a_68f7281d8004.slice/0c34bcd7d02f321d0df7aa6ea703285b02abebc9096c5128c14091fc43ea1f3b"),
        // derived: QoS level without a pod
        unknown("/kubepods/burstable"),
        // derived: systemd QoS slice without a pod
        unknown("/kubepods.slice/kubepods-besteffort.slice"),
        // derived from tetragon: UID truncated
        unknown("/kubepods/burstable/pod1399d9c7-c86f-4371-8568/91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5"),
        // derived from tetragon: uppercase UID (kubelet never writes one)
        unknown("/kubepods/burstable/pod1399D9C7-C86F-4371-8568-07B3D32258A4/91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5"),
        // derived from tetragon: mixed separators
        unknown("/kubepods/burstable/pod1399d9c7_c86f-4371-8568-07b3d32258a4/91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5"),
        // derived from tetragon: a pod slice whose prefix is not kubelet's
        unknown("/foo.slice/foo-podeb052b63_ea96_4728_ab4a_64ab3babccd7.slice/cri-containerd-5694f82f44168cc048e014ae14d1b0c8ef673bec49f329dc169911ea638f63c2.scope"),
        // derived from tetragon: junk after .slice
        unknown("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podeb052b63_ea96_4728_ab4a_64ab3babccd7.slicex/cri-containerd-5694f82f44168cc048e014ae14d1b0c8ef673bec49f329dc169911ea638f63c2.scope"),
        // derived from tetragon: pod below an unrelated cgroupfs parent
        unknown("/mesos/pod1399d9c7-c86f-4371-8568-07b3d32258a4/91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5"),
        // derived from tetragon: uppercase container id keeps the pod, drops the id
        pod("/kubepods/burstable/pod1399d9c7-c86f-4371-8568-07b3d32258a4/91F2457FB4C2B1356EEFC7BACE36532F5EB3D354804BB2CFF787EA321320B5A5",
            "1399d9c7-c86f-4371-8568-07b3d32258a4", None, None, BU),
        // derived: outside our cgroup namespace, nothing recognisable
        unknown("/../../system.slice/containerd.service"),
        // derived: empty input
        unknown(""),
        // derived: not a path at all
        unknown("not a cgroup path"),
        // derived from tetragon: embedded NUL (never in a kernel path)
        unknown("/kubepods/burstable/pod1399d9c7-c86f-4371-8568-07b3d32258a4/91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5\0junk"),
        // derived from tetragon: a line read with its newline still attached
        pod("/kubepods/burstable/pod1399d9c7-c86f-4371-8568-07b3d32258a4/91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5\n",
            "1399d9c7-c86f-4371-8568-07b3d32258a4", Some("91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5"), None, BU),
    ];

    /// The prefixes an operator of each nested layout in [`ROWS`] would configure.
    fn nested_prefixes() -> Vec<String> {
        [
            "/kubelet.slice",
            "/kubelet",
            "/system.slice/*",
            "/system.slice/*/kubelet.slice",
            "/system.slice/*/kubelet",
            "/docker/*",
            "/docker/*/kubelet",
            "/kuberuntime.slice/containerd.service",
            "/podruntime.slice/containerd.service",
            "/sys/fs/cgroup/systemd/system.slice/containerd.service",
            "/sys/fs/cgroup/kubelet.slice",
            "/sys/fs/cgroup/sys/fs/cgroup",
            "/user.slice/*/*/k3s-rootless.service",
            "/user.slice/*/*/u7s-rootlesskit.service",
        ]
        .iter()
        .map(|p| check_prefix(p).unwrap())
        .collect()
    }

    fn check(row: &Row) {
        let got = parse_under(row.path, &nested_prefixes());
        let ctx = row.path;
        assert_eq!(got.raw, row.path, "raw: {ctx}");
        assert_eq!(got.owner, row.owner, "owner: {ctx}");
        assert_eq!(got.pod_uid.as_deref(), row.pod, "pod uid: {ctx}");
        assert_eq!(got.container_id.as_deref(), row.ctr, "container id: {ctx}");
        assert_eq!(
            got.runtime.as_ref().map(Runtime::as_str),
            row.rt,
            "runtime: {ctx}"
        );
        assert_eq!(got.qos, row.qos, "qos: {ctx}");
        assert_eq!(got.is_conmon, row.conmon, "conmon: {ctx}");
        assert_invariants(&got);
        // The byte entry point agrees whenever the input has no NUL.
        if !row.path.contains('\0') {
            assert_eq!(
                parse_bytes(row.path.as_bytes()),
                parse(row.path),
                "bytes: {ctx}"
            );
        }
    }

    const UID_: &str = "eb052b63_ea96_4728_ab4a_64ab3babccd7";
    const CID: &str = "5694f82f44168cc048e014ae14d1b0c8ef673bec49f329dc169911ea638f63c2";

    /// A delegated subtree (a systemd user session, a rootless engine, a CI runner) can
    /// hold any name: a pod-shaped path below it is no pod, unless the operator named that
    /// prefix.
    #[test]
    fn a_pod_path_forged_in_a_delegated_subtree_is_no_pod() {
        let forged = [
            format!(
                "/user.slice/user-1000.slice/user@1000.service/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope"
            ),
            format!(
                "/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope"
            ),
            format!(
                "/user.slice/user-1000.slice/user@1000.service/app.slice/kubepods/besteffort/pod{}/{CID}",
                UID_.replace('_', "-")
            ),
            format!(
                "/system.slice/runner.service/kubepods/pod{}/{CID}",
                UID_.replace('_', "-")
            ),
            format!(
                "/../../user.slice/x.scope/kubepods/pod{}/{CID}",
                UID_.replace('_', "-")
            ),
        ];
        for path in &forged {
            let got = parse_under(path, &[]);
            assert_ne!(got.owner, Owner::Pod, "{path}");
            assert_eq!(got.container_id, None, "{path}");
        }
        // The same layout below a prefix the operator configured (rootless k3s) is a pod.
        let rootless = check_prefix("/user.slice/user-1000.slice/user@1000.service").unwrap();
        let got = parse_under(&forged[1], &[rootless]);
        assert_eq!(got.owner, Owner::Pod);
        assert_eq!(got.container_id.as_deref(), Some(CID));
        // And the real layout at the top is one with or without prefixes.
        let real = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope"
        );
        assert_eq!(parse_under(&real, &[]).owner, Owner::Pod);
    }

    /// A pod's process that makes cgroups below its own (a delegated or writable cgroupfs)
    /// stays in its own pod: the outer pod, at the top, wins.
    #[test]
    fn a_pod_cannot_pass_for_another_pod_from_inside_its_own_cgroup() {
        let own = "/kubepods/besteffort/pod1399d9c7-c86f-4371-8568-07b3d32258a4/91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5";
        let inner = format!(
            "{own}/kubepods/burstable/pod{}/{CID}",
            UID_.replace('_', "-")
        );
        let got = parse_under(&inner, &[]);
        assert_eq!(
            got.pod_uid.as_deref(),
            Some("1399d9c7-c86f-4371-8568-07b3d32258a4")
        );
        assert_eq!(
            got.container_id.as_deref(),
            Some("91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5")
        );
    }

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(check_prefix("/kubelet.slice/").unwrap(), "/kubelet.slice");
        assert_eq!(
            check_prefix("/system.slice/*/kubelet").unwrap(),
            "/system.slice/*/kubelet"
        );
        for bad in ["kubelet", "/a/../b", "/a//b", "/a/b*", ""] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table() {
        assert!(ROWS.len() >= 40);
        for row in ROWS {
            check(row);
        }
    }

    #[test]
    fn runtime_and_qos_names() {
        assert_eq!(Runtime::Containerd.as_str(), "containerd");
        assert_eq!(Runtime::CriO.as_str(), "cri-o");
        assert_eq!(Runtime::Docker.as_str(), "docker");
        assert_eq!(Runtime::Other("libpod".into()).as_str(), "libpod");
        assert_eq!(Qos::Guaranteed.as_str(), "guaranteed");
        assert_eq!(Qos::Burstable.as_str(), "burstable");
        assert_eq!(Qos::BestEffort.as_str(), "besteffort");
        assert_eq!(Owner::Unknown.as_str(), "unknown");
    }

    #[test]
    fn bytes_entry_point() {
        // A NUL-padded buffer as an eBPF probe fills it.
        let mut buf = [0u8; 256];
        let path = b"/kubepods/besteffort/pod26ab26cd-6409-443f-a13c-fd6c231207c8/ae7a1981e064c217035e0b23979c8defd51c850d1af26fbcf148187e5b0da61c";
        buf[..path.len()].copy_from_slice(path);
        let got = parse_bytes(&buf);
        assert_eq!(got.owner, Owner::Pod);
        assert_eq!(got.raw.as_bytes(), path);

        // Invalid UTF-8 in a segment below the container does not hide the pod.
        let mut bad = path.to_vec();
        bad.extend_from_slice(b"/\xff\xfe.scope");
        let got = parse_bytes(&bad);
        assert_eq!(got.owner, Owner::Pod);
        assert_eq!(
            got.pod_uid.as_deref(),
            Some("26ab26cd-6409-443f-a13c-fd6c231207c8")
        );
        assert!(got.raw.contains('\u{fffd}'));

        assert_eq!(parse_bytes(b"\xff").owner, Owner::Unknown);
        assert_eq!(parse_bytes(b"").owner, Owner::Unknown);
    }

    fn assert_invariants(info: &CgroupInfo) {
        let ctx = &info.raw;
        if info.owner == Owner::Pod {
            let uid = info.pod_uid.as_deref().expect("pod without uid");
            let dashed = uid.len() == 36
                && uid.bytes().enumerate().all(|(i, b)| match i {
                    8 | 13 | 18 | 23 => b == b'-',
                    _ => is_lower_hex(b),
                });
            let static_pod = uid.len() == 32 && uid.bytes().all(is_lower_hex);
            assert!(dashed || static_pod, "uid {uid:?}: {ctx:?}");
        } else {
            assert!(info.pod_uid.is_none() && info.qos.is_none(), "{ctx:?}");
        }
        if info.owner == Owner::Unknown {
            assert!(
                info.container_id.is_none() && info.runtime.is_none(),
                "{ctx:?}"
            );
        }
        if let Some(id) = &info.container_id {
            assert!(is_container_id(id), "{ctx:?}");
        } else {
            assert!(info.runtime.is_none() && !info.is_conmon, "{ctx:?}");
        }
        if info.is_conmon {
            assert!(info.runtime.is_some(), "{ctx:?}");
        }
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const TOKENS: &[&str] = &[
        "/",
        "//",
        "..",
        ".",
        ":",
        "\0",
        "\n",
        "-",
        "_",
        "pod",
        "-pod",
        ".slice",
        ".scope",
        "kubepods",
        "kubepods-",
        "burstable",
        "besteffort",
        "crio-",
        "crio-conmon-",
        "cri-containerd-",
        "docker-",
        "é",
        "€",
        "𝄞",
        "\u{fffd}",
        "0123456789abcdef",
    ];

    #[test]
    fn mutated_inputs_never_panic_and_keep_raw() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let seed = ROWS[rng.below(ROWS.len())].path;
            let mut s = seed.to_owned();
            for _ in 0..1 + rng.below(4) {
                // Every cut lands on a char boundary, so `s` stays valid UTF-8.
                let mut at = rng.below(s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.below(5) {
                    0 => s.insert_str(at, TOKENS[rng.below(TOKENS.len())]),
                    1 => s.truncate(at),
                    2 => {
                        let mut end = (at + 1 + rng.below(8)).min(s.len());
                        while !s.is_char_boundary(end) {
                            end += 1;
                        }
                        s.replace_range(at..end, "");
                    }
                    3 => {
                        let tail = s[at..].to_owned();
                        s.push_str(&tail);
                    }
                    _ => {
                        let c = char::from(b' ' + (rng.below(95)) as u8);
                        s.insert(at, c);
                    }
                }
            }
            let got = parse(&s);
            assert_eq!(got.raw, s, "round {round}");
            assert_invariants(&got);
            if !s.contains('\0') {
                assert_eq!(parse_bytes(s.as_bytes()), got, "round {round}");
            }

            // Arbitrary bytes, including invalid UTF-8.
            let bytes: Vec<u8> = (0..rng.below(96)).map(|_| rng.next() as u8).collect();
            assert_invariants(&parse_bytes(&bytes));
        }
    }

    #[test]
    fn huge_inputs() {
        let deep = "/kubepods".repeat(100_000);
        assert_eq!(parse(&deep).owner, Owner::Unknown);
        let long_segment = format!("/{}", "a".repeat(1 << 20));
        assert_eq!(parse(&long_segment).owner, Owner::Host);
        let pods = "pod".repeat(300_000);
        assert_eq!(parse(&pods).owner, Owner::Unknown);
    }
}
