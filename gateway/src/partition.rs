//! A partition as the gateway serves it: the hot-tier log, its cold tier (if any), and the
//! high watermark.
//!
//! Offsets below the hot log's start are read from the cold tier; the log's earliest offset
//! is the cold tier's start when it has one. A consumer following `next_offset` crosses
//! from cold to hot without noticing: the archive covers everything below the hot start
//! (local retention deletes only archived segments).
//!
//! The high watermark (HW) is what consumers may see. On a single node it is the log end,
//! except under `fsync = every_batch`, where it is the *durable* end: a consumer never sees a
//! record that a crash could take back, so an offset never comes to mean two records.
//! Replication (a later issue) replaces this rule with "held by a write quorum of the ISR".

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use bytes::Bytes;
use pyralog_cold_tier::{ColdError, ColdPartition, ColdRead};
use pyralog_compactor::CompactionReport;
use pyralog_hot_tier::replication::LeaderState;
use pyralog_hot_tier::{AppendInfo, PartitionLog, ReadResult};
use pyralog_types::{Epoch, FsyncPolicy, LogOffset, NodeId, TimestampMicros};
use tokio::sync::watch;

use crate::error::GatewayError;

/// What this node does for a partition.
#[derive(Debug)]
pub(crate) enum Role {
    /// Single-node mode (no controller): the only replica, leading in its epoch.
    Standalone,
    /// Leads the partition in the current epoch; the state tracks its followers.
    Leader(Box<LeaderState>),
    /// Copies the leader, whose client listener is at `address` (for redirects) and
    /// cluster listener at `cluster_address` (to fetch from).
    Follower {
        leader: NodeId,
        address: String,
        cluster_address: String,
    },
    /// Not a replica here, or no leader right now (`leader` says where to go, if known).
    Elsewhere { leader: Option<(NodeId, String)> },
}

#[derive(Debug)]
pub(crate) struct RoleState {
    pub(crate) epoch: Epoch,
    pub(crate) role: Role,
}

impl RoleState {
    /// The error a request that needs the leader gets here.
    pub(crate) fn not_leader(&self) -> GatewayError {
        let leader = match &self.role {
            Role::Follower { address, .. } => Some(address.clone()),
            Role::Elsewhere { leader } => leader.as_ref().map(|(_, a)| a.clone()),
            Role::Standalone | Role::Leader(_) => None,
        };
        GatewayError::NotLeader {
            detail: match &leader {
                Some(a) => format!("the leader of epoch {} is at {a}", self.epoch),
                None => format!("no leader known for epoch {}", self.epoch),
            },
            leader,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Partition {
    log: Arc<PartitionLog>,
    fsync: FsyncPolicy,
    role: parking_lot::Mutex<RoleState>,
    /// Bumped at every role or epoch change, so waiters for replication notice a lost
    /// leadership at once.
    role_changes: watch::Sender<u64>,
    hw: watch::Sender<LogOffset>,
    cold: Option<Arc<ColdPartition>>,
    /// Clustered: the local log was moved up to the archive's end at open (a replaced or
    /// wiped disk). As leader, it first asks the controller for an epoch newer than the
    /// archive's (see the reconciler).
    pub(crate) behind_archive: std::sync::atomic::AtomicBool,
    /// Held for a whole compaction pass (one pass per partition at a time); its content is
    /// what `compaction status` reports.
    pub(crate) compaction: tokio::sync::Mutex<CompactionState>,
    /// A damaged local segment the archiver found, while it stays damaged (`logs describe`,
    /// `pyralog_corrupt_segments`).
    pub(crate) corrupt: parking_lot::Mutex<Option<CorruptState>>,
    /// Set by `logs repair` before this replica leaves the ISR: the offset to cut at, and the
    /// epoch it was asked in. Only a follower task of a newer epoch (this replica out of the
    /// ISR) cuts, before it fetches (see `FollowerTask::truncate`).
    pub(crate) repair_from: parking_lot::Mutex<Option<(LogOffset, Epoch)>>,
}

/// A damaged local segment, and when the archiver reads it again: rereading a damaged
/// segment every `archive_interval` would cost a segment's reads and a log line each time, so
/// the retry backs off (doubling, up to [`CORRUPT_RETRY_MAX`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CorruptState {
    pub(crate) segment: pyralog_compactor::CorruptSegment,
    pub(crate) backoff: Duration,
    pub(crate) retry_at: tokio::time::Instant,
}

/// The longest wait between two reads of a damaged segment by the archiver.
pub(crate) const CORRUPT_RETRY_MAX: Duration = Duration::from_secs(3600);

/// What the compactor has done for a partition since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionState {
    pub runs: u64,
    pub last_run_at: Option<TimestampMicros>,
    pub last_duration: Duration,
    pub last: Option<CompactionReport>,
    pub last_error: Option<String>,
    /// One past the last offset a pass has covered.
    pub cleaned_through: Option<LogOffset>,
    pub bytes_reclaimed: u64,
    pub segments_rewritten: u64,
}

/// Runs blocking hot-tier work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GatewayError> + Send + 'static,
) -> Result<T, GatewayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GatewayError::Internal(format!("blocking task failed: {e}")))?
}

impl Partition {
    /// A partition starting in `role`. Standalone, whatever survived the last shutdown is on
    /// disk now, durable and visible; replicated, nothing is visible until the leader says
    /// what the whole ISR holds (the local tail may yet be truncated).
    pub(crate) fn new(
        log: PartitionLog,
        fsync: FsyncPolicy,
        epoch: Epoch,
        role: Role,
        cold: Option<ColdPartition>,
    ) -> Self {
        let hw = match role {
            Role::Standalone => log.end_offset(),
            _ => log.start_offset(),
        };
        Partition {
            log: Arc::new(log),
            fsync,
            role: parking_lot::Mutex::new(RoleState { epoch, role }),
            role_changes: watch::Sender::new(0),
            hw: watch::Sender::new(hw),
            cold: cold.map(Arc::new),
            behind_archive: std::sync::atomic::AtomicBool::new(false),
            compaction: tokio::sync::Mutex::new(CompactionState::default()),
            corrupt: parking_lot::Mutex::new(None),
            repair_from: parking_lot::Mutex::new(None),
        }
    }

    pub(crate) fn cold(&self) -> Option<&Arc<ColdPartition>> {
        self.cold.as_ref()
    }

    /// The first readable offset, on either tier.
    pub(crate) fn earliest(&self) -> LogOffset {
        let hot = self.log.start_offset();
        self.cold
            .as_ref()
            .and_then(|c| c.start_offset())
            .map_or(hot, |c| c.min(hot))
    }

    pub(crate) fn log(&self) -> &Arc<PartitionLog> {
        &self.log
    }

    pub(crate) fn epoch(&self) -> Epoch {
        self.role.lock().epoch
    }

    /// Whether this node leads the partition (standalone counts): leaders alone archive,
    /// compact and apply retention.
    pub(crate) fn leads(&self) -> bool {
        matches!(self.role.lock().role, Role::Standalone | Role::Leader(_))
    }

    pub(crate) fn role(&self) -> parking_lot::MutexGuard<'_, RoleState> {
        self.role.lock()
    }

    /// Replaces the role (the cluster reconciler's job); waiters see the change.
    pub(crate) fn set_role(&self, epoch: Epoch, role: Role) {
        *self.role.lock() = RoleState { epoch, role };
        self.role_changes.send_modify(|g| *g += 1);
    }

    pub(crate) fn subscribe_roles(&self) -> watch::Receiver<u64> {
        self.role_changes.subscribe()
    }

    pub(crate) fn fsync_policy(&self) -> FsyncPolicy {
        self.fsync
    }

    pub(crate) fn high_watermark(&self) -> LogOffset {
        *self.hw.borrow()
    }

    pub(crate) fn start_offset(&self) -> LogOffset {
        self.log.start_offset()
    }

    /// Moves a follower's HW back to its end after `logs repair` cut its log: what it no
    /// longer holds, it must not offer.
    pub(crate) fn lower_hw(&self, to: LogOffset) {
        self.hw.send_if_modified(|cur| {
            if to < *cur {
                *cur = to;
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn advance_hw(&self, to: LogOffset) {
        self.hw.send_if_modified(|cur| {
            if to > *cur {
                *cur = to;
                true
            } else {
                false
            }
        });
    }

    /// Appends a validated batch as the leader (or the standalone node); returns once it is
    /// in the local log (and durable if the policy says): [`Partition::write`] then
    /// [`Partition::settle`].
    pub(crate) async fn append(
        &self,
        batch: Bytes,
        wait_for_isr: bool,
    ) -> Result<(AppendInfo, Epoch), GatewayError> {
        let (info, epoch) = self.write(batch, wait_for_isr).await?;
        self.settle(&info, epoch).await?;
        Ok((info, epoch))
    }

    /// The first half of an append: writes the batch to the local log (offsets assigned, not
    /// yet durable, not yet visible to consumers). `wait_for_isr` asks for the
    /// `min_in_sync_replicas` check first: writes that will wait for the ISR fail fast with
    /// `NOT_ENOUGH_REPLICAS` instead of timing out. Writes of one partition are stored in the
    /// order their `write` calls are made.
    pub(crate) async fn write(
        &self,
        batch: Bytes,
        wait_for_isr: bool,
    ) -> Result<(AppendInfo, Epoch), GatewayError> {
        let epoch = {
            let r = self.role.lock();
            match &r.role {
                Role::Standalone => r.epoch,
                Role::Leader(state) => {
                    if wait_for_isr {
                        state
                            .check_in_sync(std::time::Instant::now())
                            .map_err(|e| GatewayError::NotEnoughReplicas(e.to_string()))?;
                    }
                    r.epoch
                }
                Role::Follower { .. } | Role::Elsewhere { .. } => return Err(r.not_leader()),
            }
        };
        let log = self.log.clone();
        let info = blocking(move || Ok(log.append(batch, epoch)?)).await?;
        Ok((info, epoch))
    }

    /// The second half of an append: makes the batch durable if the fsync policy says so
    /// (concurrent settles of one partition share an fsync), then lets the HW cover it
    /// (standalone) or counts it toward the HW (leader). Settles may finish in any order.
    pub(crate) async fn settle(&self, info: &AppendInfo, epoch: Epoch) -> Result<(), GatewayError> {
        let end = if self.fsync == FsyncPolicy::EveryBatch {
            let log = self.log.clone();
            let target = info.end_offset;
            blocking(move || Ok(log.flush_to(target)?)).await?
        } else {
            info.end_offset
        };
        let hw = {
            let mut r = self.role.lock();
            let same_epoch = r.epoch == epoch;
            match &mut r.role {
                Role::Standalone => Some(end),
                Role::Leader(state) if same_epoch => state.on_append(end),
                _ => None,
            }
        };
        if let Some(hw) = hw {
            self.advance_hw(hw);
        }
        Ok(())
    }

    /// Waits until the HW covers `end` (every ISR member holds everything below it). Fails
    /// with `LeadershipMoved` if this node stops leading `epoch` first, and `TIMEOUT` after
    /// `timeout`: never a success the ISR did not confirm, and never `NOT_LEADER` for a
    /// write that was appended (that would invite a resend).
    pub(crate) async fn wait_replicated(
        &self,
        end: LogOffset,
        epoch: Epoch,
        timeout: Duration,
    ) -> Result<(), GatewayError> {
        let mut hw = self.hw.subscribe();
        let mut roles = self.role_changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *hw.borrow_and_update() >= end {
                return Ok(());
            }
            {
                let r = self.role.lock();
                let leading = matches!(r.role, Role::Leader(_) | Role::Standalone);
                if !leading || r.epoch != epoch {
                    let now = match r.not_leader() {
                        GatewayError::NotLeader { detail, .. } => detail,
                        other => other.to_string(),
                    };
                    return Err(GatewayError::LeadershipMoved(now));
                }
            }
            tokio::select! {
                _ = hw.changed() => {}
                _ = roles.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return Err(GatewayError::Timeout(timeout)),
            }
        }
    }

    /// Waits until the HW moves past `offset` or `wait` elapses; returns the HW.
    pub(crate) async fn wait_beyond(&self, offset: LogOffset, wait: Duration) -> LogOffset {
        let mut rx = self.hw.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|hw| *hw > offset)).await;
        let hw = *rx.borrow();
        hw
    }

    pub(crate) async fn read(
        &self,
        from: LogOffset,
        max_bytes: usize,
    ) -> Result<ReadResult, GatewayError> {
        let log = self.log.clone();
        let mut limit = self.high_watermark();
        if log.is_ledger() {
            // A ledger replica whose records no longer hash to its chain (altered on disk)
            // serves nothing from the damaged batch on until it is repaired: the records
            // before it are intact, the others may not be.
            if let Some(c) = self.corrupt.lock().as_ref() {
                let at = c.segment.offset;
                if from >= at {
                    return Err(GatewayError::CorruptData(format!(
                        "offset {from}: this replica's copy is damaged from offset {at} ({}); \
                         read from another replica or repair it (pyralog logs repair)",
                        c.segment.detail
                    )));
                }
                limit = limit.min(at);
            }
        }
        blocking(move || Ok(log.read(from, max_bytes, limit)?)).await
    }

    /// Reads archived batches from `from` (below the hot start). An empty answer whose
    /// `next_offset` is the hot start means nothing is archived at or after `from`.
    pub(crate) async fn read_cold(
        &self,
        from: LogOffset,
        max_bytes: usize,
    ) -> Result<ReadResult, GatewayError> {
        let read = self
            .read_cold_as(from, |cold| async move { cold.read(from, max_bytes).await })
            .await?;
        Ok(ReadResult {
            batches: read.batches,
            next_offset: read.next_offset,
        })
    }

    /// [`Partition::read_cold`] as Arrow record batches, straight from the decoded
    /// Parquet columns.
    pub(crate) async fn read_cold_columns(
        &self,
        from: LogOffset,
        max_bytes: usize,
    ) -> Result<ColdRead<Vec<RecordBatch>>, GatewayError> {
        self.read_cold_as(from, |cold| async move {
            cold.read_columns(from, max_bytes).await
        })
        .await
    }

    async fn read_cold_as<'a, B, F, Fut>(
        &'a self,
        from: LogOffset,
        read: F,
    ) -> Result<ColdRead<B>, GatewayError>
    where
        B: Default,
        F: FnOnce(&'a ColdPartition) -> Fut,
        Fut: std::future::Future<Output = Result<Option<ColdRead<B>>, ColdError>>,
    {
        let hot_start = self.log.start_offset();
        let nothing = |next_offset| ColdRead {
            batches: B::default(),
            next_offset,
            record_count: 0,
        };
        let Some(cold) = &self.cold else {
            return Ok(nothing(hot_start));
        };
        let read = match read(cold).await {
            // Retention removed it between the range check and the read.
            Err(ColdError::BelowStart { requested, .. }) => {
                return Err(GatewayError::OffsetOutOfRange {
                    requested: requested.0,
                    earliest: self.earliest(),
                    latest: self.high_watermark(),
                })
            }
            other => other.map_err(cold_error)?,
        };
        match read {
            Some(r) if r.record_count > 0 => Ok(r),
            Some(r) => Ok(nothing(r.next_offset.min(hot_start).max(from))),
            None => {
                // Nothing archived at or after `from`. Retention may have emptied the archive
                // since the caller's range check: out of range, never a silent skip.
                let earliest = self.earliest();
                if from < earliest {
                    return Err(GatewayError::OffsetOutOfRange {
                        requested: from.0,
                        earliest,
                        latest: self.high_watermark(),
                    });
                }
                Ok(nothing(hot_start.max(from)))
            }
        }
    }

    pub(crate) async fn offset_for_timestamp(
        &self,
        ts: TimestampMicros,
    ) -> Result<Option<LogOffset>, GatewayError> {
        // The archive holds a prefix of the log, so its first match is the log's first.
        if let Some(cold) = &self.cold {
            if let Some(o) = cold.offset_for_timestamp(ts).await.map_err(cold_error)? {
                return Ok(Some(o));
            }
        }
        let log = self.log.clone();
        let hw = self.high_watermark();
        let found = blocking(move || Ok(log.offset_for_timestamp(ts)?)).await?;
        Ok(found.filter(|o| *o < hw))
    }

    pub(crate) async fn roll(&self) -> Result<(), GatewayError> {
        let log = self.log.clone();
        blocking(move || Ok(log.roll()?)).await
    }

    /// Rolls the active segment if it is older than `segment_ms`.
    pub(crate) async fn roll_if_due(&self) -> Result<(), GatewayError> {
        let log = self.log.clone();
        blocking(move || {
            log.roll_if_due()?;
            Ok(())
        })
        .await
    }

    /// fsyncs what was appended so far (the `fsync = "<interval>"` policy's ticker).
    pub(crate) async fn flush(&self) -> Result<(), GatewayError> {
        let log = self.log.clone();
        blocking(move || {
            log.flush()?;
            Ok(())
        })
        .await
    }
}

/// A cold-tier failure as the caller should see it: retriable store trouble, or corrupt data.
pub(crate) fn cold_error(e: ColdError) -> GatewayError {
    match e {
        ColdError::Corrupt { .. } => GatewayError::CorruptData(e.to_string()),
        other => GatewayError::Storage(format!("cold tier: {other}")),
    }
}
