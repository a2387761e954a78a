//! Hot-path cost of the tracker: applying exit/free pairs (a reaped child) and scraping.

use criterion::{Criterion, criterion_group, criterion_main};
use zombie_daemon::tracker::{Comm, Event, Exit, ExitFlags, Origin, ProcKey, Tracker};

fn exit(pid: u32, at: u64) -> Event {
    Event::Exit(Exit {
        key: ProcKey {
            pid,
            start_ticks: u64::from(pid),
        },
        at,
        ppid: 1,
        parent_start_ticks: 1,
        comm: Comm::new("worker"),
        parent_comm: Comm::new("parent"),
        wait_status: 0,
        cgroup_id: 1,
        flags: ExitFlags::default(),
        origin: Origin::default(),
    })
}

fn bench(c: &mut Criterion) {
    c.bench_function("exit+free (promptly reaped child)", |b| {
        let mut t = Tracker::default();
        let mut pid = 0u32;
        b.iter(|| {
            pid = pid.wrapping_add(1);
            t.apply(&exit(pid, 1));
            t.apply(&Event::Free {
                key: ProcKey {
                    pid,
                    start_ticks: u64::from(pid),
                },
                at: 2,
            });
        });
    });
    c.bench_function("oldest age over 10k zombies", |b| {
        let mut t = Tracker::default();
        for pid in 0..10_000 {
            t.apply(&exit(pid, 1));
        }
        b.iter(|| t.oldest_age_ns(5));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
