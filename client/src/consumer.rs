//! Reading one partition.
//!
//! A consumer catching up keeps one fetch ahead of the application (`prefetch`, on by
//! default): as soon as an answer shows more records below the high watermark, the next fetch
//! goes out on a task of its own, which also checks and decodes its batches, while the
//! application handles the records just returned. Catch-up then costs the application the
//! decode of nothing and the wait for no round trip. At the end of the log nothing is fetched
//! ahead: a tailing consumer long-polls only when it asks. What is fetched ahead is at most
//! one answer per consumer (`max_bytes`, or the server's bound), and a seek drops it.

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
    /// Keep one fetch in flight ahead of the application while it catches up (see the
    /// module docs).
    pub prefetch: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_bytes: 0,
            wait: Duration::from_millis(500),
            verify_crc: true,
            prefetch: true,
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
    /// The fetch sent ahead, if any.
    ahead: Option<Ahead>,
}

/// A fetch sent ahead of the application, for the records from `from`.
#[derive(Debug)]
struct Ahead {
    from: LogOffset,
    task: tokio::task::JoinHandle<Result<Fetched, ClientError>>,
}

/// A fetch answer, checked and decoded.
#[derive(Debug)]
struct Fetched {
    records: Vec<Record>,
    next: LogOffset,
    high_watermark: LogOffset,
}

impl Drop for PartitionConsumer {
    fn drop(&mut self) {
        self.drop_ahead();
    }
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
            ahead: None,
        }
    }

    /// Moves to the first record with timestamp >= `ts` (or the end if none).
    pub async fn seek_to_timestamp(&mut self, ts: TimestampMicros) -> Result<(), ClientError> {
        let offsets = self.client.list_offsets(&self.log, Some(ts)).await?;
        let p = offsets
            .iter()
            .find(|o| o.partition == self.partition)
            .ok_or_else(|| ClientError::Decode("partition missing from ListOffsets".into()))?;
        self.seek(LogOffset(p.offset_for_timestamp.unwrap_or(p.latest)));
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
        self.drop_ahead();
        self.next = offset;
    }

    fn drop_ahead(&mut self) {
        if let Some(a) = self.ahead.take() {
            a.task.abort();
        }
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
    ///
    /// Cancel-safe: a poll dropped before it returns leaves the position where it was, and
    /// the next poll reads the same records.
    pub async fn poll(&mut self) -> Result<Vec<Record>, ClientError> {
        if self.next == LogOffset::MAX {
            self.next = self.end_offset().await?;
        }
        let fetched = match self.ahead.take() {
            Some(a) if a.from == self.next => a
                .task
                .await
                .map_err(|e| ClientError::Decode(format!("the fetch sent ahead failed: {e}")))??,
            stale => {
                if let Some(a) = stale {
                    a.task.abort();
                }
                fetch_decoded(
                    self.client.clone(),
                    self.request(),
                    self.next,
                    self.config.verify_crc,
                )
                .await?
            }
        };
        self.high_watermark = fetched.high_watermark;
        self.next = fetched.next;
        if self.config.prefetch && !fetched.records.is_empty() && self.next < self.high_watermark {
            let task = tokio::spawn(fetch_decoded(
                self.client.clone(),
                self.request(),
                self.next,
                self.config.verify_crc,
            ));
            self.ahead = Some(Ahead {
                from: self.next,
                task,
            });
        }
        Ok(fetched.records)
    }

    /// The fetch of the records from the current position.
    fn request(&self) -> v1::FetchRequest {
        v1::FetchRequest {
            log: self.log.clone(),
            partition: self.partition,
            start: Some(v1::fetch_request::Start::Offset(self.next.0)),
            max_records: 0,
            max_bytes: self.config.max_bytes,
            wait_ms: u32::try_from(self.config.wait.as_millis()).unwrap_or(u32::MAX),
            format: v1::FetchFormat::Batches as i32,
            max_response_bytes: None,
        }
    }
}

/// Sends `req` and checks and decodes the answer's records from `from`.
async fn fetch_decoded(
    client: Client,
    req: v1::FetchRequest,
    from: LogOffset,
    verify_crc: bool,
) -> Result<Fetched, ClientError> {
    let resp = client.fetch(req).await?;
    let high_watermark = LogOffset(resp.high_watermark);
    let (records, next) = records_from(resp, from, verify_crc)?;
    Ok(Fetched {
        records,
        next,
        high_watermark,
    })
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
