//! Any text as the remediation policy file: no panic; a policy that parses is one the
//! validation promises, survives a YAML round trip unchanged, and drives the decision
//! engine through its whole ladder at any time, however large its waits, without
//! overflowing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zombie_daemon::{
    diagnosis::Cause,
    remediate::{Engine, MAX_SECONDS, Mode, Policy, Target},
};

fn target(pid: u32, namespace: &str, zombies: usize, namespace_init: bool) -> Target {
    Target {
        pid,
        start_ticks: 100 + u64::from(pid),
        comm: "app".into(),
        exe: "app".into(),
        in_pod: true,
        namespace: Some(namespace.into()),
        pod: Some(format!("pod{pid}")),
        pod_uid: Some(format!("uid{pid}")),
        container_id: Some(format!("cid{pid}")),
        pod_annotations: [("zombie-daemon.io/remediate".into(), "true".into())].into(),
        namespace_init,
        cause: Some(Cause::ParentNotWaiting),
        zombies,
        all_zombies: zombies,
        ..Target::default()
    }
}

/// Steps an engine from `start` in growing strides up to the end of the clock.
fn drive(policy: Policy, start: u64) {
    let mut engine = Engine::new(policy, Mode::DryRun, 4242);
    let targets = [
        target(10, "default", 1_000, false),
        target(11, "default", 1_000, true),
        target(12, "kube-system", 1_000, false),
        target(13, "default", 1, false),
    ];
    let mut now = start;
    for i in 0..40u32 {
        let present = if i % 7 == 6 {
            &targets[..1]
        } else {
            &targets[..]
        };
        for d in engine.step(present, now) {
            assert!(!d.reason.is_empty());
        }
        now = now.saturating_add(1u64 << (i + 24));
    }
    engine.step(&[], u64::MAX);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    for v in [
        policy.min_age_seconds,
        policy.backoff_seconds,
        policy.sigchld_wait_seconds,
        policy.grace_seconds,
        policy.interval_seconds,
    ] {
        assert!(v.is_finite() && (0.0..=MAX_SECONDS).contains(&v), "{v}");
    }
    assert!(policy.interval_seconds >= 0.05);

    let yaml = serde_norway::to_string(&policy).expect("a policy serialises");
    let again = Policy::parse(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml:?}"));
    assert_eq!(again, policy, "{yaml:?}");

    let start = data
        .iter()
        .fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b));
    drive(policy.clone(), start);
    // The engine's policy is public: waits beyond what `parse` allows must saturate too.
    drive(
        Policy {
            sigchld_wait_seconds: policy.sigchld_wait_seconds * 1e300,
            grace_seconds: f64::MAX,
            backoff_seconds: policy.backoff_seconds * 1e300,
            ..policy
        },
        start,
    );
});
