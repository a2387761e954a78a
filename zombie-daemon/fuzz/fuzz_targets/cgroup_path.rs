//! Any bytes through every entry point of the cgroup path parser: no panic, `raw` kept,
//! the documented shape of every field holds, and a result parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zombie_daemon::{
    attribution::{
        Attribution,
        cgroup_path::{self, CgroupInfo, Owner},
    },
    cgroups::{self, Prefer},
};

fn lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn check(info: &CgroupInfo) {
    match &info.pod_uid {
        Some(uid) => {
            assert_eq!(info.owner, Owner::Pod);
            let dashed = uid.len() == 36
                && uid.bytes().enumerate().all(|(i, b)| match i {
                    8 | 13 | 18 | 23 => b == b'-',
                    _ => lower_hex(b),
                });
            let static_pod = uid.len() == 32 && uid.bytes().all(lower_hex);
            assert!(dashed || static_pod, "bad uid {uid:?}");
        }
        None => assert_ne!(info.owner, Owner::Pod),
    }
    if info.owner != Owner::Pod {
        assert!(info.qos.is_none());
    }
    match &info.container_id {
        Some(id) => assert!(id.len() == 64 && id.bytes().all(lower_hex), "bad id {id:?}"),
        None => assert!(info.runtime.is_none() && !info.is_conmon),
    }
    if info.owner == Owner::Unknown {
        assert!(info.container_id.is_none());
    }
    if let Some(runtime) = &info.runtime {
        assert!(!runtime.as_str().is_empty());
    }
    if let Some(qos) = info.qos {
        assert!(!qos.as_str().is_empty());
    }
    // What /zombies and the metric labels show.
    let a = Attribution::from_cgroup(info);
    assert_eq!(a.owner, info.owner.as_str());
    assert_eq!(a.pod_uid, info.pod_uid);
    assert_eq!(a.container_id, info.container_id);
}

fuzz_target!(|data: &[u8]| {
    check(&cgroup_path::parse_bytes(data));
    if let Ok(text) = std::str::from_utf8(data) {
        let info = cgroup_path::parse(text);
        assert_eq!(info.raw, text);
        check(&info);
        if !text.contains('\0') {
            assert_eq!(cgroup_path::parse_bytes(data), info);
        }
        // Pods only at the top: below a cgroup a tenant may own (a delegated subtree), no
        // path is a pod unless that prefix is configured, whatever follows.
        let delegated = format!("/user.slice/user-1000.slice/user@1000.service{text}");
        let under = cgroup_path::parse_under(&delegated, &[]);
        check(&under);
        assert_ne!(under.owner, Owner::Pod, "{delegated:?}");
        // Configuring prefixes never changes what a path at the top says.
        let configured = ["/user.slice/user-1000.slice/user@1000.service".to_string()];
        if info.owner == Owner::Pod {
            let again = cgroup_path::parse_under(text, &configured);
            assert_eq!(again.pod_uid, info.pod_uid);
            assert_eq!(again.container_id, info.container_id);
        }
        // A whole /proc/<pid>/cgroup: the path picked from it is in the text, and its
        // parse holds the same shape.
        for prefer in [Prefer::V2, Prefer::V1] {
            if let Some(path) = cgroups::pick(text, prefer) {
                assert!(text.contains(path.as_str()), "{path:?}");
                check(&cgroup_path::parse(&path));
            }
        }
    }
});
