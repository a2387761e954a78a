//! Cost of the parsers on the per-zombie and per-scan paths: cgroup paths, the
//! /proc/<pid>/{cgroup,stat,status,sched} files, and the remediation policy. The inputs are
//! real files, the fuzzers' seeds.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use procfs::{
    FromRead,
    process::{Stat, Status},
};
use zombie_daemon::{
    attribution::cgroup_path,
    cgroups::{self, Prefer},
    proc_scan::parse_exec_start,
    remediate::Policy,
};

const PATHS: &[(&str, &str)] = &[
    (
        "systemd containerd pod",
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1858680e_b044_4fd5_9dd4_f137e30e2180.slice/cri-containerd-d8f227cc24940cfdce8d8e601f3b92242ac9661b0e83f0ea57fdea1cb6bc93ec.scope",
    ),
    (
        "cgroupfs docker pod",
        "/kubepods/besteffort/pod26ab26cd-6409-443f-a13c-fd6c231207c8/ae7a1981e064c217035e0b23979c8defd51c850d1af26fbcf148187e5b0da61c",
    ),
    (
        "CRI-O pod",
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope",
    ),
    ("host service", "/system.slice/containerd.service"),
    (
        "garbage",
        "/kubepods/burstable/pod1399d9c7-c86f-4371-8568/not-a-container-id/..//x",
    ),
];

const CGROUP_V1_HYBRID: &str = include_str!("../fuzz/seeds/proc_files/cgroup-v1-pod");
const CGROUP_V2: &str = include_str!("../fuzz/seeds/proc_files/cgroup-v2-pod");
const STAT: &str = include_str!("../fuzz/seeds/proc_files/stat-zombie");
const STATUS: &str = include_str!("../fuzz/seeds/proc_files/status-sleep");
const SCHED: &str = include_str!("../fuzz/seeds/proc_files/sched-zombie");
const POLICY: &str = include_str!("../fuzz/seeds/policy/deployed.yaml");

fn bench(c: &mut Criterion) {
    for (name, path) in PATHS {
        c.bench_function(&format!("cgroup path: {name}"), |b| {
            b.iter(|| cgroup_path::parse(black_box(path)))
        });
    }
    for (name, text) in [("v1 hybrid", CGROUP_V1_HYBRID), ("v2", CGROUP_V2)] {
        c.bench_function(&format!("/proc/<pid>/cgroup {name}: pick (procfs)"), |b| {
            b.iter(|| cgroups::pick(black_box(text), Prefer::V2))
        });
    }
    c.bench_function("/proc/<pid>/stat (procfs)", |b| {
        b.iter(|| Stat::from_read(black_box(STAT.as_bytes())).unwrap())
    });
    c.bench_function("/proc/<pid>/status (procfs)", |b| {
        b.iter(|| Status::from_read(black_box(STATUS.as_bytes())).unwrap())
    });
    c.bench_function("/proc/<pid>/sched: parse_exec_start", |b| {
        b.iter(|| parse_exec_start(black_box(SCHED)).unwrap())
    });
    c.bench_function("Policy::parse (deployed policy)", |b| {
        b.iter(|| Policy::parse(black_box(POLICY)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
