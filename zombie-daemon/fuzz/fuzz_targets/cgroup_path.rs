//! Any bytes through every entry point of the cgroup path parser: no panic,
//! `raw` kept, and the documented shape of every field holds.
//!
//! The module is included by path so this target builds without the daemon
//! crate and its dependencies.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/attribution/cgroup_path.rs"]
mod cgroup_path;

use cgroup_path::{CgroupInfo, Owner};

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
        check(&cgroup_path::parse_proc_cgroup(text));
    }
});
