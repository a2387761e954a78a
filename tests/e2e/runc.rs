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

impl RuncContainer {
    /// Starts `args` as PID 1 of a new container in cgroup `cgroup_path` (cgroupfs driver).
    pub fn start(id: &str, cgroup_path: &str, args: &[&str]) -> Self {
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
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();

        // The container inherits runc's stdio: a pipe would never see EOF, so use a file.
        let err_path = c.state.join("run.err");
        let status = runc(&c.state)
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

/// Every cgroup hierarchy root on this node (v1 controllers and cgroup2).
fn hierarchies() -> Vec<PathBuf> {
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
