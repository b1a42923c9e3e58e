//! Reading one partition.

use std::time::Duration;

use pyralog_proto::v1;
use pyralog_types::batch::{split_batches, Batch};
use pyralog_types::{LogOffset, PartitionId, Record, TimestampMicros};

use crate::client::Client;
use crate::error::ClientError;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Bytes per fetch (0 = server default).
    pub max_bytes: u32,
    /// Long-poll wait when at the end of the log.
    pub wait: Duration,
    /// Verify each batch's CRC on arrival (end-to-end integrity).
    pub verify_crc: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_bytes: 0,
            wait: Duration::from_millis(500),
            verify_crc: true,
        }
    }
}

/// Reads one partition in order, from a position it keeps.
#[derive(Debug)]
pub struct PartitionConsumer {
    client: Client,
    log: String,
    partition: PartitionId,
    next: LogOffset,
    config: ConsumerConfig,
    high_watermark: LogOffset,
}

impl PartitionConsumer {
    /// A consumer positioned at `offset` (`LogOffset::MAX` = the end).
    pub fn new(
        client: Client,
        log: &str,
        partition: PartitionId,
        offset: LogOffset,
        config: ConsumerConfig,
    ) -> Self {
        PartitionConsumer {
            client,
            log: log.to_owned(),
            partition,
            next: offset,
            config,
            high_watermark: LogOffset::ZERO,
        }
    }

    /// Moves to the first record with timestamp >= `ts` (or the end if none).
    pub async fn seek_to_timestamp(&mut self, ts: TimestampMicros) -> Result<(), ClientError> {
        let offsets = self.client.list_offsets(&self.log, Some(ts)).await?;
        let p = offsets
            .iter()
            .find(|o| o.partition == self.partition)
            .ok_or_else(|| ClientError::Decode("partition missing from ListOffsets".into()))?;
        self.next = LogOffset(p.offset_for_timestamp.unwrap_or(p.latest));
        Ok(())
    }

    async fn end_offset(&self) -> Result<LogOffset, ClientError> {
        let offsets = self.client.list_offsets(&self.log, None).await?;
        offsets
            .iter()
            .find(|o| o.partition == self.partition)
            .map(|o| LogOffset(o.latest))
            .ok_or_else(|| ClientError::Decode("partition missing from ListOffsets".into()))
    }

    pub fn seek(&mut self, offset: LogOffset) {
        self.next = offset;
    }

    /// Offset of the next record to be returned.
    pub fn position(&self) -> LogOffset {
        self.next
    }

    /// High watermark seen in the last fetch.
    pub fn high_watermark(&self) -> LogOffset {
        self.high_watermark
    }

    /// Fetches the next records (empty if none arrived within the wait).
    pub async fn poll(&mut self) -> Result<Vec<Record>, ClientError> {
        if self.next == LogOffset::MAX {
            self.next = self.end_offset().await?;
        }
        let resp = self
            .client
            .fetch(v1::FetchRequest {
                log: self.log.clone(),
                partition: self.partition,
                start: Some(v1::fetch_request::Start::Offset(self.next.0)),
                max_records: 0,
                max_bytes: self.config.max_bytes,
                wait_ms: u32::try_from(self.config.wait.as_millis()).unwrap_or(u32::MAX),
                format: v1::FetchFormat::Batches as i32,
                max_response_bytes: None,
            })
            .await?;
        self.high_watermark = LogOffset(resp.high_watermark);
        let (out, next) = records_from(resp, self.next, self.config.verify_crc)?;
        self.next = next;
        Ok(out)
    }
}

/// The records of a fetch answer at or after `from`, and where the next fetch starts.
pub(crate) fn records_from(
    resp: v1::FetchResponse,
    from: LogOffset,
    verify_crc: bool,
) -> Result<(Vec<Record>, LogOffset), ClientError> {
    let mut out = Vec::new();
    for batch in split_batches(resp.batches) {
        let batch: Batch = batch.map_err(|e| ClientError::Decode(e.to_string()))?;
        if verify_crc {
            batch
                .verify_crc()
                .map_err(|e| ClientError::Decode(e.to_string()))?;
        }
        let records = batch
            .records()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        out.extend(records.into_iter().filter(|r| r.offset >= from));
    }
    let next = match out.last() {
        Some(r) => LogOffset(r.offset.0 + 1),
        None => LogOffset(resp.next_offset.max(from.0)),
    };
    Ok((out, next))
}
