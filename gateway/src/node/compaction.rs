//! The node's compactor tasks and retention: passes over the partitions this node leads.
//!
//! One ticker (`compaction.check_interval`) runs every log whose `compaction_interval` has
//! passed; `pyralog compaction run` runs a log at once. A partition's pass holds its
//! compaction lock, so the ticker and an admin request never compact it concurrently; a
//! standalone `pyralog compactor` on the same bucket is fenced by the manifest's conditional
//! commits instead (a pass whose manifest moved commits nothing).

use std::sync::Arc;
use std::time::Instant;

use pyralog_compactor::{
    apply_retention, compact_partition, Archive, ColdTarget, CompactOptions, CompactTarget,
    CompactionReport,
};
use pyralog_types::{CompactionMode, LogOffset, PartitionId};
use tracing::{info, warn};

use super::{Node, OpenLog};
use crate::error::GatewayError;
use crate::metrics::LogLabels;
use crate::partition::{CompactionState, Partition};

/// One partition's compaction state, as `compaction status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCompaction {
    pub partition: PartitionId,
    pub mode: CompactionMode,
    pub state: CompactionState,
    /// Offsets between the compacted range and the high watermark.
    pub lag_records: u64,
}

impl Node {
    /// The compaction ticker (off when `compaction.enabled` is false).
    pub(super) fn spawn_compactor(self: &Arc<Self>) {
        if !self.config.compaction.enabled {
            return;
        }
        let node = Arc::downgrade(self);
        self.spawn_ticker(
            self.config.compaction.check_interval,
            self.shutdown.clone(),
            move || {
                let node = node.clone();
                async move {
                    let Some(node) = node.upgrade() else {
                        return false;
                    };
                    let logs: Vec<_> = node.logs.read().values().cloned().collect();
                    for log in logs {
                        if log.config.compaction == CompactionMode::None {
                            continue;
                        }
                        let due = log
                            .last_compaction
                            .lock()
                            .is_none_or(|t| t.elapsed() >= log.config.compaction_interval);
                        if due {
                            node.compact_log(&log).await;
                        }
                    }
                    true
                }
            },
        );
    }

    /// Runs one pass over every partition of `log`; errors are recorded per partition.
    async fn compact_log(
        &self,
        log: &OpenLog,
    ) -> Vec<(PartitionId, Result<CompactionReport, String>)> {
        *log.last_compaction.lock() = Some(tokio::time::Instant::now());
        let mut out = Vec::with_capacity(log.partitions.len());
        for (i, p) in log.partitions.iter().enumerate() {
            if !p.leads() {
                // Clustered, the leader compacts (cold tier and its own segments).
                continue;
            }
            let res = self.compact_partition(log, i as PartitionId, p).await;
            out.push((i as PartitionId, res));
        }
        let lag: u64 = {
            let mut lag = 0u64;
            for p in &log.partitions {
                lag += lag_of(p, &*p.compaction.lock().await);
            }
            lag
        };
        self.metrics
            .compaction_lag_records
            .get_or_create(&LogLabels {
                log: log.id.to_string(),
            })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        out
    }

    async fn compact_partition(
        &self,
        log: &OpenLog,
        id: PartitionId,
        p: &Arc<Partition>,
    ) -> Result<CompactionReport, String> {
        let mut state = p.compaction.lock().await;
        let started = Instant::now();
        let now = self.clock.now_micros();
        let cold_tier = self.cold.as_deref();
        let cold = match (cold_tier, p.cold()) {
            (Some(tier), Some(cp)) => {
                // A standalone compactor may have swapped segments since we last looked.
                if let Err(e) = cp.refresh().await {
                    warn!(log = %log.id, partition = id, error = %e, "manifest reload failed");
                }
                Some(ColdTarget {
                    partition: cp,
                    store: tier.store.as_ref(),
                    layout: &tier.layout,
                })
            }
            _ => None,
        };
        let target = CompactTarget {
            log: &log.id,
            partition: id,
            config: &log.config,
            hot: Some((p.log(), p.high_watermark())),
            cold,
        };
        let opts = CompactOptions {
            previous: state
                .last
                .as_ref()
                .filter(|r| !r.stale)
                .map(CompactionReport::as_previous),
            ..CompactOptions::default()
        };
        let res = compact_partition(target, now, &opts).await;
        state.runs += 1;
        state.last_run_at = Some(now);
        state.last_duration = started.elapsed();
        self.metrics.compaction_runs.inc();
        match res {
            Ok(r) => {
                state.last_error = None;
                state.cleaned_through = r.cleaned_through.max(state.cleaned_through);
                state.bytes_reclaimed += r.bytes_reclaimed();
                state.segments_rewritten += r.segments_rewritten();
                if !r.skipped {
                    state.last = Some(r.clone());
                }
                self.metrics
                    .compaction_bytes_reclaimed
                    .inc_by(r.bytes_reclaimed());
                self.metrics
                    .compaction_segments_rewritten
                    .inc_by(r.segments_rewritten());
                if r.segments_rewritten() + r.cold_segments_removed > 0 {
                    info!(log = %log.id, partition = id, records_read = r.records_read,
                        records_before = r.records_before, records_after = r.records_after,
                        bytes_reclaimed = r.bytes_reclaimed(),
                        segments = r.segments_rewritten(), "compacted");
                }
                Ok(r)
            }
            Err(e @ pyralog_compactor::CompactorError::ObjectLock(_)) => {
                self.metrics.compaction_errors.inc();
                warn!(log = %log.id, partition = id, error = %e,
                    "compaction refused: [cold_tier] object_lock is set");
                state.last_error = Some(e.to_string());
                Err(e.to_string())
            }
            Err(e) => {
                self.metrics.compaction_errors.inc();
                warn!(log = %log.id, partition = id, error = %e,
                    retriable = e.is_retriable(), "compaction failed; will retry");
                state.last_error = Some(e.to_string());
                Err(e.to_string())
            }
        }
    }

    /// Runs a compaction pass over every partition of `name` now and waits for it.
    pub async fn run_compaction(
        &self,
        name: &str,
    ) -> Result<Vec<(PartitionId, Result<CompactionReport, String>)>, GatewayError> {
        let log = self.log(name)?;
        Ok(self.compact_log(&log).await)
    }

    /// What the compactor has done for each partition of `name`.
    pub async fn compaction_status(
        &self,
        name: &str,
    ) -> Result<Vec<PartitionCompaction>, GatewayError> {
        let log = self.log(name)?;
        let mut out = Vec::with_capacity(log.partitions.len());
        for (i, p) in log.partitions.iter().enumerate() {
            // A pass in progress holds the lock: report what the last one left.
            let state = match p.compaction.try_lock() {
                Ok(s) => s.clone(),
                Err(_) => p.compaction.lock().await.clone(),
            };
            out.push(PartitionCompaction {
                partition: i as PartitionId,
                mode: log.config.compaction,
                lag_records: lag_of(p, &state),
                state,
            });
        }
        Ok(out)
    }

    /// Total retention over both tiers, then orphan GC (see `pyralog_compactor::retention`).
    /// With `[cold_tier] object_lock`, a cut into the archive is refused (logged) and orphans
    /// are kept.
    ///
    /// Every replica applies retention to its own segments; only the leader cuts the shared
    /// archive and collects its orphans. A follower reloads the manifest first (its copy goes
    /// stale, as it never archives) and deletes only local segments already archived, by the
    /// total retention and then by `local_retention`.
    pub(super) async fn apply_retention(&self, log: &OpenLog) {
        let now = self.clock.now_micros();
        for (i, p) in log.partitions.iter().enumerate() {
            let leads = p.leads();
            let archive = match p.cold() {
                None => Archive::Absent,
                Some(c) if leads => Archive::Owned(c),
                Some(c) => match c.refresh().await {
                    Ok(()) => Archive::ReadOnly(c),
                    Err(e) => {
                        warn!(log = %log.id, partition = i, error = %e,
                            "manifest reload failed; local segments kept");
                        continue;
                    }
                },
            };
            match apply_retention(Some(p.log()), archive, log.config.retention, now).await {
                Ok(r) if r.cut.is_some() => {
                    self.metrics
                        .segments_deleted
                        .inc_by((r.deleted_local.len() + r.removed.len()) as u64);
                    info!(log = %log.id, partition = i, cold_segments = r.removed.len(),
                        local_segments = r.deleted_local.len(), new_start = %p.earliest(),
                        "retention deleted segments");
                }
                Ok(_) => {}
                Err(e) => warn!(log = %log.id, partition = i, error = %e, "retention failed"),
            }
            let (Some(cold), Some(cp)) = (&self.cold, p.cold()) else {
                continue;
            };
            if !leads {
                // The leader applies local retention after each upload; a follower here.
                if let Some(end) = cp.end_offset() {
                    let (hot, local) = (p.log().clone(), log.config.local_retention);
                    match tokio::task::spawn_blocking(move || hot.enforce_retention(local, end))
                        .await
                    {
                        Ok(Ok(deleted)) => {
                            self.metrics.segments_deleted.inc_by(deleted.len() as u64);
                        }
                        Ok(Err(e)) => {
                            warn!(log = %log.id, partition = i, error = %e, "local retention failed")
                        }
                        Err(e) => {
                            warn!(log = %log.id, partition = i, error = %e, "local retention task failed")
                        }
                    }
                }
                continue;
            }
            if cp.write_once().is_some() {
                // Write-once storage: every orphan is a locked object. A DELETE would only
                // hide it behind a delete marker (the locked version stays, billed, until its
                // retain-until date) and WORM bucket policies often deny it: orphans are kept.
                continue;
            }
            // GC deletes what the manifest does not name: it must be the latest one (a
            // standalone compactor may have committed new objects since we last looked).
            if let Err(e) = cp.refresh().await {
                warn!(log = %log.id, partition = i, error = %e, "manifest reload failed; no GC");
                continue;
            }
            let manifest = cp.manifest();
            // Objects a kept snapshot of the log's Iceberg table lists are still readable by
            // engines: not orphans yet.
            let in_table = match cold.lakehouse() {
                None => Ok(Default::default()),
                Some(l) => l.tables.referenced_keys(&log.id, i as PartitionId).await,
            };
            let in_table = match in_table {
                Ok(keys) => keys,
                Err(e) => {
                    warn!(log = %log.id, partition = i, error = %e, "Iceberg table unreadable; no GC");
                    continue;
                }
            };
            match pyralog_cold_tier::gc_orphans(
                cold.store.as_ref(),
                &cold.layout,
                &manifest,
                &in_table,
                cold.settings.orphan_grace,
                now,
            )
            .await
            {
                Ok(deleted) if !deleted.is_empty() => {
                    info!(log = %log.id, partition = i, objects = deleted.len(), "deleted orphaned objects");
                }
                Ok(_) => {}
                Err(e) => warn!(log = %log.id, partition = i, error = %e, "orphan GC failed"),
            }
        }
    }
}

fn lag_of(p: &Partition, state: &CompactionState) -> u64 {
    let from = state
        .cleaned_through
        .unwrap_or(LogOffset::ZERO)
        .max(p.earliest());
    p.high_watermark().0.saturating_sub(from.0)
}
