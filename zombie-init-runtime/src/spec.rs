//! The rewrite of a bundle's `config.json`: bind-mount the init read-only and put it
//! before `process.args`. Pure: a JSON value in, the decision out. Everything the rewrite
//! does not name is kept as it was (the spec is edited as a `serde_json::Value`, so fields
//! this crate does not know survive byte for byte in meaning).

use serde_json::{Value, json};

/// Where the init appears in the container. A file at the root, like docker's
/// `/sbin/docker-init`, but in a name no image uses; runc creates the mount point before it
/// makes a read-only root read-only.
pub const DESTINATION: &str = "/.zombie-init";

/// The init's arguments before the application's: `-g` sends the signals it receives
/// (SIGTERM from StopContainer) to the child's whole process group, as `docker --init` does
/// not by default; `--` ends tini's options so that the application's are never read as
/// tini's.
pub const INIT_ARGS: &[&str] = &["-g", "--"];

/// Programs that already are an init: a container whose `process.args[0]` is one of these is
/// left as it is (two inits would only add a process).
pub const KNOWN_INITS: &[&str] = &[
    "tini",
    "tini-static",
    "docker-init",
    "dumb-init",
    "catatonit",
    "s6-svscan",
    "systemd",
    "init",
    "runit",
    "runsvdir",
    "openrc-init",
];

/// The annotations by which containerd's and CRI-O's CRI mark a pod's sandbox container.
const SANDBOX_ANNOTATIONS: &[(&str, &str)] = &[
    ("io.kubernetes.cri.container-type", "sandbox"),
    ("io.kubernetes.cri-o.ContainerType", "sandbox"),
];

/// What [`inject`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The init is mounted and runs the original arguments.
    Injected,
    /// Nothing was changed, for this reason.
    Skipped(Skip),
}

/// Why a container was left as it was.
#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    /// Its PID 1 is already an init.
    AlreadyInit(String),
    /// It joins another PID namespace (a pod's shared one, `shareProcessNamespace: true`):
    /// the sandbox's pause process is PID 1 there and reaps; an init here would not be
    /// PID 1.
    SharedPidNamespace,
    /// It runs in the host's PID namespace (`hostPID: true`): the node's init reaps.
    HostPidNamespace,
    /// The bundle already has the init (a second `create` of the same bundle).
    AlreadyInjected,
    /// It is a pod's sandbox (its pause process), as the runtime's annotation says.
    Sandbox,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyInit(p) => write!(f, "its PID 1 is already an init ({p}): left as it is"),
            Self::SharedPidNamespace => f.write_str(
                "it joins its pod's shared PID namespace (shareProcessNamespace: true), whose \
                 PID 1 is the sandbox's pause process: an init here would not be PID 1; left \
                 as it is (the pause process must reap)",
            ),
            Self::HostPidNamespace => f.write_str(
                "it runs in the host's PID namespace (hostPID: true), whose PID 1 is the \
                 node's init: left as it is",
            ),
            Self::AlreadyInjected => f.write_str("the init is already in its spec"),
            Self::Sandbox => f.write_str(
                "it is the pod's sandbox: its pause process reaps, and must be PID 1 of a \
                 shared PID namespace",
            ),
        }
    }
}

/// A spec this wrapper refuses to touch, and does not hand to runc.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("config.json has no process.args (an array of strings)")]
    NoArgs,
    #[error("config.json's {0} is not what the OCI runtime spec says it is")]
    Malformed(&'static str),
}

/// The program name of `args[0]` (`/usr/bin/tini` -> `tini`).
fn program(arg0: &str) -> &str {
    arg0.rsplit('/').next().unwrap_or(arg0)
}

/// Rewrites `spec` so that `init` (a path on the host) runs as PID 1 with the original
/// `process.args` under it, or says why it is left as it is.
pub fn inject(spec: &mut Value, init: &str) -> Result<Outcome, SpecError> {
    let args: Vec<String> = spec
        .pointer("/process/args")
        .and_then(Value::as_array)
        .ok_or(SpecError::NoArgs)?
        .iter()
        .map(|a| a.as_str().map(str::to_string).ok_or(SpecError::NoArgs))
        .collect::<Result<_, _>>()?;
    let Some(arg0) = args.first() else {
        return Err(SpecError::NoArgs);
    };
    let mounts = match spec.get("mounts") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(m)) => m,
        Some(_) => return Err(SpecError::Malformed("mounts")),
    };
    if mounts
        .iter()
        .any(|m| m.get("destination").and_then(Value::as_str) == Some(DESTINATION))
    {
        return Ok(Outcome::Skipped(Skip::AlreadyInjected));
    }
    let annotation = |k: &str| {
        spec.pointer("/annotations")
            .and_then(|a| a.get(k)?.as_str())
    };
    if SANDBOX_ANNOTATIONS
        .iter()
        .any(|(k, v)| annotation(k) == Some(*v))
    {
        return Ok(Outcome::Skipped(Skip::Sandbox));
    }
    if KNOWN_INITS.contains(&program(arg0)) {
        return Ok(Outcome::Skipped(Skip::AlreadyInit(arg0.clone())));
    }
    let namespaces = spec
        .pointer("/linux/namespaces")
        .map(|n| n.as_array().ok_or(SpecError::Malformed("linux.namespaces")))
        .transpose()?;
    let pid_ns = namespaces
        .into_iter()
        .flatten()
        .find(|n| n.get("type").and_then(Value::as_str) == Some("pid"));
    match pid_ns {
        None => return Ok(Outcome::Skipped(Skip::HostPidNamespace)),
        Some(ns)
            if ns
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.is_empty()) =>
        {
            return Ok(Outcome::Skipped(Skip::SharedPidNamespace));
        }
        Some(_) => {}
    }

    let mount = json!({
        "destination": DESTINATION,
        "type": "bind",
        "source": init,
        // nodev and nosuid: the mounts a user namespace locks must keep them on a
        // read-only remount, and the init needs neither.
        "options": ["rbind", "ro", "nosuid", "nodev"],
    });
    match spec.get_mut("mounts") {
        Some(Value::Array(m)) => m.push(mount),
        _ => {
            spec.as_object_mut()
                .ok_or(SpecError::Malformed("the document"))?
                .insert("mounts".into(), Value::Array(vec![mount]));
        }
    }
    let new_args: Vec<Value> = std::iter::once(DESTINATION)
        .chain(INIT_ARGS.iter().copied())
        .map(Value::from)
        .chain(args.into_iter().map(Value::from))
        .collect();
    *spec.pointer_mut("/process/args").ok_or(SpecError::NoArgs)? = Value::Array(new_args);
    Ok(Outcome::Injected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(args: &[&str], pid_ns: Value) -> Value {
        json!({
            "ociVersion": "1.0.2-dev",
            "process": {"args": args, "cwd": "/", "env": ["PATH=/bin"], "terminal": false},
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "annotations": {"io.kubernetes.cri.container-type": "container"},
            "linux": {"namespaces": [{"type": "mount"}, pid_ns], "unknownField": 7},
        })
    }

    #[test]
    fn the_init_runs_the_original_args_and_nothing_else_changes() {
        let mut s = spec(
            &["sh", "-c", "sleep 1 & exec sleep 9"],
            json!({"type": "pid"}),
        );
        let before = s.clone();
        assert_eq!(
            inject(&mut s, "/opt/zombie-init/bin/tini-static"),
            Ok(Outcome::Injected)
        );
        assert_eq!(
            s["process"]["args"],
            json!([
                DESTINATION,
                "-g",
                "--",
                "sh",
                "-c",
                "sleep 1 & exec sleep 9"
            ])
        );
        let m = s["mounts"].as_array().unwrap();
        assert_eq!(m[0], before["mounts"][0]);
        assert_eq!(m[1]["source"], "/opt/zombie-init/bin/tini-static");
        assert_eq!(m[1]["destination"], DESTINATION);
        assert!(m[1]["options"].as_array().unwrap().contains(&json!("ro")));
        // Everything else as it was.
        let (mut a, mut b) = (s.clone(), before.clone());
        for v in [&mut a, &mut b] {
            v["mounts"].take();
            v["process"]["args"].take();
        }
        assert_eq!(a, b);
        // A second create of the same bundle changes nothing more.
        let once = s.clone();
        assert_eq!(
            inject(&mut s, "/x"),
            Ok(Outcome::Skipped(Skip::AlreadyInjected))
        );
        assert_eq!(s, once);
    }

    #[test]
    fn an_image_whose_pid1_is_an_init_is_left_alone() {
        for init in [
            "/usr/bin/tini",
            "dumb-init",
            "/catatonit",
            "/sbin/init",
            "/usr/bin/s6-svscan",
        ] {
            let mut s = spec(&[init, "--", "app"], json!({"type": "pid"}));
            let before = s.clone();
            assert_eq!(
                inject(&mut s, "/i"),
                Ok(Outcome::Skipped(Skip::AlreadyInit(init.into())))
            );
            assert_eq!(s, before);
        }
    }

    #[test]
    fn a_pods_sandbox_is_left_alone() {
        for (k, v) in SANDBOX_ANNOTATIONS {
            let mut s = spec(&["/pause"], json!({"type": "pid"}));
            s["annotations"] = json!({ *k: *v });
            let before = s.clone();
            assert_eq!(inject(&mut s, "/i"), Ok(Outcome::Skipped(Skip::Sandbox)));
            assert_eq!(s, before);
        }
    }

    #[test]
    fn shared_and_host_pid_namespaces_are_left_alone() {
        let mut s = spec(&["app"], json!({"type": "pid", "path": "/proc/42/ns/pid"}));
        let before = s.clone();
        assert_eq!(
            inject(&mut s, "/i"),
            Ok(Outcome::Skipped(Skip::SharedPidNamespace))
        );
        assert_eq!(s, before);
        let mut s = spec(&["app"], json!({"type": "network"}));
        assert_eq!(
            inject(&mut s, "/i"),
            Ok(Outcome::Skipped(Skip::HostPidNamespace))
        );
        // An empty path is runc's "new namespace".
        let mut s = spec(&["app"], json!({"type": "pid", "path": ""}));
        assert_eq!(inject(&mut s, "/i"), Ok(Outcome::Injected));
    }

    #[test]
    fn malformed_specs_are_refused() {
        let mut s = json!({"process": {"args": []}, "linux": {"namespaces": [{"type": "pid"}]}});
        assert_eq!(inject(&mut s, "/i"), Err(SpecError::NoArgs));
        let mut s = json!({"process": {"args": ["a", 3]}});
        assert_eq!(inject(&mut s, "/i"), Err(SpecError::NoArgs));
        let mut s = json!({"process": {}});
        assert_eq!(inject(&mut s, "/i"), Err(SpecError::NoArgs));
        let mut s = json!({"process": {"args": ["a"]}, "mounts": 5});
        assert_eq!(inject(&mut s, "/i"), Err(SpecError::Malformed("mounts")));
        let mut s = json!({"process": {"args": ["a"]}, "linux": {"namespaces": {}}});
        assert_eq!(
            inject(&mut s, "/i"),
            Err(SpecError::Malformed("linux.namespaces"))
        );
        // No mounts at all: the init's is the first.
        let mut s = json!({"process": {"args": ["a"]}, "linux": {"namespaces": [{"type": "pid"}]}});
        assert_eq!(inject(&mut s, "/i"), Ok(Outcome::Injected));
        assert_eq!(s["mounts"][0]["destination"], DESTINATION);
    }
}
