//! Node install: copy the wrapper and the init into one directory and add the runtime
//! entry to containerd's config, for config version 2 (containerd 1.6/1.7) and version 3
//! (containerd 2.x). The file is edited with `toml_edit`, so the operator's comments,
//! order and other settings stay as they were.

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use toml_edit::{DocumentMut, Item, Table, value};

/// The RuntimeClass handler name, and the runtime entry's name in containerd's config.
pub const RUNTIME_NAME: &str = "zombie-init";
pub const DEFAULT_PREFIX: &str = "/opt/zombie-init";
pub const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";
pub const WRAPPER_NAME: &str = "zombie-init-runtime";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml_edit::TomlError>,
    },
    #[error(
        "{path} is a containerd config of version {version}; only versions 2 (containerd \
         1.6/1.7) and 3 (containerd 2.x) are supported: run `containerd config migrate` first"
    )]
    Version { path: PathBuf, version: i64 },
    #[error("{path}: {what} is not a table")]
    NotATable { path: PathBuf, what: String },
    #[error(
        "the init {0} is not a statically linked executable: the container's root has no \
         loader or libc for it (Debian: /usr/bin/tini-static from the tini package)"
    )]
    NotStatic(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{0}` failed: {1}")]
    Command(String, String),
}

/// Which containerd config schema a document is, from its `version` key (absent: 1).
fn version(doc: &DocumentMut) -> i64 {
    doc.get("version").and_then(Item::as_integer).unwrap_or(1)
}

/// The CRI plugin's table that holds `containerd.runtimes`, by config version.
fn cri_plugin(version: i64) -> Option<&'static str> {
    match version {
        2 => Some("io.containerd.grpc.v1.cri"),
        3 => Some("io.containerd.cri.v1.runtime"),
        _ => None,
    }
}

/// A table below `parent`, made implicit-parent style when missing (so that the file shows
/// only the leaf's header, as containerd's own `config default` does).
fn table<'a>(parent: &'a mut Table, key: &str, path: &Path) -> Result<&'a mut Table, InstallError> {
    let item = parent.entry(key).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    item.as_table_mut().ok_or_else(|| InstallError::NotATable {
        path: path.to_path_buf(),
        what: key.to_string(),
    })
}

/// Adds (or updates) the `zombie-init` runtime in a containerd config: a copy of the `runc`
/// runtime's settings when there is one (its cgroup driver, its root), with `BinaryName`
/// pointing at the wrapper. Returns the new text.
pub fn add_runtime(text: &str, wrapper: &Path, path: &Path) -> Result<String, InstallError> {
    let mut doc: DocumentMut = text.parse().map_err(|source| InstallError::Toml {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let version = version(&doc);
    let plugin = cri_plugin(version).ok_or_else(|| InstallError::Version {
        path: path.to_path_buf(),
        version,
    })?;
    let runtimes = {
        let plugins = table(doc.as_table_mut(), "plugins", path)?;
        let cri = table(plugins, plugin, path)?;
        let containerd = table(cri, "containerd", path)?;
        table(containerd, "runtimes", path)?
    };
    // Start from runc's entry: the same shim, cgroup driver and options.
    let mut entry = match runtimes.get("runc").and_then(Item::as_table) {
        Some(runc) => runc.clone(),
        None => Table::new(),
    };
    entry.set_implicit(false);
    entry.set_position(None);
    entry.insert("runtime_type", value("io.containerd.runc.v2"));
    let mut options = match entry.remove("options") {
        Some(Item::Table(t)) => t,
        _ => Table::new(),
    };
    options.set_position(None);
    options.insert("BinaryName", value(wrapper.to_string_lossy().into_owned()));
    entry.insert("options", Item::Table(options));
    runtimes.insert(RUNTIME_NAME, Item::Table(entry));
    Ok(doc.to_string())
}

/// The file is a statically linked ELF executable (no program interpreter).
pub fn is_static(path: &Path) -> bool {
    use object::{Object, ObjectKind, read::elf::ElfFile64};
    let Ok(data) = fs::read(path) else {
        return false;
    };
    let Ok(elf) = ElfFile64::<object::Endianness>::parse(&*data) else {
        return false;
    };
    matches!(elf.kind(), ObjectKind::Executable | ObjectKind::Dynamic)
        && !elf.elf_program_headers().iter().any(|ph| {
            use object::read::elf::ProgramHeader;
            ph.p_type(elf.endian()) == object::elf::PT_INTERP
        })
}

/// Copies `from` to `to` with mode 0755, atomically (a running shim may exec the old one).
fn copy_exec(from: &Path, to: &Path) -> Result<(), InstallError> {
    let tmp = to.with_extension("new");
    let res = (|| {
        fs::copy(from, &tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, to)
    })();
    res.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        InstallError::Write {
            path: to.to_path_buf(),
            source,
        }
    })
}

fn write_atomic(path: &Path, text: &str) -> Result<(), InstallError> {
    let tmp = path.with_extension("toml.zombie-init");
    let res = (|| {
        let mode = fs::metadata(path).map_or(0o644, |m| m.permissions().mode());
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, path)
    })();
    res.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        InstallError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn run(cmd: &mut Command) -> Result<String, InstallError> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| InstallError::Command(shown.clone(), e.to_string()))?;
    if !out.status.success() {
        return Err(InstallError::Command(
            shown,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `install` does.
pub struct Install {
    pub prefix: PathBuf,
    pub init: PathBuf,
    pub config: PathBuf,
    pub restart: bool,
}

/// Installs on this node; returns what it did, one line each.
pub fn install(i: &Install) -> Result<Vec<String>, InstallError> {
    let mut done = Vec::new();
    if !is_static(&i.init) {
        return Err(InstallError::NotStatic(i.init.clone()));
    }
    let bin = i.prefix.join("bin");
    fs::create_dir_all(&bin).map_err(|source| InstallError::Write {
        path: bin.clone(),
        source,
    })?;
    let wrapper = bin.join(WRAPPER_NAME);
    let me = std::env::current_exe().map_err(|source| InstallError::Read {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    if fs::canonicalize(&me).ok() != fs::canonicalize(&wrapper).ok() {
        copy_exec(&me, &wrapper)?;
    }
    copy_exec(&i.init, &bin.join(crate::wrap::INIT_NAME))?;
    done.push(format!(
        "installed {} and {}",
        wrapper.display(),
        bin.join(crate::wrap::INIT_NAME).display()
    ));

    // No config yet: start from the installed containerd's defaults (its own version).
    let text = match fs::read_to_string(&i.config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = i.config.parent() {
                fs::create_dir_all(dir).map_err(|source| InstallError::Write {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            run(Command::new("containerd").args(["config", "default"]))?
        }
        Err(source) => {
            return Err(InstallError::Read {
                path: i.config.clone(),
                source,
            });
        }
    };
    let new = add_runtime(&text, &wrapper, &i.config)?;
    if new != text {
        write_atomic(&i.config, &new)?;
        done.push(format!(
            "added the runtime `{RUNTIME_NAME}` to {}",
            i.config.display()
        ));
    } else {
        done.push(format!(
            "{} already has `{RUNTIME_NAME}`",
            i.config.display()
        ));
    }
    if i.restart {
        run(Command::new("systemctl").args(["restart", "containerd"]))?;
        done.push("restarted containerd".into());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"version = 2
# the operator's comment stays
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true
"#;

    const V3: &str = r#"version = 3
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      SystemdCgroup = true
      BinaryName = "/usr/local/sbin/runc"
"#;

    fn parsed(t: &str) -> toml_edit::DocumentMut {
        t.parse().unwrap()
    }

    #[test]
    fn version_2_gets_the_entry_under_the_grpc_cri_plugin() {
        let w = Path::new("/opt/zombie-init/bin/zombie-init-runtime");
        let out = add_runtime(V2, w, Path::new("c.toml")).unwrap();
        let d = parsed(&out);
        let rt = &d["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        assert_eq!(
            rt["zombie-init"]["runtime_type"].as_str(),
            Some("io.containerd.runc.v2")
        );
        assert_eq!(
            rt["zombie-init"]["options"]["BinaryName"].as_str(),
            Some(w.to_str().unwrap())
        );
        // runc's cgroup driver is copied; runc itself and the rest are untouched.
        assert_eq!(
            rt["zombie-init"]["options"]["SystemdCgroup"].as_bool(),
            Some(true)
        );
        assert!(rt["runc"]["options"].get("BinaryName").is_none());
        assert!(out.contains("# the operator's comment stays"));
        assert!(
            out.starts_with(
                &V2[..V2
                    .find("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]")
                    .unwrap()]
            )
        );
        // Idempotent.
        assert_eq!(add_runtime(&out, w, Path::new("c.toml")).unwrap(), out);
    }

    #[test]
    fn version_3_gets_the_entry_under_the_runtime_cri_plugin() {
        let w = Path::new("/opt/z/bin/zombie-init-runtime");
        let out = add_runtime(V3, w, Path::new("c.toml")).unwrap();
        let d = parsed(&out);
        let rt = &d["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"];
        assert_eq!(
            rt["zombie-init"]["options"]["BinaryName"].as_str(),
            Some("/opt/z/bin/zombie-init-runtime")
        );
        // The runc the operator chose stays runc's; the wrapper finds it through PATH
        // or ZOMBIE_INIT_RUNC.
        assert_eq!(
            rt["runc"]["options"]["BinaryName"].as_str(),
            Some("/usr/local/sbin/runc")
        );
        assert!(d["plugins"].get("io.containerd.grpc.v1.cri").is_none());
    }

    #[test]
    fn an_empty_config_of_a_version_gets_the_whole_path() {
        let out = add_runtime("version = 2\n", Path::new("/w"), Path::new("c")).unwrap();
        let d = parsed(&out);
        assert_eq!(
            d["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["zombie-init"]
                ["options"]["BinaryName"]
                .as_str(),
            Some("/w")
        );
    }

    #[test]
    fn bad_configs_are_one_clear_error() {
        let e = add_runtime("[plugins]\n", Path::new("/w"), Path::new("c")).unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");
        assert!(e.to_string().contains("containerd config migrate"), "{e}");
        let e = add_runtime(
            "version = 2\nplugins = 5\n",
            Path::new("/w"),
            Path::new("c"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("plugins is not a table"), "{e}");
        let e = add_runtime("version = [", Path::new("/w"), Path::new("c")).unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
    }

    #[test]
    fn only_a_static_init_is_accepted() {
        // Debian's tini-static is static, tini is not (the test tools install both).
        for (p, want) in [("/usr/bin/tini-static", true), ("/usr/bin/tini", false)] {
            if Path::new(p).exists() {
                assert_eq!(is_static(Path::new(p)), want, "{p}");
            }
        }
        assert!(!is_static(Path::new("/nonexistent")));
        assert!(!is_static(Path::new("/etc/hostname")));
    }
}
