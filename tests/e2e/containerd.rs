//! A real containerd whose CRI plugin (the kubelet's own `runtime.v1` API) runs pods and
//! containers for the tests, torn down completely on drop, also when a test panics.
//!
//! Needs root and the Debian packages `containerd runc umoci busybox-static gcc libc6-dev`,
//! plus `protobuf-compiler` to build the `k8s-cri` crate. The harness installs nothing:
//! `cargo xtask setup --test` (as root) installs whichever are missing.
//! Choices, each measured on the machines the suite runs on:
//! - containerd runs with its own root, state, socket, runc root and config in a temp dir,
//!   cgroupfs driver (`SystemdCgroup = false`), `restrict_oom_score_adj` (no
//!   CAP_SYS_RESOURCE here), no AppArmor, empty CNI dirs: pods use the host network and an
//!   empty hostname, so no CNI is needed.
//! - Images are local: busybox-static and a static `pause`, packed with umoci once and cached
//!   under `${ZOMBIE_TEST_CACHE:-/var/cache/zombie-daemon-tests}/images`, imported with
//!   `ctr images import` under fully qualified names (CRI would try to pull otherwise).
//! - Containers get their own PID namespace, as the kubelet does by default, so a
//!   container's PID 1 is its command: a plain `sh`/`sleep` there never reaps orphans.
//! - Shims outlive containerd and put their sockets in /run/containerd/s/ whatever the state
//!   dir; runc leaves the parent cgroup dirs behind in every hierarchy. Drop cleans up both.

use std::{
    collections::{BTreeSet, HashMap},
    ffi::OsString,
    fs,
    io::ErrorKind,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest, runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::Channel;
use zombie_daemon::attribution::cri::CriClient;

pub const BUSYBOX_IMAGE: &str = "docker.io/local/busybox:1";
pub const PAUSE_IMAGE: &str = "docker.io/local/pause:1";
/// A sandbox image whose process does not reap (see [`NOREAP_PAUSE_C`]).
pub const NOREAP_PAUSE_IMAGE: &str = "docker.io/local/pause-noreap:1";

/// Where shims put their sockets, whatever containerd's state dir.
const SHIM_SOCKETS: &str = "/run/containerd/s";
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The sandbox's PID 1: reaps its children (like the real pause) and exits on TERM/INT.
const PAUSE_C: &str = r#"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"#;

/// A broken sandbox process: it stops on TERM/INT like pause but never reaps, so the
/// orphans of a pod's shared PID namespace stay zombies under it.
const NOREAP_PAUSE_C: &str = r#"
#include <signal.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    for (;;) pause();
}
"#;

/// A containerd of our own, stopped and cleaned up on drop.
pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    cri: Option<CriClient>,
    /// /run/containerd/s entries that were there before we started (not ours to remove).
    shim_sockets_before: BTreeSet<OsString>,
    /// Our pod cgroups (relative to each hierarchy's root): whatever runs there at the end
    /// is killed, and the whole subtrees removed.
    pod_cgroups: Vec<PathBuf>,
    /// Ancestors of the pod cgroups that did not exist before, parents first: removed
    /// only when empty (parallel tests share /kubepods).
    parent_cgroups: Vec<PathBuf>,
    /// Each pod's config by sandbox id: CreateContainer wants it again.
    pods: HashMap<String, PodSandboxConfig>,
    /// Where this containerd's binaries are (`None`: the system's, from PATH).
    bin_dir: Option<PathBuf>,
}

impl Containerd {
    /// Starts containerd with the test images imported and its CRI socket answering.
    pub fn start() -> Self {
        Self::start_with_sandbox(PAUSE_IMAGE)
    }

    /// [`Containerd::start`] with `sandbox_image` (a test image) as every pod's sandbox.
    pub fn start_with_sandbox(sandbox_image: &str) -> Self {
        Self::start_prepared(sandbox_image, &[], |_, _| {})
    }

    /// [`Containerd::start_with_sandbox`] with `env` added to containerd's environment (its
    /// shims and runtimes inherit it), and `prepare(dir, config)` run on the written config
    /// before containerd reads it (e.g. to install another runtime into it).
    pub fn start_prepared(
        sandbox_image: &str,
        env: &[(&str, &std::ffi::OsStr)],
        prepare: impl FnOnce(&Path, &Path),
    ) -> Self {
        Self::start_full(sandbox_image, None, env, prepare)
    }

    /// [`Containerd::start_prepared`] with containerd 2.x (its `containerd`, `ctr` and
    /// shim from [`containerd2_bin_dir`]), configured by a version 3 config.
    pub fn start_containerd2(
        env: &[(&str, &std::ffi::OsStr)],
        prepare: impl FnOnce(&Path, &Path),
    ) -> Self {
        let bin = containerd2_bin_dir();
        assert!(
            bin.join("containerd").is_file(),
            "containerd 2.x is missing from {}: run cargo xtask setup --test as root",
            bin.display()
        );
        Self::start_full(PAUSE_IMAGE, Some(bin), env, prepare)
    }

    fn start_full(
        sandbox_image: &str,
        bin_dir: Option<PathBuf>,
        env: &[(&str, &std::ffi::OsStr)],
        prepare: impl FnOnce(&Path, &Path),
    ) -> Self {
        let t = Instant::now();
        preflight();
        let images = images();
        let dir = fresh_dir();
        let socket = dir.join("containerd.sock");
        // Another containerd for every test that takes the system's (the cgroup v2 guest
        // runs them with 1.7 and 2.x too): its binaries' directory.
        let bin_dir = bin_dir.or_else(|| {
            std::env::var_os("ZOMBIE_TEST_CONTAINERD_BIN_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        });
        let config_text = if containerd_major(bin_dir.as_deref()) >= 2 {
            config_v3(&dir, &socket, sandbox_image)
        } else {
            config(&dir, &socket, sandbox_image)
        };
        fs::write(dir.join("config.toml"), config_text).unwrap();
        prepare(&dir, &dir.join("config.toml"));

        let shim_sockets_before = list_dir(Path::new(SHIM_SOCKETS));
        let child = spawn_containerd(&dir, bin_dir.as_deref(), env);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // From here on, Drop cleans up whatever fails.
        let mut c = Containerd {
            dir,
            socket,
            child: Some(child),
            rt,
            cri: None,
            shim_sockets_before,
            pod_cgroups: Vec::new(),
            parent_cgroups: Vec::new(),
            pods: HashMap::new(),
            bin_dir,
        };
        c.cri = Some(c.wait_for_cri());
        c.import_images(images, sandbox_image);
        eprintln!("containerd: up with images in {:?}", t.elapsed());
        c
    }

    /// A CRI client once containerd's socket answers; panics with its log if containerd
    /// exits or the socket does not answer in time.
    fn wait_for_cri(&mut self) -> CriClient {
        let deadline = Instant::now() + Duration::from_secs(15).max(crate::harness::ready_bound());
        let endpoint = self.socket.to_str().unwrap().to_string();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("containerd exited with {status}:\n{}", self.log_text());
            }
            match self.rt.block_on(CriClient::connect_with_timeout(
                &endpoint,
                Duration::from_millis(500),
            )) {
                Ok(cri) => break cri,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "containerd's CRI socket did not answer: {e}\n{}",
                        self.log_text()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Imports the test images (the no-reap pause only when it is the sandbox image).
    fn import_images(&self, images: &Images, sandbox_image: &str) {
        let mut wanted = vec![
            (BUSYBOX_IMAGE, &images.busybox),
            (PAUSE_IMAGE, &images.pause),
        ];
        if sandbox_image == NOREAP_PAUSE_IMAGE {
            wanted.push((NOREAP_PAUSE_IMAGE, &images.noreap_pause));
        }
        for (name, tar) in wanted {
            let base = name.rsplit_once(':').unwrap().0;
            self.ctr(&[
                "images",
                "import",
                "--base-name",
                base,
                tar.to_str().unwrap(),
            ]);
        }
    }

    /// The temp dir that holds its root, state, runc root (`runc/`) and config.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs `f` on this harness's tokio runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Runs a host-network pod whose containers land under `cgroup_parent`
    /// (e.g. "/kubepods/besteffort/pod<uid>"); returns the sandbox id.
    pub fn run_pod(
        &mut self,
        name: &str,
        namespace: &str,
        uid: &str,
        cgroup_parent: &str,
    ) -> String {
        self.run_pod_annotated(name, namespace, uid, cgroup_parent, HashMap::new())
    }

    /// [`Containerd::run_pod`] with one PID namespace for the whole pod
    /// (`NamespaceMode::Pod`, the kubelet's `shareProcessNamespace: true`): the sandbox
    /// process is its PID 1, and every container of the pod joins it.
    pub fn run_pod_sharing_pids(
        &mut self,
        name: &str,
        namespace: &str,
        uid: &str,
        cgroup_parent: &str,
    ) -> String {
        self.run_pod_with(
            name,
            namespace,
            uid,
            cgroup_parent,
            "",
            true,
            HashMap::new(),
        )
    }

    /// [`Containerd::run_pod`] with pod annotations.
    pub fn run_pod_annotated(
        &mut self,
        name: &str,
        namespace: &str,
        uid: &str,
        cgroup_parent: &str,
        annotations: HashMap<String, String>,
    ) -> String {
        self.run_pod_with(name, namespace, uid, cgroup_parent, "", false, annotations)
    }

    /// A pod run by the runtime handler `handler` (a pod's `runtimeClassName`; "" for the
    /// default), with a shared PID namespace if `share_pids`, and `annotations`.
    #[allow(clippy::too_many_arguments)]
    pub fn run_pod_with(
        &mut self,
        name: &str,
        namespace: &str,
        uid: &str,
        cgroup_parent: &str,
        handler: &str,
        share_pids: bool,
        annotations: HashMap<String, String>,
    ) -> String {
        self.track_cgroup(cgroup_parent);
        let mut config = self.sandbox_config(name, namespace, uid, cgroup_parent);
        config.annotations = annotations;
        if share_pids
            && let Some(ns) = config
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut())
                .and_then(|s| s.namespace_options.as_mut())
        {
            ns.pid = NamespaceMode::Pod as i32;
        }
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        let id = self
            .call("RunPodSandbox", |mut s| async move {
                s.run_pod_sandbox(req).await
            })
            .pod_sandbox_id;
        self.pods.insert(id.clone(), config);
        id
    }

    /// Runs a pod sandbox from a config the caller made whole (the DaemonSet test maps a
    /// rendered manifest into it); returns the sandbox id. Its cgroup parent is cleaned up
    /// like [`Containerd::run_pod`]'s.
    pub fn run_pod_config(&mut self, config: PodSandboxConfig) -> String {
        let parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        self.track_cgroup(&parent);
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let id = self
            .call("RunPodSandbox", |mut s| async move {
                s.run_pod_sandbox(req).await
            })
            .pod_sandbox_id;
        self.pods.insert(id.clone(), config);
        id
    }

    /// Creates and starts a container from a whole `config` in a sandbox of
    /// [`Containerd::run_pod_config`]; returns its id.
    pub fn run_container_config(&self, sandbox: &str, config: ContainerConfig) -> String {
        let sandbox_config = self
            .pods
            .get(sandbox)
            .cloned()
            .unwrap_or_else(|| panic!("sandbox {sandbox} was not started here"));
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let id = self
            .call("CreateContainer", |mut s| async move {
                s.create_container(req).await
            })
            .container_id;
        let req = StartContainerRequest {
            container_id: id.clone(),
        };
        self.call("StartContainer", |mut s| async move {
            s.start_container(req).await
        });
        id
    }

    /// Creates and starts a container in `sandbox`; returns its id.
    pub fn run_container(
        &self,
        sandbox: &str,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> String {
        self.run_container_with(sandbox, name, image, command, |_| {})
    }

    /// [`Containerd::run_container`] with `edit` applied to the container's config before
    /// it is created (a read-only root, a stop signal, ...).
    pub fn run_container_with(
        &self,
        sandbox: &str,
        name: &str,
        image: &str,
        command: &[&str],
        edit: impl FnOnce(&mut ContainerConfig),
    ) -> String {
        let sandbox_config = self
            .pods
            .get(sandbox)
            .cloned()
            .unwrap_or_else(|| panic!("sandbox {sandbox} was not started by run_pod"));
        let meta = sandbox_config.metadata.clone().unwrap_or_default();
        // The pod's namespace modes (a shared PID namespace is the pod's).
        let namespace_options = sandbox_config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_else(namespaces);
        let labels = HashMap::from([
            ("io.kubernetes.container.name".to_string(), name.to_string()),
            ("io.kubernetes.pod.name".to_string(), meta.name),
            ("io.kubernetes.pod.namespace".to_string(), meta.namespace),
            ("io.kubernetes.pod.uid".to_string(), meta.uid),
        ]);
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/0.log"),
            labels,
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespace_options),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut config = config;
        edit(&mut config);
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let id = self
            .call("CreateContainer", |mut s| async move {
                s.create_container(req).await
            })
            .container_id;
        let req = StartContainerRequest {
            container_id: id.clone(),
        };
        self.call("StartContainer", |mut s| async move {
            s.start_container(req).await
        });
        id
    }

    /// `ExecSync` of `cmd` in a container (what exec probes and `kubectl exec` do), with a
    /// timeout in seconds (0: none); the exit code, or the runtime's error (a timeout is one).
    pub fn exec_sync(&self, container_id: &str, cmd: &[&str], timeout: i64) -> Result<i32, String> {
        let req = k8s_cri::v1::ExecSyncRequest {
            container_id: container_id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        self.try_call(|mut s| async move { s.exec_sync(req).await })
            .map(|r| r.exit_code)
            .map_err(|e| e.to_string())
    }

    /// The host pid of a container's PID 1 (from `ContainerStatus` verbose info).
    pub fn container_pid(&self, container_id: &str) -> i32 {
        let req = ContainerStatusRequest {
            container_id: container_id.to_string(),
            verbose: true,
        };
        let resp = self.call("ContainerStatus", |mut s| async move {
            s.container_status(req).await
        });
        info_pid(&resp.info)
    }

    /// The host pid of a sandbox's pause process.
    pub fn sandbox_pid(&self, sandbox_id: &str) -> i32 {
        let req = k8s_cri::v1::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            verbose: true,
        };
        let resp = self.call("PodSandboxStatus", |mut s| async move {
            s.pod_sandbox_status(req).await
        });
        info_pid(&resp.info)
    }

    fn sandbox_config(
        &self,
        name: &str,
        namespace: &str,
        uid: &str,
        cgroup_parent: &str,
    ) -> PodSandboxConfig {
        let log_dir = self
            .dir
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_string(),
                uid: uid.to_string(),
                namespace: namespace.to_string(),
                attempt: 0,
            }),
            // runc refuses a hostname without a UTS namespace of the pod's own.
            hostname: String::new(),
            log_directory: log_dir.to_str().unwrap().to_string(),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".to_string(), name.to_string()),
                (
                    "io.kubernetes.pod.namespace".to_string(),
                    namespace.to_string(),
                ),
                ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
            ]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.to_string(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// One CRI call with a deadline; panics with containerd's log on failure.
    pub fn call<T, F>(&self, what: &str, f: impl FnOnce(RuntimeServiceClient<Channel>) -> F) -> T
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match self.try_call(f) {
            Ok(v) => v,
            Err(e) => panic!("{what} failed: {e}\ncontainerd log:\n{}", self.log_text()),
        }
    }

    /// One CRI call with a deadline; the runtime's error in words.
    pub fn try_call<T, F>(
        &self,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, String>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let service = self.cri.as_ref().ok_or("not connected")?.service();
        let call = f(service);
        // The timer needs the runtime's context: build it inside block_on.
        match self
            .rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await })
        {
            Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
            Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    }

    /// `ctr` against this containerd, in the CRI's namespace; panics on failure.
    pub fn ctr(&self, args: &[&str]) {
        let ctr = self
            .bin_dir
            .as_ref()
            .map_or_else(|| PathBuf::from("ctr"), |b| b.join("ctr"));
        let out = Command::new(ctr)
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ctr: {e}"));
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Remembers the pod cgroup and whichever of its ancestors we are about to create.
    fn track_cgroup(&mut self, cgroup_parent: &str) {
        let rel = Path::new(cgroup_parent.trim_start_matches('/'));
        let roots = cgroup_roots();
        for anc in rel
            .ancestors()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let new = roots.iter().any(|r| !r.join(anc).exists());
            if !anc.as_os_str().is_empty() && new && !self.parent_cgroups.iter().any(|c| c == anc) {
                self.parent_cgroups.push(anc.to_path_buf());
            }
        }
        self.pod_cgroups.push(rel.to_path_buf());
    }

    /// Everything Drop does, in the order that works: sandboxes first (the shims outlive
    /// containerd), then containerd, stray processes, mounts, cgroups, shim sockets, files.
    /// Each step runs even if an earlier one panicked: a panic in Drop while a test unwinds
    /// aborts the run and would leave containerd behind.
    fn teardown(&mut self) {
        let shims = shims_of(&self.socket);
        step("remove sandboxes", || self.remove_sandboxes());
        step("stop containerd", || self.stop_containerd());
        step("kill stray processes", || {
            // Shims started by our containerd name its socket on their command line;
            // whatever still runs in our pod cgroups is a container a shim failed to stop.
            let mut stray = shims_of(&self.socket);
            for rel in &self.pod_cgroups {
                stray.extend(cgroup_pids(rel));
            }
            for &pid in &stray {
                eprintln!("containerd teardown: killing stray process {pid}");
                signal(pid, libc::SIGKILL);
            }
            // Shims daemonize: if this process is a child subreaper (the daemon tests make
            // it one), they are our children now, and zombies until we reap them.
            for pid in shims.iter().chain(&stray) {
                reap_if_child(*pid);
            }
        });
        step("unmount", || unmount_under(&self.dir));
        step("remove cgroups", || self.remove_cgroups());
        step("remove shim sockets", || self.remove_shim_sockets());
        step("remove the temp dir", || {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                eprintln!(
                    "containerd teardown: cannot remove {}: {e}",
                    self.dir.display()
                );
            }
        });
    }

    fn remove_sandboxes(&mut self) {
        if self.cri.is_some() {
            let sandboxes = self
                .try_call(|mut s| async move {
                    s.list_pod_sandbox(ListPodSandboxRequest { filter: None })
                        .await
                })
                .map(|r| r.items)
                .unwrap_or_else(|e| {
                    eprintln!("containerd teardown: ListPodSandbox: {e}");
                    Vec::new()
                });
            for sb in sandboxes {
                let id = sb.id;
                let (a, b) = (id.clone(), id.clone());
                if let Err(e) = self.try_call(|mut s| async move {
                    s.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: a })
                        .await
                }) {
                    eprintln!("containerd teardown: StopPodSandbox {id}: {e}");
                }
                if let Err(e) = self.try_call(|mut s| async move {
                    s.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: b })
                        .await
                }) {
                    eprintln!("containerd teardown: RemovePodSandbox {id}: {e}");
                }
            }
        }
        self.cri = None;
    }

    fn stop_containerd(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Our pod cgroups (whole subtrees, deepest first), then the ancestors we created if
    /// they are empty, in every hierarchy. Killed processes take a moment to leave their
    /// cgroup: retry those.
    fn remove_cgroups(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for root in cgroup_roots() {
            for rel in &self.pod_cgroups {
                let mut dirs = Vec::new();
                walk_dirs(&root.join(rel), &mut dirs);
                dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
                for d in dirs {
                    loop {
                        match fs::remove_dir(&d) {
                            Ok(()) => break,
                            Err(e) if e.kind() == ErrorKind::NotFound => break,
                            Err(e) if Instant::now() > deadline => {
                                eprintln!("containerd teardown: cannot rmdir {}: {e}", d.display());
                                break;
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                }
            }
            for rel in self.parent_cgroups.iter().rev() {
                // Busy when another test's pods are still there: theirs to remove.
                let _ = fs::remove_dir(root.join(rel));
            }
        }
    }

    /// Shim sockets that appeared while we ran and nobody listens on any more (another
    /// containerd's live shims still accept connections).
    fn remove_shim_sockets(&self) {
        let dir = Path::new(SHIM_SOCKETS);
        for name in list_dir(dir) {
            if self.shim_sockets_before.contains(&name) {
                continue;
            }
            let p = dir.join(&name);
            let is_socket = fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_socket());
            if is_socket && std::os::unix::net::UnixStream::connect(&p).is_err() {
                let _ = fs::remove_file(&p);
            }
        }
        // Only if empty: a system containerd (or another test's) keeps its files there.
        let _ = fs::remove_dir(SHIM_SOCKETS);
        let _ = fs::remove_dir("/run/containerd");
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let t = Instant::now();
        self.teardown();
        eprintln!("containerd: torn down in {:?}", t.elapsed());
    }
}

/// Runs one teardown step, reporting instead of propagating a panic.
fn step(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        eprintln!("containerd teardown: {what} panicked; going on with the rest");
    }
}

/// Pods share the host network; each container has its own PID namespace (the kubelet's
/// default), so its command is its PID 1.
fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn info_pid(info: &HashMap<String, String>) -> i32 {
    let raw = info.get("info").expect("verbose status carries no info");
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    v["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in status info: {raw}")) as i32
}

/// A new, empty temp dir for one containerd, with the subdirectories its config names.
fn fresh_dir() -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "zombie-containerd-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    for sub in [
        "root", "state", "runc", "opt", "cni-bin", "cni-conf", "pods",
    ] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    dir
}

/// Starts containerd on `dir`'s config, logging to `dir`/containerd.log: the system's, or
/// the one in `bin_dir` (with its own shim first in PATH), with `env` added.
fn spawn_containerd(dir: &Path, bin_dir: Option<&Path>, env: &[(&str, &std::ffi::OsStr)]) -> Child {
    let log = fs::File::create(dir.join("containerd.log")).unwrap();
    let mut containerd = match bin_dir {
        Some(bin) => {
            // Its own shim first in PATH: containerd finds `containerd-shim-runc-v2` there.
            let path = std::env::var_os("PATH").unwrap_or_default();
            let path = std::env::join_paths(
                std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path)),
            )
            .unwrap();
            let mut c = Command::new(bin.join("containerd"));
            c.env("PATH", path);
            c
        }
        None => Command::new("containerd"),
    };
    containerd
        .envs(env.iter().copied())
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start containerd: {e}"))
}

fn config(dir: &Path, socket: &Path, sandbox_image: &str) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
# Snapshotters and tracing we do not use only slow the start and fill the log.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni-bin"
    conf_dir = "{d}/cni-conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
"#,
        socket = socket.display()
    )
}

/// The major version of the containerd in `bin_dir` (the system's when None), from
/// `containerd --version` (`containerd github.com/containerd/containerd[/v2] 2.1.9~ds1 ...`).
pub fn containerd_major(bin_dir: Option<&Path>) -> u32 {
    let program = bin_dir.map_or_else(|| PathBuf::from("containerd"), |d| d.join("containerd"));
    let out = Command::new(&program)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)
        .and_then(|v| v.trim_start_matches('v').split('.').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{} --version says {text:?}", program.display()))
}

/// Where `cargo xtask setup --test` unpacks containerd 2.x (Debian sid's package: no suite
/// the machines run ships one), under the test cache.
pub fn containerd2_bin_dir() -> PathBuf {
    std::env::var_os("ZOMBIE_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/zombie-daemon-tests"))
        .join("containerd2/usr/bin")
}

/// [`config`] for containerd 2.x: config version 3, whose CRI is split into an images and a
/// runtime plugin.
fn config_v3(dir: &Path, socket: &Path, sandbox_image: &str) -> String {
    let d = dir.display();
    format!(
        r#"version = 3
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{sandbox_image}"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{d}/cni-bin"]
    conf_dir = "{d}/cni-conf"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
"#,
        socket = socket.display()
    )
}

/// Root and the tools, or one sentence saying how to get them.
fn preflight() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the containerd tests run a real container runtime: run them as root"
    );
    for tool in [
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "runc",
        "umoci",
        "gcc",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is missing: run cargo xtask setup --test as root"
        );
    }
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: run cargo xtask setup --test as root (busybox-static)"
    );
}

struct Images {
    busybox: PathBuf,
    pause: PathBuf,
    noreap_pause: PathBuf,
}

/// The two OCI image tarballs, built once and cached; rebuilt when busybox or the pause
/// source change.
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let cache = std::env::var_os("ZOMBIE_TEST_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/zombie-daemon-tests"))
            .join("images");
        fs::create_dir_all(&cache).unwrap();
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            PAUSE_C.hash(&mut h);
            NOREAP_PAUSE_C.hash(&mut h);
            let bb = fs::metadata("/bin/busybox").unwrap();
            (bb.len(), bb.modified().ok()).hash(&mut h);
            format!("{:016x}", h.finish())
        };
        let images = Images {
            busybox: cache.join(format!("busybox-{key}.oci.tar")),
            pause: cache.join(format!("pause-{key}.oci.tar")),
            noreap_pause: cache.join(format!("pause-noreap-{key}.oci.tar")),
        };
        if !images.busybox.exists() || !images.pause.exists() || !images.noreap_pause.exists() {
            let t = Instant::now();
            build_images(&cache, &images);
            eprintln!("containerd: built test images in {:?}", t.elapsed());
        }
        images
    })
}

fn build_images(cache: &Path, out: &Images) {
    let work = cache.join(format!("build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();

    for (name, source) in [("pause", PAUSE_C), ("pause-noreap", NOREAP_PAUSE_C)] {
        fs::write(work.join(format!("{name}.c")), source).unwrap();
        run(Command::new("gcc")
            .args(["-static", "-Os", "-s", "-o"])
            .arg(work.join(name))
            .arg(work.join(format!("{name}.c"))));
    }

    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    let applets = String::from_utf8(applets.stdout).unwrap();
    build_image(
        &work,
        "busybox",
        &out.busybox,
        &["--config.cmd=/bin/sh"],
        |rootfs| {
            let bin = rootfs.join("bin");
            fs::create_dir_all(&bin).unwrap();
            fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
            for a in applets.lines().filter(|a| *a != "busybox") {
                std::os::unix::fs::symlink("busybox", bin.join(a)).unwrap();
            }
        },
    );
    let pause = work.join("pause");
    build_image(
        &work,
        "pause",
        &out.pause,
        &["--config.entrypoint=/pause"],
        |rootfs| {
            fs::copy(&pause, rootfs.join("pause")).unwrap();
        },
    );
    let noreap = work.join("pause-noreap");
    build_image(
        &work,
        "pause-noreap",
        &out.noreap_pause,
        &["--config.entrypoint=/pause-noreap"],
        |rootfs| {
            fs::copy(&noreap, rootfs.join("pause-noreap")).unwrap();
        },
    );
    let _ = fs::remove_dir_all(&work);
}

/// umoci: new image, fill its rootfs, repack, set its config, tar the layout to `out`
/// (atomically: parallel test runs may race here).
fn build_image(work: &Path, name: &str, out: &Path, config: &[&str], fill: impl FnOnce(&Path)) {
    let layout = work.join(format!("{name}-layout"));
    let bundle = work.join(format!("{name}-bundle"));
    let image = format!("{}:1", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    fill(&bundle.join("rootfs"));
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    run(Command::new("umoci")
        .args(["config", "--image", &image, "--config.env=PATH=/bin"])
        .args(config));
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tmp)
        .arg("."));
    fs::rename(&tmp, out).unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill with plain integers.
    unsafe { libc::kill(pid, sig) };
}

/// Waits (briefly) for `pid` if it is our child; returns at once if it is not.
fn reap_if_child(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: waitpid with a null status pointer.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if r != 0 || Instant::now() > deadline {
            return; // reaped, or not our child (ECHILD), or still running after 5 s
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn list_dir(dir: &Path) -> BTreeSet<OsString> {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// Mount points of every cgroup hierarchy (each v1 controller and cgroup2).
fn cgroup_roots() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Pids in a cgroup subtree, in every hierarchy.
fn cgroup_pids(rel: &Path) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for root in cgroup_roots() {
        let mut dirs = Vec::new();
        walk_dirs(&root.join(rel), &mut dirs);
        for d in dirs {
            let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.parse::<i32>().ok()));
        }
    }
    pids
}

/// `dir` and every directory below it.
fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    out.push(dir.to_path_buf());
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_dirs(&e.path(), out);
        }
    }
}

/// Processes whose command line names `socket` (our containerd's shims: `-address <socket>`).
fn shims_of(socket: &Path) -> BTreeSet<i32> {
    let needle = socket.as_os_str().as_encoded_bytes();
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == needle))
        })
        .collect()
}

/// Lazily unmounts whatever is still mounted below `dir` (rootfs overlays, sandbox /dev/shm),
/// deepest first.
fn unmount_under(dir: &Path) {
    let mut points: Vec<PathBuf> = fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(unescape_mount)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        eprintln!("containerd teardown: unmounting {}", p.display());
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// /proc/self/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> PathBuf {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.len() >= i + 4 && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from(String::from_utf8_lossy(&out).into_owned()))
}

/// Zombie children of `pid` (state Z in /proc/<child>/stat).
pub fn zombie_children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // comm may hold spaces and parens: the fields after the last ')' are fixed.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<i32>().ok()));
        if state == Some("Z") && ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

#[test]
fn containerd_pod_and_container_resolve_through_cri() {
    let t = Instant::now();
    let mut c = Containerd::start();
    let started = t.elapsed();

    let uid = "6c3a1f52-9d7e-4b10-8e2a-5f4d3c2b1a09";
    let parent = format!("/kubepods/besteffort/pod{uid}");
    let t_pod = Instant::now();
    let sandbox = c.run_pod("leaky", "zombie-e2e", uid, &parent);
    // Two children exit before PID 1 becomes `sleep`, which never waits: two zombies.
    let cid = c.run_container(
        &sandbox,
        "app",
        BUSYBOX_IMAGE,
        &["sh", "-c", "sleep 0 & sleep 0 & exec sleep 3600"],
    );
    let pod_up = t_pod.elapsed();
    let pid = c.container_pid(&cid);

    let mut cri = c.block_on(CriClient::connect(&c.endpoint())).unwrap();
    assert_eq!(cri.runtime().0, "containerd");
    eprintln!("containerd smoke: runtime {:?}", cri.runtime());
    let snap = c.block_on(cri.snapshot()).unwrap();
    let (pod, container) = snap.pod_of(&cid).expect("the container is in the snapshot");
    assert_eq!(container.id, cid);
    assert_eq!(container.name, "app");
    assert_eq!(container.sandbox_id, sandbox);
    assert_eq!(container.image, BUSYBOX_IMAGE);
    assert_eq!(container.labels["io.kubernetes.pod.uid"], uid);
    assert_eq!(pod.sandbox_id, sandbox);
    assert_eq!(pod.name, "leaky");
    assert_eq!(pod.namespace, "zombie-e2e");
    assert_eq!(pod.uid, uid);
    assert_eq!(pod.labels["io.kubernetes.pod.namespace"], "zombie-e2e");

    // Every hierarchy (v1 controllers and cgroup2) puts the container at the kubelet's path.
    let expect = format!("{parent}/{cid}");
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap();
        assert_eq!(path, expect, "pid {pid}: {line}");
    }
    let pause = c.sandbox_pid(&sandbox);
    let pause_cgroups = fs::read_to_string(format!("/proc/{pause}/cgroup")).unwrap();
    assert!(
        pause_cgroups
            .lines()
            .all(|l| l.ends_with(&format!(":{parent}/{sandbox}"))),
        "pause {pause}: {pause_cgroups}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let zombies = loop {
        let z = zombie_children(pid);
        if z.len() == 2 || Instant::now() > deadline {
            break z;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        zombies.len(),
        2,
        "zombies of the container's PID 1 ({pid}): {zombies:?}"
    );

    let t_down = Instant::now();
    drop(c);
    eprintln!(
        "containerd smoke: start {started:?}, pod + container {pod_up:?}, teardown {:?}, total {:?}",
        t_down.elapsed(),
        t.elapsed()
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "container {pid} outlived teardown"
    );
}
