//! The accumulator: the producer's open batches, filled by `send` in the caller's task.
//!
//! A record goes straight into the open batch of its partition under one short lock, with
//! no hop through a channel to another task: at small record sizes, waking a task per record
//! cost more than encoding the record. Per record, `send` takes room in the byte budget,
//! reads the clock once (the timestamp of a record without one, and the metadata age), finds
//! the log by name (an `Arc<str>` compared by pointer first) and the partition by index, and
//! encodes the record into the batch. Per batch, the rest:
//!
//! - **Sealing**: the `send` that fills a batch seals it into the partition's `ready` queue
//!   (under the lock, so in order) and hands the queue to the partition's sender task; a
//!   hand-over takes the partition's `handover` lock, so batches reach the sender in the order
//!   they were sealed even when several tasks send to one partition. The hand-over waits when
//!   the sender's queue is full: that is the producer's backpressure.
//! - **Linger**: a background task seals batches whose `linger` ended; a `send` that opens a
//!   batch tells it the new deadline.
//! - **Memory**: records take room (their encoded size bound) in a byte budget,
//!   `buffer_bytes`, until their batch is handed to its sender; a `send` waits for room. Past
//!   the hand-over a partition holds at most `queued_batches_per_partition` queued and
//!   `max_in_flight` sent batches.
//! - **Buffers**: a batch's buffer starts at the size the partition's previous batch
//!   reached, so a busy partition's batch is not regrown (and copied) on its way to
//!   `batch_bytes`, while a quiet one does not hold `batch_bytes` per open batch.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use pyralog_types::batch::{BatchBuilder, NewRecord};
use pyralog_types::partitioner::partition_for_key;
use pyralog_types::{Clock, Header, PartitionId, TimestampMicros};
use tokio::sync::{mpsc, oneshot, Notify, OnceCell, Semaphore, TryAcquireError};
use tokio::time::Instant;

use super::{next_sequence, sender, ProduceRecord, ProducerConfig, Sealed, Waiter, Work};
use crate::client::Client;
use crate::error::ClientError;

/// A batch being filled.
struct Open {
    builder: BatchBuilder,
    waiters: Vec<Waiter>,
    deadline: Instant,
    /// Room its records hold in the byte budget.
    held: usize,
}

/// A sealed batch waiting for its hand-over, with the room its records hold.
type Ready = (Sealed, usize);

/// What the accumulator keeps per partition.
#[derive(Default)]
struct PartitionState {
    open: Option<Open>,
    /// Sealed, not yet handed to the sender, in seal order.
    ready: VecDeque<Ready>,
    sender: Option<mpsc::Sender<Work>>,
    /// Held while handing `ready` to `sender`, so batches reach it in seal order.
    handover: Arc<tokio::sync::Mutex<()>>,
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
    /// When `partition_count` was asked (wall clock).
    asked_at: TimestampMicros,
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

#[derive(Default)]
struct State {
    logs: Vec<LogState>,
    by_name: HashMap<Arc<str>, usize>,
    /// The log of the last record: consecutive records of one log skip the name lookup.
    last: Option<usize>,
}

impl State {
    fn find(&mut self, log: &str) -> Option<usize> {
        let found = match self.last {
            Some(i) if *self.logs[i].name == *log => Some(i),
            _ => self.by_name.get(log).copied(),
        };
        if found.is_some() {
            self.last = found;
        }
        found
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.logs
            .iter()
            .flat_map(|l| l.partitions.iter())
            .filter_map(|p| p.open.as_ref().map(|o| o.deadline))
            .min()
    }

    /// The (log index, partition) of every partition that `pick` selects.
    fn partitions_where(
        &self,
        pick: impl Fn(&PartitionState) -> bool,
    ) -> Vec<(usize, PartitionId)> {
        let mut out = Vec::new();
        for (li, log) in self.logs.iter().enumerate() {
            for (p, state) in log.partitions.iter().enumerate() {
                if pick(state) {
                    out.push((li, p as PartitionId));
                }
            }
        }
        out
    }
}

pub(super) struct Accumulator {
    client: Client,
    clock: Arc<dyn Clock>,
    config: ProducerConfig,
    state: Mutex<State>,
    /// The byte budget of records not yet handed to their sender (`buffer_bytes`).
    room: Semaphore,
    /// A batch opened: the linger task looks at the earliest deadline again.
    opened: Notify,
    /// The idempotent producer's id and epoch, asked for before its first record.
    identity: OnceCell<(i64, i16)>,
}

impl Accumulator {
    pub(super) fn new(client: Client, config: ProducerConfig) -> Self {
        let budget = config.buffer_bytes.clamp(1, Semaphore::MAX_PERMITS);
        Accumulator {
            client,
            clock: pyralog_types::clock::system(),
            room: Semaphore::new(budget),
            config,
            state: Mutex::new(State::default()),
            opened: Notify::new(),
            identity: OnceCell::new(),
        }
    }

    /// Room a record of encoded size bound `size` takes in the byte budget (a record larger
    /// than the whole budget takes all of it, so it still goes, alone).
    fn room_for(&self, size: usize) -> usize {
        size.clamp(1, self.config.buffer_bytes.max(1))
    }

    /// Takes `n` bytes of room; when there is not enough, the open batches are sealed and
    /// handed over at once (not at the end of their linger), then waits for the room.
    async fn take_room(&self, n: usize) -> Result<(), ClientError> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        match self.room.try_acquire_many(n) {
            Ok(permit) => {
                permit.forget();
                return Ok(());
            }
            Err(TryAcquireError::Closed) => return Err(ClientError::Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        self.seal_open().await;
        self.room
            .acquire_many(n)
            .await
            .map_err(|_| ClientError::Closed)?
            .forget();
        Ok(())
    }

    fn give_room(&self, n: usize) {
        self.room.add_permits(n);
    }

    /// Adds one record to its partition's open batch (see the module doc). The record's
    /// own failures (an unknown log, a partition that does not exist) go to `done`.
    pub(super) async fn add(&self, log: &str, record: ProduceRecord, done: Waiter) {
        let now = self.clock.now_micros();
        let mut headers = record.headers;
        if let Some(id) = record.dedup_id {
            headers.push(Header::dedup_id(id));
        }
        let new = NewRecord {
            timestamp: record.timestamp.unwrap_or(now),
            key: record.key,
            value: record.value,
            headers,
        };
        if self.config.enable_idempotence {
            if let Err(e) = self.identity().await {
                let _ = done.send(Err(e));
                return;
            }
        }
        let li = match self.log_index(log, now).await {
            Ok(i) => i,
            Err(e) => {
                let _ = done.send(Err(e));
                return;
            }
        };
        let size = BatchBuilder::record_size_bound(&new);
        let held = self.room_for(size);
        if let Err(e) = self.take_room(held).await {
            let _ = done.send(Err(e));
            return;
        }
        let (partition, opened, sealed) = {
            let mut state = self.state.lock();
            let log_state = &mut state.logs[li];
            let count = log_state.partition_count;
            let partition = match (record.partition, &new.key) {
                (Some(p), _) if p < count => p,
                (Some(p), _) => {
                    drop(state);
                    self.give_room(held);
                    let _ = done.send(Err(ClientError::InvalidArgument(format!(
                        "log {log} has {count} partitions; partition {p} does not exist"
                    ))));
                    return;
                }
                (None, Some(key)) => partition_for_key(key, count),
                (None, None) => log_state.sticky % count.max(1),
            };
            let (opened, sealed) = self.push_locked(log_state, partition, &new, size, done, held);
            (partition, opened, sealed)
        };
        if opened {
            self.opened.notify_one();
        }
        if sealed {
            self.hand_over(li, partition).await;
        }
    }

    /// Appends `new` (encoded size bound `size`) to the partition's open batch, sealing
    /// before (if it would not fit) and after (if it filled the batch). Returns whether a batch was opened and sealed.
    fn push_locked(
        &self,
        log: &mut LogState,
        partition: PartitionId,
        new: &NewRecord,
        size: usize,
        done: Waiter,
        held: usize,
    ) -> (bool, bool) {
        // Seal first if this record would push the open batch past `batch_bytes`, so batches
        // stay within the limit (and the log's `max_batch_bytes`) unless one record alone is
        // larger.
        let limit = self.config.batch_bytes;
        let mut sealed = false;
        let full =
            log.partition(partition).open.as_ref().is_some_and(|o| {
                !o.builder.is_empty() && o.builder.estimated_size() + size > limit
            });
        if full {
            sealed |= self.seal_locked(log, partition);
        }
        let p = log.partition(partition);
        let opened = p.open.is_none();
        let (bytes, records) = (p.last_bytes.min(limit), p.last_records);
        let open = p.open.get_or_insert_with(|| Open {
            builder: BatchBuilder::with_capacity(self.config.compression, bytes),
            waiters: Vec::with_capacity(records),
            deadline: Instant::now() + self.config.linger,
            held: 0,
        });
        open.builder.push(new);
        open.waiters.push(done);
        open.held += held;
        if open.builder.estimated_size() >= limit {
            sealed |= self.seal_locked(log, partition);
        }
        (opened, sealed)
    }

    /// Seals the partition's open batch into its `ready` queue. Returns whether there was
    /// one.
    fn seal_locked(&self, log: &mut LogState, partition: PartitionId) -> bool {
        if log.sticky == partition {
            log.sticky = (partition + 1) % log.partition_count.max(1);
        }
        let p = log.partition(partition);
        let Some(open) = p.open.take() else {
            return false;
        };
        let mut builder = open.builder;
        p.last_bytes = builder.estimated_size();
        p.last_records = open.waiters.len();
        if let Some((id, epoch)) = self.identity.get().copied() {
            builder = builder.with_producer(id, epoch, p.sequence);
            p.sequence = next_sequence(p.sequence, builder.record_count());
        }
        match builder.build() {
            Ok(batch) => {
                let sealed = Sealed {
                    batch,
                    waiters: open.waiters,
                };
                p.ready.push_back((sealed, open.held));
            }
            Err(e) => {
                self.give_room(open.held);
                for w in open.waiters {
                    let _ = w.send(Err(ClientError::InvalidArgument(e.to_string())));
                }
            }
        }
        true
    }

    /// Hands the partition's sealed batches to its sender, oldest first; waits while the
    /// sender's queue is full.
    async fn hand_over(&self, li: usize, partition: PartitionId) {
        let (turn, sender) = {
            let mut state = self.state.lock();
            let log = &mut state.logs[li];
            let name = log.name.clone();
            let p = log.partition(partition);
            let sender = p
                .sender
                .get_or_insert_with(|| self.start_sender(&name, partition))
                .clone();
            (p.handover.clone(), sender)
        };
        let _turn = turn.lock().await;
        loop {
            if self.state.lock().logs[li]
                .partition(partition)
                .ready
                .is_empty()
            {
                return;
            }
            // A slot first, then the batch: a hand-over cancelled while it waits (its `send`
            // dropped) leaves the batch queued for the next one.
            let slot = sender.reserve().await;
            let next = self.state.lock().logs[li]
                .partition(partition)
                .ready
                .pop_front();
            let Some((sealed, held)) = next else {
                return;
            };
            self.give_room(held);
            match slot {
                Ok(slot) => slot.send(Work::Batch(sealed)),
                Err(_) => {
                    for w in sealed.waiters {
                        let _ = w.send(Err(ClientError::Closed));
                    }
                }
            }
        }
    }

    fn start_sender(&self, log: &str, partition: PartitionId) -> mpsc::Sender<Work> {
        let (tx, rx) = mpsc::channel(self.config.queued_batches_per_partition.max(1));
        let task = sender::PartitionSender::new(
            self.client.clone(),
            self.config.clone(),
            log.to_owned(),
            partition,
        );
        tokio::spawn(task.run(rx));
        tx
    }

    /// The producer identity, asked for on first use.
    async fn identity(&self) -> Result<(i64, i16), ClientError> {
        self.identity
            .get_or_try_init(|| {
                self.client
                    .init_producer(self.config.producer_name.as_deref())
            })
            .await
            .copied()
    }

    /// The index of `log`'s state with a partition count no older than `metadata_max_age`
    /// at `now` (asked for when needed, outside the lock).
    async fn log_index(&self, log: &str, now: TimestampMicros) -> Result<usize, ClientError> {
        let max_age = i64::try_from(self.config.metadata_max_age.as_micros()).unwrap_or(i64::MAX);
        let known = {
            let mut state = self.state.lock();
            let known = state.find(log);
            if let Some(i) = known {
                if now.saturating_sub(state.logs[i].asked_at) < max_age {
                    return Ok(i);
                }
            }
            known
        };
        match self.client.describe_log(log).await {
            Ok(info) => {
                let count = info.config.partition_count;
                let asked_at = self.clock.now_micros();
                let mut state = self.state.lock();
                let i = match state.find(log) {
                    Some(i) => i,
                    None => {
                        let name: Arc<str> = Arc::from(log);
                        state.logs.push(LogState {
                            name: name.clone(),
                            partition_count: count,
                            asked_at,
                            sticky: 0,
                            partitions: Vec::new(),
                        });
                        let i = state.logs.len() - 1;
                        state.by_name.insert(name, i);
                        state.last = Some(i);
                        i
                    }
                };
                state.logs[i].partition_count = count;
                state.logs[i].asked_at = asked_at;
                Ok(i)
            }
            // A refresh that fails keeps the count it had (sends go on); the next record
            // asks again.
            Err(e) => known.ok_or(e),
        }
    }

    /// Seals batches whose linger ended, until `stop` resolves (the producer is closed or
    /// dropped).
    pub(super) async fn linger(self: Arc<Self>, mut stop: oneshot::Receiver<()>) {
        loop {
            // Registered before reading the deadline, so a batch opened meanwhile is seen.
            let opened = self.opened.notified();
            let next = self.state.lock().next_deadline();
            tokio::select! {
                _ = &mut stop => return,
                () = opened => {}
                () = sleep_until(next) => self.seal_expired().await,
            }
        }
    }

    async fn seal_expired(&self) {
        let now = Instant::now();
        let sealed = {
            let mut state = self.state.lock();
            let expired =
                state.partitions_where(|p| p.open.as_ref().is_some_and(|o| o.deadline <= now));
            for &(li, p) in &expired {
                self.seal_locked(&mut state.logs[li], p);
            }
            expired
        };
        for (li, p) in sealed {
            self.hand_over(li, p).await;
        }
    }

    /// Seals every open batch and hands everything sealed to the senders.
    async fn seal_open(&self) {
        let sealed = {
            let mut state = self.state.lock();
            let open = state.partitions_where(|p| p.open.is_some());
            for &(li, p) in &open {
                self.seal_locked(&mut state.logs[li], p);
            }
            state.partitions_where(|p| !p.ready.is_empty())
        };
        for (li, p) in sealed {
            self.hand_over(li, p).await;
        }
    }

    /// Seals every open batch, hands everything sealed to the senders and waits until every
    /// sender answered everything it was given before.
    pub(super) async fn flush(&self) {
        self.seal_open().await;
        let partitions = self.state.lock().partitions_where(|p| p.sender.is_some());
        let mut barriers = Vec::new();
        for (li, p) in partitions {
            // Batches sealed by other tasks meanwhile go first.
            self.hand_over(li, p).await;
            let (turn, sender) = {
                let mut state = self.state.lock();
                let p = state.logs[li].partition(p);
                (p.handover.clone(), p.sender.clone())
            };
            let Some(sender) = sender else { continue };
            // After any hand-over in progress: the barrier follows every batch sealed before.
            let _turn = turn.lock().await;
            let (tx, rx) = oneshot::channel();
            if sender.send(Work::Barrier(tx)).await.is_ok() {
                barriers.push(rx);
            }
        }
        for b in barriers {
            let _ = b.await;
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
