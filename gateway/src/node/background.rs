//! The node's background tasks: interval fsync per log, segment rolls and retention, and
//! the archiver. All share one ticker shape and are tracked, so shutdown waits for them.

use std::sync::Arc;
use std::time::Duration;

use pyralog_compactor::{archive_partition, ArchiveOptions, PartitionTiers};
use pyralog_types::{FsyncPolicy, PartitionId};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Node, OpenLog};
use crate::cold::ColdTier;

impl Node {
    /// The node's one background-task shape: every `every`, run `tick` to completion, until
    /// `cancel` fires (which also abandons a tick in progress: every tick here is safe to
    /// interrupt and repeat). `tick` returning `false` ends the task. Tasks are tracked, so
    /// shutdown waits for them.
    pub(super) fn spawn_ticker<F, Fut>(
        &self,
        every: Duration,
        cancel: CancellationToken,
        mut tick: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        self.tasks.spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = interval.tick() => {}
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    go_on = tick() => if !go_on { break },
                }
            }
        });
    }

    /// Per log with an interval fsync policy: a flush ticker, stopped when the log is deleted.
    pub(super) fn spawn_log_tasks(&self, log: &Arc<OpenLog>) {
        if let FsyncPolicy::Interval(every) = log.config.fsync {
            let cancel = log.cancel.clone();
            let log = log.clone();
            self.spawn_ticker(every, cancel, move || {
                let log = log.clone();
                async move {
                    for p in &log.partitions {
                        if let Err(e) = p.flush().await {
                            warn!(log = %log.id, error = %e, "interval fsync failed");
                        }
                    }
                    true
                }
            });
        }
    }

    /// One ticker for segment rolls by age and retention.
    pub(super) fn spawn_maintenance(self: &Arc<Self>) {
        let node = Arc::downgrade(self);
        let retention_every = self.config.retention_check_interval;
        let last_retention = Arc::new(parking_lot::Mutex::new(tokio::time::Instant::now()));
        self.spawn_ticker(
            self.config.maintenance_interval,
            self.shutdown.clone(),
            move || {
                let node = node.clone();
                let last_retention = last_retention.clone();
                async move {
                    let Some(node) = node.upgrade() else {
                        return false;
                    };
                    let retention_due = {
                        let mut last = last_retention.lock();
                        let due = last.elapsed() >= retention_every;
                        if due {
                            *last = tokio::time::Instant::now();
                        }
                        due
                    };
                    let logs: Vec<_> = node.logs.read().values().cloned().collect();
                    for log in logs {
                        for p in &log.partitions {
                            if let Err(e) = p.roll_if_due().await {
                                warn!(log = %log.id, error = %e, "roll by age failed");
                            }
                        }
                        if retention_due {
                            node.apply_retention(&log).await;
                        }
                    }
                    true
                }
            },
        );
    }

    /// With a cold tier: one ticker that archives closed segments of every partition, then
    /// applies local retention below what is archived.
    pub(super) fn spawn_archiver(self: &Arc<Self>) {
        let Some(cold) = self.cold.clone() else {
            return;
        };
        let node = Arc::downgrade(self);
        let every = cold.settings.archive_interval;
        self.spawn_ticker(every, self.shutdown.clone(), move || {
            let node = node.clone();
            let cold = cold.clone();
            async move {
                let Some(node) = node.upgrade() else {
                    return false;
                };
                let logs: Vec<_> = node.logs.read().values().cloned().collect();
                for log in logs {
                    node.archive_log(&cold, &log).await;
                }
                true
            }
        });
    }

    pub(super) async fn archive_log(&self, cold: &ColdTier, log: &OpenLog) {
        let ledger = log.config.integrity == pyralog_types::Integrity::Ledger;
        let opts = ArchiveOptions {
            local_retention: Some(log.config.local_retention),
            ledger,
            ..ArchiveOptions::default()
        };
        for (i, p) in log.partitions.iter().enumerate() {
            let Some(cp) = p.cold() else { continue };
            if !p.leads() {
                // Only the leader archives (its copy is the one the ISR agreed on).
                continue;
            }
            // Never archive a local segment while compaction rewrites it: the archive could
            // get part of the old bytes and part of the new, e.g. a value without the
            // tombstone that deleted it.
            let _compacting = p.compaction.lock().await;
            let tiers = PartitionTiers {
                log: &log.id,
                partition: i as PartitionId,
                hot: p.log(),
                cold: cp,
                store: cold.store.as_ref(),
                layout: &cold.layout,
            };
            let (limit, backing_off) = self.archive_limit(p);
            match archive_partition(tiers, limit, &opts).await {
                Ok(r) => {
                    self.note_archive_corruption(
                        &log.id,
                        i as PartitionId,
                        p,
                        r.corrupt.as_ref(),
                        backing_off,
                        cold.settings.archive_interval,
                    );
                    if ledger {
                        // Every tick, not only after an upload: a checkpoint that failed, or
                        // that a crash or a failover left unwritten, is written at the next.
                        if let Err(e) = cold.checkpointer.checkpoint_if_behind(&cp.manifest()).await
                        {
                            warn!(log = %log.id, partition = i, error = %e,
                                "ledger checkpoint failed");
                        }
                    }
                    let bytes: u64 = r.uploaded.iter().map(|s| s.size_bytes).sum();
                    self.metrics
                        .segments_archived
                        .inc_by(r.uploaded.len() as u64);
                    self.metrics.archived_bytes.inc_by(bytes);
                    self.metrics
                        .segments_deleted
                        .inc_by(r.deleted_local.len() as u64);
                    if !r.uploaded.is_empty() || !r.deleted_local.is_empty() {
                        info!(log = %log.id, partition = i, uploaded = r.uploaded.len(),
                            parquet_bytes = bytes, hot_bytes = r.hot_bytes,
                            deleted_local = r.deleted_local.len(), "archived");
                    }
                }
                Err(e) => {
                    self.metrics.archive_errors.inc();
                    warn!(log = %log.id, partition = i, error = %e,
                        retriable = e.is_retriable(), "archiving failed; will retry");
                }
            }
        }
    }
}
