//! The remediation loop: reads the published snapshot, decides per the policy, acts, and
//! publishes its history for `/remediations`.

use std::{sync::Arc, time::Duration};

use axum::body::Bytes;
use tokio::{sync::watch, time::MissedTickBehavior};
use tracing::warn;

use crate::{
    attribution::names::NameCache,
    clock,
    health::Health,
    metrics::Metrics,
    remediate::{Engine, Remediator, ZombieFacts},
    snapshot::Snapshot,
};

use super::RunConfig;

/// Looks at the snapshot every `interval_seconds` and remediates per the policy. The
/// targets' /proc reads run on the blocking pool; grace periods are states of the engine,
/// never sleeps. Every action re-reads its target first (see [`Remediator`]).
pub(super) async fn run(
    cfg: RunConfig,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    history: watch::Sender<Bytes>,
    names: Option<Arc<NameCache>>,
    endpoint: Option<String>,
) {
    let cri = match endpoint {
        Some(ep) => match crate::attribution::cri::CriClient::connect(&ep).await {
            Ok(c) => Some(c),
            Err(e) => {
                warn!("remediation cannot restart containers: {e}");
                None
            }
        },
        None => None,
    };
    let engine = Engine::new(cfg.policy.clone(), cfg.remediate, std::process::id());
    let mut remediator = Remediator::new(engine, &cfg.proc_root, names, cri);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(cfg.policy.interval_seconds));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !health.is_ready() {
            continue;
        }
        let current = snapshot.borrow().clone();
        let r = remediator;
        let t = tokio::task::spawn_blocking(move || {
            // One zombie's facts at a time, straight from the store's records.
            let (zombies, now) = (&current.zombies, clock::boottime_now());
            let t = r.targets(zombies.iter().map(|e| ZombieFacts::of(&e, now)));
            (t, r)
        })
        .await;
        let targets = match t {
            Ok((targets, r)) => {
                remediator = r;
                targets
            }
            Err(e) => {
                warn!("remediation task failed: {e}");
                return;
            }
        };
        let now = clock::boottime_now();
        let wall = clock::WallClock::now().rfc3339(now);
        let decisions = remediator.run_once(&targets, now, &wall).await;
        for d in &decisions {
            metrics
                .remediations
                .with_label_values(&[d.action.as_str(), d.result.as_str()])
                .inc();
        }
        metrics.remediation_passes.inc();
        if !decisions.is_empty() {
            let json = serde_json::to_vec(remediator.history()).unwrap_or_else(|_| b"[]".to_vec());
            history.send_replace(Bytes::from(json));
        }
    }
}
