//! The runtime side: rewrite the bundle on `create`/`run`, then become runc.

use std::{
    fs,
    io::Write,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
};

use crate::{args, spec};

/// Overrides the real runc (default: the first `runc` in PATH that is not this program).
pub const RUNC_ENV: &str = "ZOMBIE_INIT_RUNC";
/// Overrides the init (default: `tini-static` next to this program).
pub const INIT_ENV: &str = "ZOMBIE_INIT_PATH";
/// Overrides the wrapper's own log (default [`DEFAULT_LOG`]).
pub const LOG_ENV: &str = "ZOMBIE_INIT_LOG";
pub const DEFAULT_LOG: &str = "/var/log/zombie-init-runtime.log";
/// The init's file name in the install directory.
pub const INIT_NAME: &str = "tini-static";

#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error(
        "no runc found in PATH besides this wrapper: install runc, or set {RUNC_ENV} to its path"
    )]
    NoRunc,
    #[error(
        "the init {0} is missing or not an executable file: run `zombie-init-runtime install` \
         on this node, or set {INIT_ENV}"
    )]
    NoInit(PathBuf),
    #[error("cannot read the bundle's spec {path}: {source}")]
    ReadSpec {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bundle's spec {path} is not JSON: {source}")]
    ParseSpec {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the bundle's spec {path}: {source}")]
    Spec {
        path: PathBuf,
        source: spec::SpecError,
    },
    #[error("cannot write the bundle's spec {path}: {source}")]
    WriteSpec {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {runc}: {source}")]
    Exec {
        runc: PathBuf,
        source: std::io::Error,
    },
}

/// One log line in runc's own format (logrus JSON: `level`, `msg`, `time`), so that the
/// shim, which reads the last `error` line of runc's `--log` file when a call fails, shows
/// ours to the kubelet.
pub struct Log {
    files: Vec<PathBuf>,
}

impl Log {
    pub fn new(call: &args::RuncCall) -> Self {
        let own = std::env::var_os(LOG_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG));
        Self {
            files: call.log.iter().cloned().chain([own]).collect(),
        }
    }

    pub fn write(&self, level: &str, id: Option<&str>, msg: &str) {
        let line = serde_json::json!({
            "level": level,
            "msg": format!("zombie-init: {msg}"),
            "container": id,
            "time": now_rfc3339(),
        });
        let mut written = false;
        for f in &self.files {
            if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(f) {
                written |= writeln!(file, "{line}").is_ok();
            }
        }
        if !written {
            eprintln!("{line}");
        }
    }
}

/// UTC time as RFC 3339, as runc writes it.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The real runc: [`RUNC_ENV`], else the first `runc` in PATH that is not this program
/// (the wrapper may be installed as `runc` earlier in PATH).
pub fn find_runc() -> Result<PathBuf, WrapError> {
    if let Some(p) = std::env::var_os(RUNC_ENV) {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().and_then(fs::canonicalize).ok();
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("runc"))
        .filter(|p| is_executable(p))
        .find(|p| fs::canonicalize(p).ok() != me)
        .ok_or(WrapError::NoRunc)
}

/// The init to inject: [`INIT_ENV`], else [`INIT_NAME`] next to this program.
pub fn find_init() -> Result<PathBuf, WrapError> {
    let p = match std::env::var_os(INIT_ENV) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.join(INIT_NAME)))
            .unwrap_or_else(|| PathBuf::from(INIT_NAME)),
    };
    if is_executable(&p) {
        Ok(p)
    } else {
        Err(WrapError::NoInit(p))
    }
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Rewrites `bundle/config.json` (atomically: a half-written spec must never reach runc).
pub fn rewrite_bundle(bundle: &Path, init: &Path) -> Result<spec::Outcome, WrapError> {
    let path = bundle.join("config.json");
    let text = fs::read(&path).map_err(|source| WrapError::ReadSpec {
        path: path.clone(),
        source,
    })?;
    let mut doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|source| WrapError::ParseSpec {
            path: path.clone(),
            source,
        })?;
    let outcome =
        spec::inject(&mut doc, &init.to_string_lossy()).map_err(|source| WrapError::Spec {
            path: path.clone(),
            source,
        })?;
    if outcome == spec::Outcome::Injected {
        let tmp = bundle.join(".config.json.zombie-init");
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(&doc).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            // Keep the shim's mode (0600 or 0644) on the new file.
            let mode = fs::metadata(&path)?.permissions();
            fs::set_permissions(&tmp, mode)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            WrapError::WriteSpec {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(outcome)
}

/// Runs as the OCI runtime: on `create`/`run`, rewrites the bundle; then execs runc with
/// the very same arguments. Returns only on failure.
pub fn run(argv: &[String]) -> WrapError {
    let call = args::parse(argv);
    let log = Log::new(&call);
    let err = |e: WrapError| {
        log.write("error", call.id.as_deref(), &e.to_string());
        e
    };
    let runc = match find_runc() {
        Ok(r) => r,
        Err(e) => return err(e),
    };
    if call.creates() {
        let bundle = call.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
        let init = match find_init() {
            Ok(i) => i,
            Err(e) => return err(e),
        };
        match rewrite_bundle(&bundle, &init) {
            Ok(spec::Outcome::Injected) => log.write(
                "info",
                call.id.as_deref(),
                &format!("started under the init {}", init.display()),
            ),
            Ok(spec::Outcome::Skipped(why)) => log.write(
                "warning",
                call.id.as_deref(),
                &format!("not injecting the init: {why}"),
            ),
            Err(e) => return err(e),
        }
    }
    let e = Command::new(&runc).args(argv).exec();
    err(WrapError::Exec { runc, source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }

    #[test]
    fn a_bundle_is_rewritten_in_place_keeping_its_mode() {
        let dir = std::env::temp_dir().join(format!("zombie-init-wrap-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.json");
        fs::write(
            &cfg,
            r#"{"process":{"args":["app","x"]},"linux":{"namespaces":[{"type":"pid"}]},"z":1}"#,
        )
        .unwrap();
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
        let out = rewrite_bundle(&dir, Path::new("/opt/i"));
        let doc: serde_json::Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
        let mode = fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(out.unwrap(), spec::Outcome::Injected);
        assert_eq!(doc["process"]["args"][3], "app");
        assert_eq!(doc["z"], 1);
        assert_eq!(mode, 0o600);
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn a_bundle_that_is_not_json_is_one_clear_error() {
        let dir = std::env::temp_dir().join(format!("zombie-init-bad-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.json"), "{not json").unwrap();
        let e = rewrite_bundle(&dir, Path::new("/i"))
            .unwrap_err()
            .to_string();
        let missing = rewrite_bundle(&dir.join("nope"), Path::new("/i"))
            .unwrap_err()
            .to_string();
        fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("is not JSON"), "{e}");
        assert!(missing.contains("cannot read"), "{missing}");
    }
}
