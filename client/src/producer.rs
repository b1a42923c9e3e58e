//! The batching producer.
//!
//! `send` hands a record to an accumulator task (a bounded channel gives backpressure). The
//! accumulator appends it to the open batch of its partition and seals the batch when it
//! reaches `batch_bytes` or has waited `linger`. Each partition has one sender task
//! (`sender`) that sends sealed batches in order over one `ProduceStream`, up to
//! `max_in_flight` unanswered, retrying retriable errors with backoff, so records of a
//! partition are stored in the order they were sent (across retries: see `sender`).
//!
//! With `enable_idempotence` the producer first gets a producer id and epoch from the cluster
//! and stamps every batch with them and the partition's next sequence number. A batch whose
//! answer was lost (a broken connection, a timeout, a leader failover) is then sent again as
//! the same bytes until `delivery_timeout`, and the partition leader appends it only once: a
//! retry of a batch already in the log is answered with the original offsets. Without it, a
//! retry after a lost answer may store the batch twice.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::partitioner::partition_for_key;
use pyralog_types::{AckPolicy, Clock, Header, LogOffset, PartitionId, TimestampMicros};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::ClientError;

mod sender;

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
    /// Records buffered before `send` waits.
    pub buffer_records: usize,
    /// Sealed batches queued per partition before the accumulator waits.
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
            buffer_records: 10_000,
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

enum Msg {
    Send {
        log: String,
        record: ProduceRecord,
        done: Waiter,
    },
    Flush(oneshot::Sender<()>),
}

/// A batching, retrying producer. Dropping it without `close` abandons buffered records.
#[derive(Debug)]
pub struct Producer {
    tx: mpsc::Sender<Msg>,
    task: JoinHandle<()>,
}

impl Producer {
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        let (tx, rx) = mpsc::channel(config.buffer_records.max(1));
        let task = tokio::spawn(Accumulator::new(client, config).run(rx));
        Producer { tx, task }
    }

    /// Queues a record; waits only when the buffer is full. Await the returned future for the
    /// acknowledgement.
    pub async fn send(
        &self,
        log: &str,
        record: ProduceRecord,
    ) -> Result<DeliveryFuture, ClientError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Msg::Send {
                log: log.to_owned(),
                record,
                done,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(DeliveryFuture(rx))
    }

    /// Sends everything buffered and waits until every record sent so far is acknowledged
    /// or failed.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Flushes and stops the background tasks.
    pub async fn close(self) -> Result<(), ClientError> {
        self.flush().await?;
        drop(self.tx);
        let _ = self.task.await;
        Ok(())
    }
}

struct Open {
    builder: BatchBuilder,
    waiters: Vec<Waiter>,
    deadline: Instant,
}

pub(crate) struct Sealed {
    batch: Bytes,
    waiters: Vec<Waiter>,
}

pub(crate) enum Work {
    Batch(Sealed),
    Barrier(oneshot::Sender<()>),
}

struct Accumulator {
    client: Client,
    clock: Arc<dyn Clock>,
    config: ProducerConfig,
    /// Each log's partition count and when it was asked.
    partition_counts: HashMap<String, (u32, std::time::Instant)>,
    /// Partition that keyless records of a log go to until its batch seals.
    sticky: HashMap<String, PartitionId>,
    open: HashMap<(String, PartitionId), Open>,
    senders: HashMap<(String, PartitionId), mpsc::Sender<Work>>,
    /// The idempotent producer's id and epoch, once the cluster handed them out.
    identity: Option<(i64, i16)>,
    /// The next sequence number per partition (idempotent producer).
    sequences: HashMap<(String, PartitionId), i32>,
}

impl Accumulator {
    fn new(client: Client, config: ProducerConfig) -> Self {
        Accumulator {
            client,
            clock: pyralog_types::clock::system(),
            config,
            partition_counts: HashMap::new(),
            sticky: HashMap::new(),
            open: HashMap::new(),
            senders: HashMap::new(),
            identity: None,
            sequences: HashMap::new(),
        }
    }

    /// The producer identity, asked for on first use.
    async fn identity(&mut self) -> Result<(i64, i16), ClientError> {
        if let Some(id) = self.identity {
            return Ok(id);
        }
        let id = self
            .client
            .init_producer(self.config.producer_name.as_deref())
            .await?;
        self.identity = Some(id);
        Ok(id)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            let next_deadline = self.open.values().map(|o| o.deadline).min();
            let msg = match next_deadline {
                Some(d) => tokio::select! {
                    m = rx.recv() => m,
                    _ = tokio::time::sleep_until(d) => { self.seal_expired().await; continue; }
                },
                None => rx.recv().await,
            };
            match msg {
                Some(Msg::Send { log, record, done }) => self.add(log, record, done).await,
                Some(Msg::Flush(done)) => self.flush(done).await,
                None => break,
            }
        }
        let (tx, rx) = oneshot::channel();
        self.flush(tx).await;
        let _ = rx.await;
    }

    async fn partition_count(&mut self, log: &str) -> Result<u32, ClientError> {
        let cached = self.partition_counts.get(log).copied();
        if let Some((n, at)) = cached {
            if at.elapsed() < self.config.metadata_max_age {
                return Ok(n);
            }
        }
        match self.client.describe_log(log).await {
            Ok(info) => {
                let n = info.config.partition_count;
                self.partition_counts
                    .insert(log.to_owned(), (n, std::time::Instant::now()));
                Ok(n)
            }
            // A refresh that fails keeps the count it had (sends go on); the next record
            // asks again.
            Err(_) if cached.is_some() => Ok(cached.map_or(1, |(n, _)| n)),
            Err(e) => Err(e),
        }
    }

    async fn add(&mut self, log: String, record: ProduceRecord, done: Waiter) {
        let count = match self.partition_count(&log).await {
            Ok(n) => n,
            Err(e) => {
                let _ = done.send(Err(e));
                return;
            }
        };
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p < count => p,
            (Some(p), _) => {
                let _ = done.send(Err(ClientError::InvalidArgument(format!(
                    "log {log} has {count} partitions; partition {p} does not exist"
                ))));
                return;
            }
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => *self.sticky.entry(log.clone()).or_insert(0) % count,
        };
        let timestamp = record.timestamp.unwrap_or_else(|| self.clock.now_micros());
        let mut headers = record.headers;
        if let Some(id) = record.dedup_id {
            headers.push(Header::dedup_id(id));
        }
        let new = NewRecord {
            timestamp,
            key: record.key,
            value: record.value,
            headers,
        };
        let key = (log, partition);
        // Seal first if this record would push the open batch past `batch_bytes`, so batches
        // stay within the limit (and the log's `max_batch_bytes`) unless one record alone is
        // larger.
        let grow = BatchBuilder::record_size_bound(&new);
        let full = self.open.get(&key).is_some_and(|o| {
            !o.builder.is_empty() && o.builder.estimated_size() + grow > self.config.batch_bytes
        });
        if full {
            self.seal(key.clone()).await;
        }
        let linger = self.config.linger;
        let compression = self.config.compression;
        let open = self.open.entry(key.clone()).or_insert_with(|| Open {
            builder: BatchBuilder::new(compression),
            waiters: Vec::new(),
            deadline: Instant::now() + linger,
        });
        open.builder.push(&new);
        open.waiters.push(done);
        if open.builder.estimated_size() >= self.config.batch_bytes {
            self.seal(key).await;
        }
    }

    async fn seal_expired(&mut self) {
        let now = Instant::now();
        let expired: Vec<_> = self
            .open
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.seal(key).await;
        }
    }

    async fn seal(&mut self, key: (String, PartitionId)) {
        let Some(open) = self.open.remove(&key) else {
            return;
        };
        if let Some((count, _)) = self.partition_counts.get(&key.0).copied() {
            let sticky = self.sticky.entry(key.0.clone()).or_insert(0);
            if *sticky == key.1 {
                *sticky = (key.1 + 1) % count.max(1);
            }
        }
        let mut builder = open.builder;
        if self.config.enable_idempotence {
            match self.identity().await {
                Ok((id, epoch)) => {
                    let seq = self.sequences.entry(key.clone()).or_insert(0);
                    builder = builder.with_producer(id, epoch, *seq);
                    *seq = next_sequence(*seq, builder.record_count());
                }
                Err(e) => {
                    for w in open.waiters {
                        let _ = w.send(Err(e.clone()));
                    }
                    return;
                }
            }
        }
        let sealed = match builder.build() {
            Ok(batch) => Sealed {
                batch,
                waiters: open.waiters,
            },
            Err(e) => {
                for w in open.waiters {
                    let _ = w.send(Err(ClientError::InvalidArgument(e.to_string())));
                }
                return;
            }
        };
        let sender = self.sender(&key);
        if let Err(mpsc::error::SendError(Work::Batch(s))) = sender.send(Work::Batch(sealed)).await
        {
            for w in s.waiters {
                let _ = w.send(Err(ClientError::Closed));
            }
        }
    }

    fn sender(&mut self, key: &(String, PartitionId)) -> mpsc::Sender<Work> {
        if let Some(s) = self.senders.get(key) {
            return s.clone();
        }
        let (tx, rx) = mpsc::channel(self.config.queued_batches_per_partition.max(1));
        let sender = sender::PartitionSender::new(
            self.client.clone(),
            self.config.clone(),
            key.0.clone(),
            key.1,
        );
        tokio::spawn(sender.run(rx));
        self.senders.insert(key.clone(), tx.clone());
        tx
    }

    async fn flush(&mut self, done: oneshot::Sender<()>) {
        let keys: Vec<_> = self.open.keys().cloned().collect();
        for key in keys {
            self.seal(key).await;
        }
        let mut barriers = Vec::new();
        for s in self.senders.values() {
            let (tx, rx) = oneshot::channel();
            if s.send(Work::Barrier(tx)).await.is_ok() {
                barriers.push(rx);
            }
        }
        tokio::spawn(async move {
            for b in barriers {
                let _ = b.await;
            }
            let _ = done.send(());
        });
    }
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
