//! Reads: fetch across the hot and cold tiers within the response and in-flight budgets,
//! and offset lookups.

use std::time::Duration;

use arrow_array::RecordBatch;
use bytes::Bytes;
use pyralog_hot_tier::ReadResult;
use pyralog_types::{LogOffset, PartitionId, TimestampMicros};

use super::Node;
use crate::error::GatewayError;
use crate::metrics::LogLabels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStart {
    /// `u64::MAX` means "the current end" (tail the log).
    Offset(u64),
    Timestamp(TimestampMicros),
}

#[derive(Debug, Clone)]
pub struct FetchSpec {
    pub log: String,
    pub partition: PartitionId,
    pub start: FetchStart,
    /// 0 = the node's default.
    pub max_bytes: u32,
    pub wait: Duration,
}

/// The form a fetch reads archived data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FetchForm {
    /// Hot-format batches, from either tier.
    #[default]
    Batches,
    /// Arrow columns where the archive holds the data ([`Fetched::columns`]), hot-format
    /// batches otherwise.
    Columns,
}

#[derive(Debug, Clone)]
pub struct Fetched {
    /// The offset the fetch resolved to (after timestamp lookup / tail).
    pub from: LogOffset,
    pub batches: Bytes,
    /// With [`FetchForm::Columns`], an archived read's rows as Arrow record batches (sliced
    /// from the decoded Parquet columns); `batches` is empty then.
    pub columns: Option<Vec<RecordBatch>>,
    pub next_offset: LogOffset,
    pub high_watermark: LogOffset,
    pub log_start_offset: LogOffset,
    /// This fetch's share of `fetch.max_in_flight_bytes`, held while the answer is alive.
    pub(crate) _budget: Option<crate::fetch::BudgetShare>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: PartitionId,
    pub earliest: LogOffset,
    pub latest: LogOffset,
    pub for_timestamp: Option<LogOffset>,
}

impl Node {
    pub async fn fetch(&self, spec: FetchSpec) -> Result<Fetched, GatewayError> {
        self.fetch_within(spec, None).await
    }

    /// [`Node::fetch`] for a response of at most `response_bytes`: reads no more stored bytes
    /// than that (at least one batch). Once there is data to read (after any long-poll), the
    /// fetch takes as many bytes of the node's in-flight budget as it may read, waiting for
    /// them if need be, and holds them until the returned [`Fetched`] is dropped.
    pub async fn fetch_within(
        &self,
        spec: FetchSpec,
        response_bytes: Option<usize>,
    ) -> Result<Fetched, GatewayError> {
        self.fetch_as(spec, response_bytes, FetchForm::Batches)
            .await
    }

    /// [`Node::fetch_within`], reading archived data in `form`.
    pub async fn fetch_as(
        &self,
        spec: FetchSpec,
        response_bytes: Option<usize>,
        form: FetchForm,
    ) -> Result<Fetched, GatewayError> {
        let p = self.partition(&spec.log, spec.partition)?;
        let max_bytes = match spec.max_bytes {
            0 => self.config.fetch.default_max_bytes,
            n => n.min(self.config.fetch.max_bytes),
        } as usize;
        let max_bytes = response_bytes.map_or(max_bytes, |r| max_bytes.min(r));
        let wait = spec.wait.min(self.config.fetch.max_wait);
        let mut hw = p.high_watermark();
        let from = match spec.start {
            FetchStart::Offset(u64::MAX) => hw,
            FetchStart::Offset(o) => LogOffset(o),
            FetchStart::Timestamp(ts) => p.offset_for_timestamp(ts).await?.unwrap_or(hw),
        };
        let start = p.earliest();
        // A replica's HW can trail what a consumer already read elsewhere (a follower, or a
        // restarted leader before its followers report): that is "no data yet", not an error.
        let local_end = p.log().end_offset();
        if from < start || from > hw.max(local_end) {
            return Err(GatewayError::OffsetOutOfRange {
                requested: from.0,
                earliest: start,
                latest: hw,
            });
        }
        if from >= hw && !wait.is_zero() {
            hw = p.wait_beyond(from, wait).await;
        }
        if from >= hw {
            return Ok(Fetched {
                from,
                batches: Bytes::new(),
                columns: None,
                next_offset: from,
                high_watermark: hw,
                log_start_offset: start,
                _budget: None,
            });
        }
        let budget = self.fetch_budget.take(max_bytes).await?;
        let mut columns = None;
        let read = if from < p.start_offset() && form == FetchForm::Columns {
            let cold = p.read_cold_columns(from, max_bytes).await?;
            columns = Some(cold.batches);
            ReadResult {
                batches: Bytes::new(),
                next_offset: cold.next_offset,
            }
        } else if from < p.start_offset() {
            p.read_cold(from, max_bytes).await?
        } else {
            match p.read(from, max_bytes).await {
                // Local retention moved the hot start past `from` during the read: the
                // archive holds it (or answers out of range with the log's earliest offset).
                Err(GatewayError::OffsetOutOfRange { .. })
                    if p.cold().is_some() && from < p.start_offset() =>
                {
                    p.read_cold(from, max_bytes).await?
                }
                other => other?,
            }
        };
        self.metrics
            .fetched_bytes
            .get_or_create(&LogLabels {
                log: spec.log.clone(),
            })
            .inc_by(read.batches.len() as u64 + columns.as_deref().map_or(0, columns_bytes));
        Ok(Fetched {
            from,
            batches: read.batches,
            columns,
            next_offset: read.next_offset,
            high_watermark: p.high_watermark(),
            log_start_offset: p.earliest(),
            _budget: Some(budget),
        })
    }

    pub async fn list_offsets(
        &self,
        name: &str,
        partitions: &[PartitionId],
        timestamp: Option<TimestampMicros>,
    ) -> Result<Vec<PartitionOffsets>, GatewayError> {
        let log = self.log(name)?;
        let targets: Vec<PartitionId> = if partitions.is_empty() {
            (0..log.config.partition_count).collect()
        } else {
            partitions.to_vec()
        };
        let mut out = Vec::with_capacity(targets.len());
        for id in targets {
            let p = self.partition(name, id)?;
            let for_timestamp = match timestamp {
                Some(ts) => p.offset_for_timestamp(ts).await?,
                None => None,
            };
            out.push(PartitionOffsets {
                partition: id,
                earliest: p.earliest(),
                latest: p.high_watermark(),
                for_timestamp,
            });
        }
        Ok(out)
    }
}

/// Bytes of the rows of Arrow record batches (the fetched-bytes metric's measure for
/// columns; a slice counts its rows, not the buffers it shares).
fn columns_bytes(columns: &[RecordBatch]) -> u64 {
    columns
        .iter()
        .flat_map(|rb| rb.columns())
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}
