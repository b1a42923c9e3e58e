//! A partition as the gateway serves it: the hot-tier log plus the high watermark.
//!
//! The high watermark (HW) is what consumers may see. On a single node it is the log end,
//! except under `fsync = every_batch`, where it is the *durable* end: a consumer never sees a
//! record that a crash could take back, so an offset never comes to mean two records.
//! Replication (a later issue) replaces this rule with "held by a write quorum of the ISR".

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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
    pub(crate) fn new(log: PartitionLog, fsync: FsyncPolicy, epoch: Epoch) -> Self {
        // Whatever survived the last shutdown is on disk now; make it durable and visible.
        let end = log.end_offset();
        Partition {
            log: Arc::new(log),
            fsync,
            epoch,
            hw: watch::Sender::new(end),
        }
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

    pub(crate) async fn offset_for_timestamp(
        &self,
        ts: TimestampMicros,
    ) -> Result<Option<LogOffset>, GatewayError> {
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
