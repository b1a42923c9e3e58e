//! The accumulator: the one task that takes every record `send` hands over, appends it to
//! the open batch of its partition and hands sealed batches to the partition's sender.
//!
//! It is the producer's per-record path, so per record it does only what must be done per
//! record (pick the partition, encode the record into the batch, keep its waiter):
//!
//! - records are taken from the channel in chunks: one wake-up, one clock reading (the
//!   timestamp of records without one, the metadata age) and one look at the linger timer
//!   per chunk, not per record;
//! - a log's state is found by its name without allocating (the `Arc<str>` the producer
//!   interned, compared by pointer first), a partition's state by its number;
//! - a batch's buffer starts at the size the partition's previous batch reached, so a busy
//!   partition's batch is not grown (and copied) again and again on its way to
//!   `batch_bytes`, while a quiet one does not hold `batch_bytes` per open batch;
//! - the linger timer is one `Sleep`, moved only when the earliest deadline changes.

use std::collections::HashMap;
use std::sync::Arc;

use pyralog_types::batch::{BatchBuilder, NewRecord};
use pyralog_types::partitioner::partition_for_key;
use pyralog_types::{Clock, Header, PartitionId};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{next_sequence, sender, Msg, ProduceRecord, ProducerConfig, Sealed, Waiter, Work};
use crate::client::Client;
use crate::error::ClientError;

/// Messages taken from the channel at once.
const CHUNK: usize = 256;

/// The moment a chunk of messages is handled: one clock reading for all of them.
#[derive(Clone, Copy)]
struct Now {
    micros: i64,
    /// For metadata age.
    wall: std::time::Instant,
    /// For linger deadlines.
    timer: Instant,
}

/// A batch being filled.
struct Open {
    builder: BatchBuilder,
    waiters: Vec<Waiter>,
    deadline: Instant,
}

/// What the accumulator keeps per partition.
#[derive(Default)]
struct PartitionState {
    open: Option<Open>,
    sender: Option<mpsc::Sender<Work>>,
    /// The next sequence number (idempotent producer).
    sequence: i32,
    /// Encoded bytes and records of the last sealed batch: the next batch's buffers start
    /// at this size.
    last_bytes: usize,
    last_records: usize,
}

/// What the accumulator keeps per log.
struct LogState {
    name: Arc<str>,
    partition_count: u32,
    /// When `partition_count` was asked.
    asked_at: std::time::Instant,
    /// Partition that keyless records go to until its batch seals.
    sticky: PartitionId,
    /// Indexed by partition id.
    partitions: Vec<PartitionState>,
}

impl LogState {
    fn partition(&mut self, p: PartitionId) -> &mut PartitionState {
        let i = p as usize;
        if self.partitions.len() <= i {
            self.partitions.resize_with(i + 1, PartitionState::default);
        }
        &mut self.partitions[i]
    }
}

pub(super) struct Accumulator {
    client: Client,
    clock: Arc<dyn Clock>,
    config: ProducerConfig,
    logs: Vec<LogState>,
    by_name: HashMap<Arc<str>, usize>,
    /// The log of the last record: consecutive records of one log skip the name lookup.
    last: Option<usize>,
    /// The idempotent producer's id and epoch, once the cluster handed them out.
    identity: Option<(i64, i16)>,
}

impl Accumulator {
    pub(super) fn new(client: Client, config: ProducerConfig) -> Self {
        Accumulator {
            client,
            clock: pyralog_types::clock::system(),
            config,
            logs: Vec::new(),
            by_name: HashMap::new(),
            last: None,
            identity: None,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut chunk = Vec::with_capacity(CHUNK);
        let linger = tokio::time::sleep_until(Instant::now());
        tokio::pin!(linger);
        let mut armed: Option<Instant> = None;
        loop {
            let next = self.next_deadline();
            if next != armed {
                if let Some(d) = next {
                    linger.as_mut().reset(d);
                }
                armed = next;
            }
            tokio::select! {
                // The timer first: a steady stream of records must not starve another
                // partition's linger.
                biased;
                () = &mut linger, if armed.is_some() => {
                    armed = None;
                    self.seal_expired().await;
                }
                n = rx.recv_many(&mut chunk, CHUNK) => {
                    if n == 0 {
                        break;
                    }
                    let now = self.now();
                    for msg in chunk.drain(..) {
                        match msg {
                            Msg::Send { log, record, done } => {
                                self.add(log, record, done, now).await;
                            }
                            Msg::Flush(done) => self.flush(done).await,
                        }
                    }
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        self.flush(tx).await;
        let _ = rx.await;
    }

    fn now(&self) -> Now {
        let wall = std::time::Instant::now();
        Now {
            micros: self.clock.now_micros(),
            wall,
            timer: Instant::from_std(wall),
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

    fn next_deadline(&self) -> Option<Instant> {
        self.logs
            .iter()
            .flat_map(|l| l.partitions.iter())
            .filter_map(|p| p.open.as_ref().map(|o| o.deadline))
            .min()
    }

    /// The index of `log`'s state with a partition count no older than `metadata_max_age`
    /// (asked for when needed).
    async fn log_state(&mut self, log: &Arc<str>, now: Now) -> Result<usize, ClientError> {
        let known = match self.last {
            Some(i) if Arc::ptr_eq(&self.logs[i].name, log) || *self.logs[i].name == **log => {
                Some(i)
            }
            _ => self.by_name.get(&**log).copied(),
        };
        if let Some(i) = known {
            self.last = Some(i);
            if now.wall.saturating_duration_since(self.logs[i].asked_at)
                < self.config.metadata_max_age
            {
                return Ok(i);
            }
        }
        match self.client.describe_log(log).await {
            Ok(info) => {
                let count = info.config.partition_count;
                let i = match known {
                    Some(i) => i,
                    None => {
                        self.logs.push(LogState {
                            name: log.clone(),
                            partition_count: count,
                            asked_at: now.wall,
                            sticky: 0,
                            partitions: Vec::new(),
                        });
                        let i = self.logs.len() - 1;
                        self.by_name.insert(log.clone(), i);
                        i
                    }
                };
                self.logs[i].partition_count = count;
                self.logs[i].asked_at = std::time::Instant::now();
                self.last = Some(i);
                Ok(i)
            }
            // A refresh that fails keeps the count it had (sends go on); the next record
            // asks again.
            Err(e) => known.ok_or(e),
        }
    }

    async fn add(&mut self, log: Arc<str>, record: ProduceRecord, done: Waiter, now: Now) {
        let li = match self.log_state(&log, now).await {
            Ok(i) => i,
            Err(e) => {
                let _ = done.send(Err(e));
                return;
            }
        };
        let state = &mut self.logs[li];
        let count = state.partition_count;
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p < count => p,
            (Some(p), _) => {
                let _ = done.send(Err(ClientError::InvalidArgument(format!(
                    "log {log} has {count} partitions; partition {p} does not exist"
                ))));
                return;
            }
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => state.sticky % count.max(1),
        };
        let mut headers = record.headers;
        if let Some(id) = record.dedup_id {
            headers.push(Header::dedup_id(id));
        }
        let new = NewRecord {
            timestamp: record.timestamp.unwrap_or(now.micros),
            key: record.key,
            value: record.value,
            headers,
        };
        // Seal first if this record would push the open batch past `batch_bytes`, so batches
        // stay within the limit (and the log's `max_batch_bytes`) unless one record alone is
        // larger.
        let grow = BatchBuilder::record_size_bound(&new);
        let limit = self.config.batch_bytes;
        let full =
            state.partition(partition).open.as_ref().is_some_and(|o| {
                !o.builder.is_empty() && o.builder.estimated_size() + grow > limit
            });
        if full {
            self.seal(li, partition).await;
        }
        let compression = self.config.compression;
        let deadline = now.timer + self.config.linger;
        let p = self.logs[li].partition(partition);
        let (bytes, records) = (p.last_bytes.min(limit), p.last_records);
        let open = p.open.get_or_insert_with(|| Open {
            builder: BatchBuilder::with_capacity(compression, bytes),
            waiters: Vec::with_capacity(records),
            deadline,
        });
        open.builder.push(&new);
        open.waiters.push(done);
        if open.builder.estimated_size() >= limit {
            self.seal(li, partition).await;
        }
    }

    async fn seal_expired(&mut self) {
        let now = Instant::now();
        let expired: Vec<(usize, PartitionId)> = self.open_batches(|o| o.deadline <= now);
        for (li, p) in expired {
            self.seal(li, p).await;
        }
    }

    /// The (log index, partition) of every open batch that `pick` selects.
    fn open_batches(&self, pick: impl Fn(&Open) -> bool) -> Vec<(usize, PartitionId)> {
        let mut out = Vec::new();
        for (li, log) in self.logs.iter().enumerate() {
            for (p, state) in log.partitions.iter().enumerate() {
                if state.open.as_ref().is_some_and(&pick) {
                    out.push((li, p as PartitionId));
                }
            }
        }
        out
    }

    async fn seal(&mut self, li: usize, partition: PartitionId) {
        let log = &mut self.logs[li];
        let Some(open) = log.partition(partition).open.take() else {
            return;
        };
        if log.sticky == partition {
            log.sticky = (partition + 1) % log.partition_count.max(1);
        }
        let mut builder = open.builder;
        let p = log.partition(partition);
        p.last_bytes = builder.estimated_size();
        p.last_records = open.waiters.len();
        if self.config.enable_idempotence {
            match self.identity().await {
                Ok((id, epoch)) => {
                    let p = self.logs[li].partition(partition);
                    builder = builder.with_producer(id, epoch, p.sequence);
                    p.sequence = next_sequence(p.sequence, builder.record_count());
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
        let sender = self.sender(li, partition);
        if let Err(mpsc::error::SendError(Work::Batch(s))) = sender.send(Work::Batch(sealed)).await
        {
            for w in s.waiters {
                let _ = w.send(Err(ClientError::Closed));
            }
        }
    }

    /// The partition's sender task, started on first use.
    fn sender(&mut self, li: usize, partition: PartitionId) -> mpsc::Sender<Work> {
        let log = &mut self.logs[li];
        let name = log.name.clone();
        let p = log.partition(partition);
        if let Some(s) = &p.sender {
            return s.clone();
        }
        let (tx, rx) = mpsc::channel(self.config.queued_batches_per_partition.max(1));
        let task = sender::PartitionSender::new(
            self.client.clone(),
            self.config.clone(),
            name.to_string(),
            partition,
        );
        tokio::spawn(task.run(rx));
        p.sender = Some(tx.clone());
        tx
    }

    async fn flush(&mut self, done: oneshot::Sender<()>) {
        for (li, p) in self.open_batches(|_| true) {
            self.seal(li, p).await;
        }
        let mut barriers = Vec::new();
        let senders = self
            .logs
            .iter()
            .flat_map(|l| l.partitions.iter())
            .filter_map(|p| p.sender.as_ref());
        for s in senders {
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
