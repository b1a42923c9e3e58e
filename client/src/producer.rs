//! The batching producer.
//!
//! `send` appends a record to the open batch of its partition in the caller's task (see
//! `accumulator`); a batch is sealed when it reaches `batch_bytes` or has waited `linger`.
//! Each partition has one sender task (`sender`) that sends sealed batches in order over one
//! `ProduceStream`, up to `max_in_flight` unanswered, retrying retriable errors with backoff,
//! so records of a partition are stored in the order they were sent (across retries: see
//! `sender`).
//!
//! With `enable_idempotence` the producer first gets a producer id and epoch from the cluster
//! and stamps every batch with them and the partition's next sequence number. A batch whose
//! answer was lost (a broken connection, a timeout, a leader failover) is then sent again as
//! the same bytes until `delivery_timeout`, and the partition leader appends it only once: a
//! retry of a batch already in the log is answered with the original offsets. Without it, a
//! retry after a lost answer may store the batch twice.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use pyralog_types::batch::Compression;
use pyralog_types::{AckPolicy, Header, LogOffset, PartitionId, TimestampMicros};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::ClientError;

mod accumulator;
mod sender;

use accumulator::Accumulator;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Seal a partition's batch once its encoded size reaches this.
    pub batch_bytes: usize,
    /// Seal a non-empty batch after this long even if small.
    pub linger: Duration,
    pub compression: Compression,
    pub acks: AckPolicy,
    pub request_timeout: Duration,
    /// Attempts after the first for retriable errors.
    pub retries: u32,
    pub retry_backoff: Duration,
    /// Bytes of records (their encoded size bound) accepted by `send` and not yet handed to
    /// their partition's sender; `send` waits for room, after sealing the open batches at
    /// once. A record larger than this goes alone.
    pub buffer_bytes: usize,
    /// Sealed batches queued per partition before the `send` that sealed one waits.
    pub queued_batches_per_partition: usize,
    /// Produce requests of a partition sent and not yet answered (over one `ProduceStream`,
    /// which keeps them in order; see the module doc for order across retries).
    pub max_in_flight: usize,
    /// Exactly-once appends per partition across retries (see the module doc).
    pub enable_idempotence: bool,
    /// A stable name for the idempotent producer: a new producer under the same name fences
    /// the previous one (`PRODUCER_FENCED`).
    pub producer_name: Option<String>,
    /// With idempotence: how long a batch is retried before it fails.
    pub delivery_timeout: Duration,
    /// How long a log's partition count is used before it is asked again, so records start
    /// going to partitions added since (`AddPartitions`). Keyed records then hash over the
    /// new count: a key may move to another partition.
    pub metadata_max_age: Duration,
    /// Testing only: the fraction of successful produce answers to discard as if the
    /// connection broke after the server appended (the lost-acknowledgement fault).
    #[doc(hidden)]
    pub fault_drop_acks: f64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_bytes: 1024 * 1024,
            linger: Duration::from_millis(5),
            compression: Compression::None,
            acks: AckPolicy::Leader,
            request_timeout: Duration::from_secs(30),
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            metadata_max_age: Duration::from_secs(60),
            buffer_bytes: 32 * 1024 * 1024,
            queued_batches_per_partition: 4,
            max_in_flight: 5,
            enable_idempotence: false,
            producer_name: None,
            delivery_timeout: Duration::from_secs(120),
            fault_drop_acks: 0.0,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProduceRecord {
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Defaults to the producer's wall clock.
    pub timestamp: Option<TimestampMicros>,
    /// Overrides key-based partitioning.
    pub partition: Option<PartitionId>,
    /// The partition leader stores a record whose dedup id it saw recently (default window:
    /// 10 minutes) only once; the copy's delivery reports the stored record's offset. Sent
    /// as the `pyralog.dedup_id` header. Not combined with `enable_idempotence` (the
    /// producer's sequences already make its retries safe).
    pub dedup_id: Option<String>,
}

impl ProduceRecord {
    pub fn new(key: Option<impl Into<Bytes>>, value: impl Into<Bytes>) -> Self {
        ProduceRecord {
            key: key.map(Into::into),
            value: Some(value.into()),
            ..Default::default()
        }
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: PartitionId,
    pub offset: LogOffset,
}

/// Resolves when the record is acknowledged (or finally failed).
#[derive(Debug)]
pub struct DeliveryFuture(oneshot::Receiver<Result<Delivered, ClientError>>);

impl Future for DeliveryFuture {
    type Output = Result<Delivered, ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

type Waiter = oneshot::Sender<Result<Delivered, ClientError>>;

/// A batching, retrying producer. Dropping it without `close` abandons buffered records.
pub struct Producer {
    accumulator: Arc<Accumulator>,
    /// Dropped (or sent) to stop the linger task.
    stop_linger: Option<oneshot::Sender<()>>,
    linger: JoinHandle<()>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        let accumulator = Arc::new(Accumulator::new(client, config));
        let (stop_linger, stop) = oneshot::channel();
        let linger = tokio::spawn(accumulator.clone().linger(stop));
        Producer {
            accumulator,
            stop_linger: Some(stop_linger),
            linger,
        }
    }

    /// Adds a record to its partition's batch; waits only for room in `buffer_bytes` or
    /// for the partition's sender when this record fills a batch. Await the returned future
    /// for the acknowledgement (or the record's failure).
    pub async fn send(
        &self,
        log: &str,
        record: ProduceRecord,
    ) -> Result<DeliveryFuture, ClientError> {
        let (done, rx) = oneshot::channel();
        self.accumulator.add(log, record, done).await;
        Ok(DeliveryFuture(rx))
    }

    /// Sends everything buffered and waits until every record sent so far is acknowledged
    /// or failed.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.accumulator.flush().await;
        Ok(())
    }

    /// Flushes and stops the background tasks.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.flush().await?;
        if let Some(stop) = self.stop_linger.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.linger).await;
        Ok(())
    }
}

pub(crate) struct Sealed {
    batch: Bytes,
    waiters: Vec<Waiter>,
}

pub(crate) enum Work {
    Batch(Sealed),
    Barrier(oneshot::Sender<()>),
}

/// The sequence after a batch of `count` records starting at `seq` (wraps to 0 past
/// `i32::MAX`, as the leader expects).
fn next_sequence(seq: i32, count: u32) -> i32 {
    let next = i64::from(seq) + i64::from(count);
    i32::try_from(next % (i64::from(i32::MAX) + 1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_past_i32_max() {
        assert_eq!(next_sequence(0, 10), 10);
        assert_eq!(next_sequence(i32::MAX - 1, 2), 0);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 1, 5), 3);
    }
}
