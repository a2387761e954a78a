//! Text tables for a terminal: the ps-like table of zombies `zombie-daemon list` prints
//! (with its filters) and the rows of `audit`.

use std::fmt::Write as _;

use crate::view::ZombieView;

/// Which zombies to show: `--namespace`, `--pod` (name or UID) and `--container` (name
/// or ID prefix); `None` lets every zombie through.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
}

impl Filter {
    pub fn matches(&self, z: &ZombieView) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_deref() == Some(w.as_str()))
        };
        eq(&self.namespace, &z.namespace)
            && self.pod.as_ref().is_none_or(|p| {
                z.pod.as_deref() == Some(p.as_str()) || z.pod_uid.as_deref() == Some(p.as_str())
            })
            && self.container.as_ref().is_none_or(|c| {
                z.container.as_deref() == Some(c.as_str())
                    || z.container_id
                        .as_deref()
                        .is_some_and(|id| !c.is_empty() && id.starts_with(c.as_str()))
            })
    }
}

/// "namespace/pod", the pod UID when names are unknown, "-" for host processes.
fn pod_column(z: &ZombieView) -> String {
    match (&z.namespace, &z.pod, &z.pod_uid) {
        (Some(ns), Some(pod), _) => format!("{ns}/{pod}"),
        (_, Some(pod), _) => pod.clone(),
        (_, None, Some(uid)) => uid.clone(),
        _ => "-".into(),
    }
}

fn container_column(z: &ZombieView) -> String {
    match (&z.container, &z.container_id) {
        (Some(name), _) => name.clone(),
        (None, Some(id)) => id.chars().take(13).collect(),
        _ => "-".into(),
    }
}

/// The origin's kind, with the origin's comm for an exec session (`exec:sh`).
fn origin_column(z: &ZombieView) -> String {
    match &z.origin {
        Some(o) => match (&o.comm, o.kind.as_str()) {
            (Some(comm), "exec") => format!("exec:{comm}"),
            _ => o.kind.clone(),
        },
        None => "-".into(),
    }
}

/// "45s", "12m03s", "3h20m", "2d04h".
pub fn human_age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Left-aligned columns, the last one unpadded. Every cell is escaped first (see
/// [`crate::escape`]): comms, command lines and names are the tenant's, and a control
/// character in one would drive the reader's terminal or forge a row.
pub fn render_rows<const N: usize>(rows: &[[String; N]]) -> String {
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|r| r.clone().map(|c| crate::escape::escape(&c).into_owned()))
        .collect();
    let rows = rows.as_slice();
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn table(zombies: &[ZombieView]) -> String {
    let mut rows: Vec<[String; 10]> = vec![[
        "PID".into(),
        "PPID".into(),
        "COMM".into(),
        "PARENT".into(),
        "AGE".into(),
        "STATUS".into(),
        "NAMESPACE/POD".into(),
        "CONTAINER".into(),
        "ORIGIN".into(),
        "CAUSE".into(),
    ]];
    for z in zombies {
        let status = crate::wait_status::WaitStatus {
            exit_code: z.exit_code,
            signal: z.signal,
            core_dumped: z.core_dumped,
        };
        let age = human_age(z.age_seconds);
        rows.push([
            z.pid.to_string(),
            z.ppid.to_string(),
            z.comm.clone(),
            z.parent_comm.clone(),
            if z.exited_at_estimated {
                format!("~{age}")
            } else {
                age
            },
            status.describe(),
            pod_column(z),
            container_column(z),
            origin_column(z),
            z.cause.map_or("-", |c| c.as_str()).to_string(),
        ]);
    }
    let mut out = render_rows(&rows);
    if zombies.is_empty() {
        out.push_str("(no zombie processes)\n");
    }
    // One remedy per distinct one, below the table.
    let mut remedies: Vec<&str> = zombies.iter().filter_map(|z| z.remedy.as_deref()).collect();
    remedies.sort_unstable();
    remedies.dedup();
    if !remedies.is_empty() {
        out.push('\n');
        for r in remedies {
            let _ = writeln!(out, "remedy: {}", crate::escape::escape(r));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(human_age(5.2), "5s");
        assert_eq!(human_age(125.0), "2m05s");
        assert_eq!(human_age(3.0 * 3600.0 + 61.0), "3h01m");
        assert_eq!(human_age(2.0 * 86400.0 + 7200.0), "2d02h");
        assert_eq!(human_age(-1.0), "0s");
    }

    #[test]
    fn table_has_a_header_and_a_row_per_zombie() {
        let z = ZombieView {
            pid: 42,
            ppid: 1,
            parent_start_ticks: 0,
            comm: "sleep".into(),
            parent_comm: "bash".into(),
            exit_code: Some(0),
            signal: None,
            core_dumped: false,
            exited_at: "2026-01-01T00:00:00.000Z".into(),
            exited_at_estimated: false,
            age_seconds: 61.0,
            cgroup_id: 7,
            cgroup_path: Some("/kubepods/x".into()),
            start_ticks: 1,
            parent_exited: false,
            reparented: 0,
            owner: "pod".into(),
            pod_uid: Some("uid-1".into()),
            container_id: Some("abcdef0123456789".into()),
            runtime: None,
            qos: None,
            namespace: Some("shop".into()),
            pod: Some("cart-1".into()),
            container: None,
            parent_at_exit: None,
            cause: Some(crate::diagnosis::Cause::ShellPid1),
            reaper: None,
            remedy: Some("sh (pid 1): exec it".into()),
            origin: Some(crate::view::OriginView {
                kind: "exec".into(),
                pid: Some(77),
                start_ticks: Some(5),
                comm: Some("sh".into()),
                cmdline: Some("sh [redacted]".into()),
            }),
        };
        let t = table(std::slice::from_ref(&z));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("PID"));
        assert!(
            lines[1].contains("sleep") && lines[1].contains("1m01s") && lines[1].contains("exit 0")
        );
        assert!(lines[1].contains("shop/cart-1") && lines[1].contains("abcdef0123456"));
        assert!(lines[0].contains("ORIGIN"));
        assert!(lines[1].ends_with("exec:sh  shell_pid1"), "{}", lines[1]);
        assert!(t.contains("remedy: sh (pid 1): exec it"));
        assert!(table(&[]).contains("no zombie processes"));
        let filter = |ns: Option<&str>, pod: Option<&str>, c: Option<&str>| Filter {
            namespace: ns.map(Into::into),
            pod: pod.map(Into::into),
            container: c.map(Into::into),
        };
        assert!(filter(None, None, None).matches(&z));
        assert!(filter(Some("shop"), Some("uid-1"), Some("abcdef")).matches(&z));
        assert!(!filter(Some("other"), None, None).matches(&z));
        assert!(!filter(None, Some("cart-2"), None).matches(&z));
        assert!(!filter(None, None, Some("fff")).matches(&z));
    }

    /// A tenant's comm and names with clear-screen, an OSC 52 clipboard write, a forged row
    /// and a bidi override: the table shows them as text, one line per zombie.
    #[test]
    fn hostile_comms_cannot_drive_the_terminal_or_forge_rows() {
        let hostile = ZombieView {
            pid: 42,
            ppid: 1,
            parent_start_ticks: 0,
            comm: "\x1b[2J\x1b]52;c;ZXZpbA==\x07".into(),
            parent_comm: "a\r\n9 1 kubelet".into(),
            exit_code: Some(0),
            signal: None,
            core_dumped: false,
            exited_at: String::new(),
            exited_at_estimated: false,
            age_seconds: 1.0,
            cgroup_id: 0,
            cgroup_path: None,
            start_ticks: 1,
            parent_exited: false,
            reparented: 0,
            owner: "pod".into(),
            pod_uid: None,
            container_id: None,
            runtime: None,
            qos: None,
            namespace: Some("ns\u{202e}".into()),
            pod: Some("p".into()),
            container: None,
            parent_at_exit: None,
            cause: None,
            reaper: None,
            remedy: Some("x\n\x1b[31mremedy: forged".into()),
            origin: None,
        };
        let t = table(&[hostile]);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(!t.contains('\u{202e}'));
        assert!(t.contains("\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07"), "{t}");
        assert!(t.contains("a\\r\\n9 1 kubelet"));
        // Header, one row, a blank line and one remedy.
        assert_eq!(t.lines().count(), 4, "{t}");
        assert_eq!(
            t.matches("remedy:").count(),
            2,
            "the forged one is inside the real one"
        );
        assert_eq!(t.lines().filter(|l| l.starts_with("remedy:")).count(), 1);
    }
}
