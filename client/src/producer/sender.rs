//! A partition's sender: sealed batches go out in order, up to `max_in_flight` at once.
//!
//! The sender keeps one `ProduceStream` to the partition's leader. The leader stores a
//! stream's batches in the order they arrive and answers them in that order, so the sender
//! writes up to `max_in_flight` requests ahead and matches answers to the oldest request in
//! flight. Throughput is then bound by the disk and the network, not by one round trip,
//! write and fsync per batch.
//!
//! Failures: an answer with a retriable error (or a broken stream, which fails every request
//! in flight) holds back new batches; once every request in flight is answered, the sender
//! backs off, follows the redirect to a new leader if there is one, opens a new stream and
//! sends the failed batches again, oldest first, before any new one. Batches answered with
//! success meanwhile stay delivered. With idempotence the leader's sequence check keeps the
//! stored order exactly the send order (a batch after a failed one is refused as out of
//! order and sent again after it); without it a batch sent after a failed one may be stored
//! before the failed one's retry, as in Kafka with more than one request in flight. Set
//! `max_in_flight = 1` for strict order without idempotence. With idempotence, a new stream
//! carries one batch at a time until one is stored: a leader that does not know the producer
//! yet accepts any sequence, so only a known producer's order is enforced by the leader.
//!
//! A server without `ProduceStream` (one from before it) gets one unary `Produce` at a time.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use pyralog_proto::v1::{self, produce_stream_response::Result as Answer};
use pyralog_types::{LogOffset, PartitionId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use super::{Delivered, ProducerConfig, Sealed, Work};
use crate::client::Client;
use crate::error::ClientError;

/// One batch between the accumulator and its answer.
struct Pending {
    sealed: Sealed,
    request: v1::ProduceRequest,
    /// Failed attempts so far.
    attempt: u32,
    started: Instant,
}

/// What waits in a sender's queue.
enum Queued {
    Batch(Pending),
    /// A flush: answered once everything queued before it is answered.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// An open `ProduceStream`.
struct Lane {
    requests: mpsc::Sender<v1::ProduceRequest>,
    answers: tonic::Streaming<v1::ProduceStreamResponse>,
}

pub(super) struct PartitionSender {
    client: Client,
    config: ProducerConfig,
    log: String,
    partition: PartitionId,
    faults: Faults,
    /// Batches (and flushes) not yet sent, oldest first; retries go to the front.
    queue: VecDeque<Queued>,
    /// Sent on `lane`, awaiting their answers in this order.
    in_flight: VecDeque<Pending>,
    /// Failed retriably while others were in flight: sent again once those are answered.
    to_retry: Vec<(Pending, ClientError)>,
    lane: Option<Lane>,
    /// With idempotence: a batch on the current stream was stored (answered with success).
    /// Until then one batch at a time: a leader that does not know this producer yet (a new
    /// log, or a new leader whose copy holds none of its batches) accepts any sequence, so a
    /// batch sent behind a first one that fails would be stored before it, and that first
    /// one's retry refused as out of order.
    confirmed: bool,
    /// The server has no `ProduceStream`: unary calls, one at a time.
    unary: bool,
}

impl PartitionSender {
    pub(super) fn new(
        client: Client,
        config: ProducerConfig,
        log: String,
        partition: PartitionId,
    ) -> Self {
        let faults = Faults::new(config.fault_drop_acks, partition);
        PartitionSender {
            client,
            config,
            log,
            partition,
            faults,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            to_retry: Vec::new(),
            lane: None,
            confirmed: false,
            unary: false,
        }
    }

    fn max_in_flight(&self) -> usize {
        if self.unary || (self.config.enable_idempotence && !self.confirmed) {
            1
        } else {
            self.config.max_in_flight.max(1)
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Work>) {
        let mut input_open = true;
        loop {
            if self.in_flight.is_empty() && !self.to_retry.is_empty() {
                self.schedule_retries().await;
            }
            self.send_ready().await;
            if self.in_flight.is_empty() && !self.to_retry.is_empty() {
                // Could not even send (no stream to the leader): back off and try again.
                continue;
            }
            if !input_open && self.queue.is_empty() && self.in_flight.is_empty() {
                break;
            }
            // Here either something is in flight (wait for its answer) or the queue is empty
            // and the input open (wait for work): a branch below is always enabled.
            let take = input_open && self.queue.len() < self.max_in_flight();
            let answer_timeout = self.config.request_timeout + Duration::from_secs(5);
            tokio::select! {
                work = rx.recv(), if take => match work {
                    Some(Work::Batch(sealed)) => {
                        let request = self.request_for(&sealed);
                        self.queue.push_back(Queued::Batch(Pending {
                            sealed,
                            request,
                            attempt: 0,
                            started: Instant::now(),
                        }));
                    }
                    Some(Work::Barrier(done)) => self.queue.push_back(Queued::Barrier(done)),
                    None => input_open = false,
                },
                answer = next_answer(&mut self.lane, answer_timeout), if !self.in_flight.is_empty() => {
                    self.on_answer(answer);
                }
                else => {}
            }
        }
    }

    fn request_for(&self, sealed: &Sealed) -> v1::ProduceRequest {
        v1::ProduceRequest {
            log: self.log.clone(),
            partition: self.partition,
            payload: Some(v1::produce_request::Payload::Batch(sealed.batch.clone())),
            acks: v1::AckPolicy::from(self.config.acks) as i32,
            timeout_ms: u32::try_from(self.config.request_timeout.as_millis()).unwrap_or(u32::MAX),
            ..Default::default()
        }
    }

    /// Sends queued batches while there is room in flight; answers flushes whose batches are
    /// all answered. Nothing new goes out while failed batches wait for their retry.
    async fn send_ready(&mut self) {
        while self.to_retry.is_empty() && self.in_flight.len() < self.max_in_flight() {
            match self.queue.front() {
                None => return,
                Some(Queued::Barrier(_)) => {
                    if !self.in_flight.is_empty() {
                        return;
                    }
                    if let Some(Queued::Barrier(done)) = self.queue.pop_front() {
                        let _ = done.send(());
                    }
                }
                Some(Queued::Batch(_)) => {
                    let Some(Queued::Batch(pending)) = self.queue.pop_front() else {
                        return;
                    };
                    if self.unary {
                        self.send_unary(pending).await;
                    } else {
                        self.send_streamed(pending).await;
                    }
                }
            }
        }
    }

    async fn send_streamed(&mut self, pending: Pending) {
        if self.lane.is_none() {
            match self.open_lane().await {
                Ok(Some(lane)) => {
                    self.lane = Some(lane);
                    self.confirmed = false;
                }
                Ok(None) => {
                    // No ProduceStream on this server.
                    self.unary = true;
                    self.send_unary(pending).await;
                    return;
                }
                Err(e) => {
                    self.failed(pending, e);
                    return;
                }
            }
        }
        let sent = match &self.lane {
            Some(lane) => lane.requests.send(pending.request.clone()).await.is_ok(),
            None => false,
        };
        if sent {
            self.in_flight.push_back(pending);
        } else {
            self.lane = None;
            self.failed(pending, stream_broken("the produce stream closed"));
        }
    }

    /// Opens a stream to the partition's leader as last learned; `None` when the server has
    /// no `ProduceStream`.
    async fn open_lane(&self) -> Result<Option<Lane>, ClientError> {
        let (requests, rx) = mpsc::channel(self.config.max_in_flight.max(1));
        let mut rpc = self.client.producer_rpc_for(&self.log, self.partition);
        match rpc.produce_stream(ReceiverStream::new(rx)).await {
            Ok(answers) => Ok(Some(Lane {
                requests,
                answers: answers.into_inner(),
            })),
            // A server from before `ProduceStream`: UNIMPLEMENTED, or PERMISSION_DENIED from
            // its access layer when authentication is on ("no access rule"). A server that
            // has the RPC checks permissions per message, never when the stream opens.
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unimplemented | tonic::Code::PermissionDenied
                ) =>
            {
                Ok(None)
            }
            Err(status) => Err(ClientError::from(status)),
        }
    }

    /// The oldest request in flight got `answer`.
    fn on_answer(&mut self, answer: Result<v1::ProduceStreamResponse, ClientError>) {
        let result = match answer {
            Ok(v1::ProduceStreamResponse {
                result: Some(Answer::Ok(resp)),
            }) => Ok(resp),
            Ok(v1::ProduceStreamResponse {
                result: Some(Answer::Error(e)),
            }) => Err(ClientError::from(tonic::Status::with_details(
                tonic::Code::from_i32(e.code),
                e.message,
                e.details,
            ))),
            Ok(v1::ProduceStreamResponse { result: None }) => {
                Err(ClientError::Decode("an empty produce answer".into()))
            }
            Err(e) => {
                // The stream is broken: nothing more will be answered on it, so every
                // request in flight failed with it (each may or may not have been stored).
                self.lane = None;
                for pending in std::mem::take(&mut self.in_flight) {
                    self.failed(pending, e.clone());
                }
                return;
            }
        };
        let Some(pending) = self.in_flight.pop_front() else {
            return;
        };
        // Stored (whether or not the fault injection below drops the answer): the leader
        // knows this producer now and its sequence check keeps the order.
        self.confirmed |= result.is_ok();
        let result = match result {
            Ok(_) if self.faults.drop_ack() => Err(ClientError::from(tonic::Status::unavailable(
                "fault injection: acknowledgement dropped",
            ))),
            other => other,
        };
        match result {
            Ok(resp) => deliver(pending.sealed, &resp, self.partition),
            Err(e) => self.failed(pending, e),
        }
    }

    /// Retries `pending` later if `e` allows it, else fails its records.
    fn failed(&mut self, pending: Pending, e: ClientError) {
        let retry = if self.config.enable_idempotence {
            // An idempotent batch may be sent again whatever happened to the last attempt
            // (the leader drops a second copy), until the delivery timeout. A batch refused
            // as out of order behind an earlier one that failed goes again after it.
            let behind_a_failure = !self.to_retry.is_empty()
                && e.reason() == Some(pyralog_types::Reason::OutOfOrderSequence);
            (e.is_retriable() || e.reason().is_none() || behind_a_failure)
                && pending.started.elapsed() < self.config.delivery_timeout
        } else {
            e.is_retriable() && pending.attempt < self.config.retries
        };
        if retry {
            self.to_retry.push((pending, e));
        } else {
            for w in pending.sealed.waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
    }

    /// Everything in flight is answered and some batches failed: back off, follow a
    /// redirect, and queue them again, oldest first, ahead of new batches.
    async fn schedule_retries(&mut self) {
        let failed = std::mem::take(&mut self.to_retry);
        let attempt = failed.iter().map(|(p, _)| p.attempt).max().unwrap_or(0);
        let mut wait = None;
        for (_, e) in &failed {
            if let Some(w) = self.client.reroute(&self.log, self.partition, e, attempt) {
                wait = Some(wait.map_or(w, |cur: Duration| cur.min(w)));
            }
        }
        if let Some((_, e)) = failed.first() {
            debug!(log = %self.log, partition = self.partition, attempt = attempt + 1,
                batches = failed.len(), error = %e, "retrying produce");
        }
        let wait = wait.unwrap_or(self.config.retry_backoff * (attempt + 1).min(10));
        tokio::time::sleep(wait).await;
        // A new stream: the leader may have moved.
        self.lane = None;
        for (mut pending, _) in failed.into_iter().rev() {
            pending.attempt += 1;
            self.queue.push_front(Queued::Batch(pending));
        }
    }

    /// One unary `Produce` (a server without `ProduceStream`), answered before the next.
    async fn send_unary(&mut self, pending: Pending) {
        let mut request = tonic::Request::new(pending.request.clone());
        request.set_timeout(self.config.request_timeout + Duration::from_secs(5));
        let mut rpc = self.client.producer_rpc_for(&self.log, self.partition);
        let answer = match rpc.produce(request).await {
            Ok(_) if self.faults.drop_ack() => Err(ClientError::from(tonic::Status::unavailable(
                "fault injection: acknowledgement dropped",
            ))),
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => Err(ClientError::from(status)),
        };
        match answer {
            Ok(resp) => deliver(pending.sealed, &resp, self.partition),
            Err(e) => self.failed(pending, e),
        }
    }
}

/// The next answer on `lane`, or why there is none.
async fn next_answer(
    lane: &mut Option<Lane>,
    timeout: Duration,
) -> Result<v1::ProduceStreamResponse, ClientError> {
    let Some(lane) = lane else {
        return Err(stream_broken("no produce stream"));
    };
    match tokio::time::timeout(timeout, lane.answers.message()).await {
        Ok(Ok(Some(answer))) => Ok(answer),
        Ok(Ok(None)) => Err(stream_broken("the server ended the produce stream")),
        Ok(Err(status)) => Err(ClientError::from(status)),
        Err(_) => Err(stream_broken(
            "no produce answer within the request timeout",
        )),
    }
}

/// A stream that ends without an answer: retriable, like a broken connection.
fn stream_broken(why: &str) -> ClientError {
    ClientError::from(tonic::Status::unavailable(why.to_owned()))
}

/// Tells each record of `sealed` where it was stored.
fn deliver(sealed: Sealed, resp: &v1::ProduceResponse, partition: PartitionId) {
    // Records dropped for their dedup id report the stored copy's offset; the others were
    // stored in order from the base offset.
    let dropped: HashMap<u32, u64> = resp.dropped.iter().map(|d| (d.index, d.offset)).collect();
    let mut stored = 0u64;
    for (i, w) in sealed.waiters.into_iter().enumerate() {
        let offset = if resp.base_offset == u64::MAX {
            LogOffset::MAX
        } else if let Some(o) = u32::try_from(i).ok().and_then(|i| dropped.get(&i)) {
            LogOffset(*o)
        } else {
            stored += 1;
            LogOffset(resp.base_offset + stored - 1)
        };
        let _ = w.send(Ok(Delivered { partition, offset }));
    }
}

/// The lost-acknowledgement fault (testing only): a small deterministic generator per sender.
struct Faults {
    probability: f64,
    state: u64,
}

impl Faults {
    fn new(probability: f64, salt: PartitionId) -> Self {
        // A random seed without a dependency: std's per-map random hasher keys.
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Faults {
            probability,
            state: (seed ^ (u64::from(salt) << 32)) | 1,
        }
    }

    fn drop_ack(&mut self) -> bool {
        if self.probability <= 0.0 {
            return false;
        }
        // xorshift64
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 53) as f64 <= self.probability
    }
}
