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

use bytes::Bytes;
use pyralog_cold_tier::{ColdError, ColdPartition};
use pyralog_compactor::CompactionReport;
use pyralog_hot_tier::{AppendInfo, PartitionLog, ReadResult};
use pyralog_types::{Epoch, FsyncPolicy, LogOffset, TimestampMicros};
use tokio::sync::watch;

use crate::error::GatewayError;

#[derive(Debug)]
pub(crate) struct Partition {
    log: Arc<PartitionLog>,
    fsync: FsyncPolicy,
    epoch: Epoch,
    hw: watch::Sender<LogOffset>,
    cold: Option<Arc<ColdPartition>>,
    /// Held for a whole compaction pass (one pass per partition at a time); its content is
    /// what `compaction status` reports.
    pub(crate) compaction: tokio::sync::Mutex<CompactionState>,
}

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
    pub(crate) fn new(
        log: PartitionLog,
        fsync: FsyncPolicy,
        epoch: Epoch,
        cold: Option<ColdPartition>,
    ) -> Self {
        // Whatever survived the last shutdown is on disk now; make it durable and visible.
        let end = log.end_offset();
        Partition {
            log: Arc::new(log),
            fsync,
            epoch,
            hw: watch::Sender::new(end),
            cold: cold.map(Arc::new),
            compaction: tokio::sync::Mutex::new(CompactionState::default()),
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
        self.epoch
    }

    pub(crate) fn high_watermark(&self) -> LogOffset {
        *self.hw.borrow()
    }

    pub(crate) fn start_offset(&self) -> LogOffset {
        self.log.start_offset()
    }

    fn advance_hw(&self, to: LogOffset) {
        self.hw.send_if_modified(|cur| {
            if to > *cur {
                *cur = to;
                true
            } else {
                false
            }
        });
    }

    /// Appends a validated batch; returns once it is visible (and durable if the policy says).
    pub(crate) async fn append(&self, batch: Bytes) -> Result<AppendInfo, GatewayError> {
        let log = self.log.clone();
        let epoch = self.epoch;
        let every_batch = self.fsync == FsyncPolicy::EveryBatch;
        let (info, durable) = blocking(move || {
            let info = log.append(batch, epoch)?;
            let durable = if every_batch {
                Some(log.flush()?)
            } else {
                None
            };
            Ok((info, durable))
        })
        .await?;
        self.advance_hw(durable.unwrap_or(info.end_offset));
        Ok(info)
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
        let limit = self.high_watermark();
        blocking(move || Ok(log.read(from, max_bytes, limit)?)).await
    }

    /// Reads archived batches from `from` (below the hot start). An empty answer whose
    /// `next_offset` is the hot start means nothing is archived at or after `from`.
    pub(crate) async fn read_cold(
        &self,
        from: LogOffset,
        max_bytes: usize,
    ) -> Result<ReadResult, GatewayError> {
        let hot_start = self.log.start_offset();
        let Some(cold) = &self.cold else {
            return Ok(ReadResult {
                batches: Bytes::new(),
                next_offset: hot_start,
            });
        };
        let read = match cold.read(from, max_bytes).await {
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
            Some(r) if !r.batches.is_empty() => Ok(ReadResult {
                batches: r.batches,
                next_offset: r.next_offset,
            }),
            Some(r) => Ok(ReadResult {
                batches: Bytes::new(),
                next_offset: r.next_offset.min(hot_start).max(from),
            }),
            None => Ok(ReadResult {
                batches: Bytes::new(),
                next_offset: hot_start.max(from),
            }),
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
