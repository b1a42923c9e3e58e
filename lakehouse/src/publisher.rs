//! The node's table publisher: archive-manifest commits in, Iceberg snapshots out.
//!
//! [`ColdPartition`](pyralog_cold_tier::ColdPartition) tells the [`Publisher`] of each manifest
//! it commits; the publisher keeps the newest manifest per log partition (so a burst of
//! commits becomes one snapshot, and memory is one manifest per partition) and a background
//! task publishes them, per log, in one table commit. A failed publication is retried with
//! back-off; as the table is derived, a lost publication only delays it: the next commit of
//! any partition, or the node's next start (which offers every archived partition's
//! manifest), brings the table up to date.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyralog_cold_tier::{Manifest, ManifestObserver};
use pyralog_types::clock::Clock;
use pyralog_types::{LogId, PartitionId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::table::IcebergTables;

/// Back-off after a failed publication, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Hands committed manifests to the publishing task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<BTreeMap<(LogId, PartitionId), Manifest>>,
    wake: Notify,
}

impl ManifestObserver for Publisher {
    fn committed(&self, manifest: &Manifest) {
        self.offer(manifest);
    }
}

impl Publisher {
    /// Starts the publishing task on the current runtime; it stops when `cancel` fires.
    pub fn spawn(
        tables: Arc<IcebergTables>,
        clock: Arc<dyn Clock>,
        cancel: CancellationToken,
    ) -> (Publisher, tokio::task::JoinHandle<()>) {
        let inner = Arc::new(Shared {
            pending: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        });
        let task = tokio::spawn(run(inner.clone(), tables, clock, cancel));
        (Publisher { inner }, task)
    }

    /// Queues `manifest` for publication (replacing an older one of the same partition).
    pub fn offer(&self, manifest: &Manifest) {
        if manifest.version == 0 {
            return;
        }
        let key = (manifest.log.clone(), manifest.partition);
        let mut pending = self.inner.pending.lock();
        let newer = pending
            .get(&key)
            .is_none_or(|m| m.version < manifest.version);
        if newer {
            pending.insert(key, manifest.clone());
        }
        drop(pending);
        self.inner.wake.notify_one();
    }

    /// Forgets what is queued for `log` (the log was deleted).
    pub fn forget(&self, log: &LogId) {
        self.inner.pending.lock().retain(|(l, _), _| l != log);
    }

    /// Partitions waiting to be published.
    pub fn backlog(&self) -> usize {
        self.inner.pending.lock().len()
    }
}

async fn run(
    shared: Arc<Shared>,
    tables: Arc<IcebergTables>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = shared.wake.notified() => {}
        }
        // One pass over every log with queued manifests; a log whose publication fails is
        // put back and retried after the back-off (which the other logs' next publications
        // wait out too: at most `MAX_BACKOFF`).
        let mut failed = Vec::new();
        while let Some((log, manifests)) = take_one_log(&shared) {
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                r = tables.publish(&log, &manifests, clock.now_micros() / 1000) => r,
            };
            if let Err(e) = outcome {
                warn!(%log, error = %e, retry_in = ?backoff, "publishing the table failed");
                failed.push(manifests);
            }
        }
        if failed.is_empty() {
            backoff = FIRST_BACKOFF;
            continue;
        }
        for manifests in failed {
            requeue(&shared, manifests);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        shared.wake.notify_one();
    }
}

/// Puts back what failed to publish, unless a newer manifest arrived meanwhile.
fn requeue(shared: &Shared, manifests: Vec<Manifest>) {
    let mut pending = shared.pending.lock();
    for m in manifests {
        let key = (m.log.clone(), m.partition);
        if pending.get(&key).is_none_or(|p| p.version < m.version) {
            pending.insert(key, m);
        }
    }
}

/// Takes every queued manifest of the first log with any.
fn take_one_log(shared: &Shared) -> Option<(LogId, Vec<Manifest>)> {
    let mut pending = shared.pending.lock();
    let log = pending.keys().next()?.0.clone();
    let keys: Vec<_> = pending.keys().filter(|(l, _)| *l == log).cloned().collect();
    let manifests = keys.iter().filter_map(|k| pending.remove(k)).collect();
    Some((log, manifests))
}
