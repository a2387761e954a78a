//! Real OCI containers with Debian's runc, placed in kubepods cgroups the way kubelet's
//! drivers name them. Each container is killed, deleted and its cgroup dirs removed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

const BUSYBOX: &str = "/bin/busybox";
/// Every test container's pids.max.
pub const PIDS_LIMIT: i64 = 64;

pub struct RuncContainer {
    id: String,
    state: PathBuf,
    bundle: PathBuf,
    cgroup_path: String,
    pub pid: i32,
}

fn runc(state: &Path) -> Command {
    let mut c = Command::new("runc");
    c.arg("--root").arg(state);
    c
}

/// More than busybox: host programs to copy in, a PID namespace to join.
#[derive(Default)]
pub struct Options<'a> {
    /// Host binaries copied to /bin with the shared libraries they need.
    pub bins: &'a [&'a str],
    /// Join the PID namespace of this host pid (a pod's shared PID namespace).
    pub join_pid_ns_of: Option<i32>,
    /// Run the container with this OCI runtime (with `env`) instead of runc.
    pub runtime: Option<(PathBuf, Vec<(String, PathBuf)>)>,
    /// A user namespace of its own: container uids and gids 0..65536 are host 100000 on.
    pub user_namespace: bool,
}

/// Copies a host binary and its shared libraries (from `ldd`) into a rootfs.
fn copy_with_libs(bin: &str, rootfs: &Path) {
    let name = Path::new(bin).file_name().unwrap();
    std::fs::copy(bin, rootfs.join("bin").join(name)).unwrap();
    let out = Command::new("ldd").arg(bin).output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = path {
            let dest = rootfs.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &dest).unwrap();
        }
    }
}

impl RuncContainer {
    /// Starts `args` as PID 1 of a new container in cgroup `cgroup_path` (cgroupfs driver).
    pub fn start(id: &str, cgroup_path: &str, args: &[&str]) -> Self {
        Self::start_with(id, cgroup_path, args, Options::default())
    }

    pub fn start_with(id: &str, cgroup_path: &str, args: &[&str], opts: Options) -> Self {
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing: install busybox-static (cargo xtask setup --test)"
        );
        let base =
            std::env::temp_dir().join(format!("zombie-e2e-runc-{}-{id}", std::process::id()));
        let bundle = base.join("bundle");
        let state = base.join("state");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        for dir in ["proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(dir)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        for bin in opts.bins {
            copy_with_libs(bin, &rootfs);
        }
        let mut c = RuncContainer {
            id: id.to_string(),
            state,
            bundle,
            cgroup_path: cgroup_path.to_string(),
            pid: 0,
        };
        let out = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(&c.bundle)
            .output()
            .expect("runc is missing: install it (cargo xtask setup --test)");
        assert!(
            out.status.success(),
            "runc spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg_path = c.bundle.join("config.json");
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = Value::Bool(false);
        cfg["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        cfg["root"]["readonly"] = Value::Bool(true);
        cfg["linux"]["cgroupsPath"] = Value::from(cgroup_path);
        cfg["linux"]["resources"]["pids"] = serde_json::json!({ "limit": PIDS_LIMIT });
        if let Some(pid) = opts.join_pid_ns_of {
            for ns in cfg["linux"]["namespaces"].as_array_mut().unwrap() {
                if ns["type"] == "pid" {
                    ns["path"] = Value::from(format!("/proc/{pid}/ns/pid"));
                }
            }
        }
        if opts.user_namespace {
            // The root belongs to the mapped root, as a runtime's snapshotter makes it for a
            // user-namespaced container.
            chown_tree(&rootfs, 100000);
            cfg["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({ "type": "user" }));
            let map = serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
            cfg["linux"]["uidMappings"] = map.clone();
            cfg["linux"]["gidMappings"] = map;
        }
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();

        // The container inherits runc's stdio: a pipe would never see EOF, so use a file.
        let err_path = c.state.join("run.err");
        let mut run = match &opts.runtime {
            Some((runtime, env)) => {
                let mut cmd = Command::new(runtime);
                cmd.envs(env.iter().map(|(k, v)| (k, v)))
                    .arg("--root")
                    .arg(&c.state);
                cmd
            }
            None => runc(&c.state),
        };
        let status = run
            .args(["run", "--detach", "--bundle"])
            .arg(&c.bundle)
            .arg(&c.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "runc run: {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        let out = runc(&c.state).args(["state", &c.id]).output().unwrap();
        let st: Value = serde_json::from_slice(&out.stdout).expect("runc state JSON");
        c.pid = st["pid"].as_i64().expect("container pid") as i32;
        c
    }
}

/// `chown -R id:id`, symlinks themselves included.
fn chown_tree(dir: &Path, id: u32) {
    std::os::unix::fs::lchown(dir, Some(id), Some(id)).unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            chown_tree(&p, id);
        } else {
            std::os::unix::fs::lchown(&p, Some(id), Some(id)).unwrap();
        }
    }
}

/// Makes the cgroup `rel` (e.g. `/kubepods/besteffort/pod<uid>/<id>`) in hierarchy `h` as
/// the kubelet (or systemd) makes it: on cgroup2 each new level's parent first enables every
/// controller it has for its children (`cgroup.subtree_control`), so that the pod and the
/// container get `pids.max`, `pids.events` and the rest. The hierarchy's root is left as
/// the node's init set it.
pub fn create_cgroup(h: &Path, rel: &str) -> std::io::Result<PathBuf> {
    let mut dir = h.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if dir != h {
            enable_controllers(&dir);
        }
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// On cgroup2: every controller of `dir` enabled for its children (a v1 dir has no
/// `cgroup.controllers`: nothing to do).
pub fn enable_controllers(dir: &Path) {
    let Ok(have) = std::fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let ctl = dir.join("cgroup.subtree_control");
    let on = std::fs::read_to_string(&ctl).unwrap_or_default();
    for c in have.split_whitespace() {
        if !on.split_whitespace().any(|o| o == c) {
            let _ = std::fs::write(&ctl, format!("+{c}"));
        }
    }
}

/// Every cgroup hierarchy root on this node (v1 controllers and cgroup2).
pub fn hierarchies() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = runc(&self.state).args(["kill", &self.id, "KILL"]).output();
        let _ = runc(&self.state)
            .args(["delete", "--force", &self.id])
            .output();
        // The container's PID 1 was handed to us (the tests are a subreaper, as a shim is):
        // reap it, as containerd-shim would.
        crate::harness::reap(self.pid);
        // runc removes the container's own cgroup, not the kubepods parents it created.
        let parts: Vec<&str> = self.cgroup_path.trim_matches('/').split('/').collect();
        for depth in (1..=parts.len()).rev() {
            let rel = parts[..depth].join("/");
            for h in hierarchies() {
                let _ = std::fs::remove_dir(h.join(&rel));
            }
        }
        let _ = std::fs::remove_dir_all(self.bundle.parent().unwrap());
    }
}

/// A container cgroup holding only a process whose starter exited in a pod's shared PID
/// namespace: its parent is now the namespace's init (the pod's pause process).
pub struct LeftoverInSharedPidNs {
    cgroup_path: String,
    pub pid: i32,
}

impl LeftoverInSharedPidNs {
    pub fn start(ns_init: i32, cgroup_path: &str) -> Self {
        let mut me = Self {
            cgroup_path: cgroup_path.to_string(),
            pid: 0,
        };
        let out = Command::new("nsenter")
            .args([
                "--target",
                &ns_init.to_string(),
                "--pid",
                "--",
                "/bin/sh",
                "-c",
            ])
            .arg("sleep 3600 </dev/null >/dev/null 2>&1 & echo $!")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nsenter: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `$!` is the child's pid in the pod's namespace; find its host pid among the init's
        // children.
        let children = std::fs::read_to_string(format!("/proc/{ns_init}/task/{ns_init}/children"))
            .unwrap_or_default();
        me.pid = children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.starts_with("sleep\0"))
            })
            .expect("the leftover child, handed to the namespace's init");
        for h in hierarchies() {
            let dir = h.join(cgroup_path.trim_start_matches('/'));
            if std::fs::create_dir_all(&dir).is_ok() {
                let _ = std::fs::write(dir.join("cgroup.procs"), me.pid.to_string());
            }
        }
        me
    }
}

impl Drop for LeftoverInSharedPidNs {
    fn drop(&mut self) {
        // SAFETY: killing the process this test made.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let parts: Vec<&str> = self.cgroup_path.trim_matches('/').split('/').collect();
        for depth in (1..=parts.len()).rev() {
            let rel = parts[..depth].join("/");
            for h in hierarchies() {
                let _ = std::fs::remove_dir(h.join(&rel));
            }
        }
    }
}
