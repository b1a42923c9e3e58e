//! Workloads against a running node, through the real client library.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use pyralog_client::{
    AckPolicy, Client, Compression, ConsumerConfig, DeliveryFuture, LogOffset, PartitionConsumer,
    ProduceRecord, Producer, ProducerConfig,
};
use pyralog_proto::v1;
use serde::Serialize;

use crate::BenchError;

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceSpec {
    pub log: String,
    pub partitions: u32,
    pub records: u64,
    pub record_bytes: usize,
    pub batch_bytes: usize,
    pub acks: AckPolicy,
    /// `"every_batch"`, `"never"` or an interval, for the log created by the run.
    pub fsync: String,
    pub compression: Compression,
    /// Replicas per partition and the write quorum (1 and 1 on a single node).
    pub replication_factor: u32,
    pub min_in_sync_replicas: u32,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub(crate) fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub records: u64,
    pub payload_bytes: u64,
    pub seconds: f64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
}

impl Throughput {
    pub(crate) fn new(records: u64, payload_bytes: u64, seconds: f64) -> Self {
        Throughput {
            records,
            payload_bytes,
            seconds,
            records_per_s: records as f64 / seconds,
            mb_per_s: payload_bytes as f64 / 1e6 / seconds,
        }
    }
}

pub(crate) fn hist() -> Result<Histogram<u64>, BenchError> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| BenchError::Invalid(e.to_string()))
}

fn bar(len: u64, show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} {bar:40} {pos}/{len} {per_sec} eta {eta}")
    {
        pb.set_style(style);
    }
    pb.set_message(what.to_owned());
    pb
}

/// Creates the run's log (deleting a leftover one of the same name).
pub async fn create_log(client: &Client, spec: &ProduceSpec) -> Result<(), BenchError> {
    let _ = client.delete_log(&spec.log).await;
    client
        .create_log(
            &spec.log,
            v1::LogConfig {
                partition_count: Some(spec.partitions),
                replication_factor: Some(spec.replication_factor),
                min_in_sync_replicas: Some(spec.min_in_sync_replicas),
                fsync: Some(spec.fsync.clone()),
                retention: Some(v1::Retention::default()),
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

fn producer(client: &Client, spec: &ProduceSpec, idempotent: bool) -> Producer {
    Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: spec.batch_bytes,
            linger: Duration::from_millis(2),
            compression: spec.compression,
            acks: spec.acks,
            enable_idempotence: idempotent,
            ..Default::default()
        },
    )
}

/// The records a produce workload sends, made before the clock starts: record `i` has key
/// `k{i % KEYS:08}` and one of 64 payloads, so the loop measures the producer, not the
/// formatting of keys.
struct RecordSource {
    keys: Vec<Bytes>,
    payloads: Vec<Bytes>,
    partitions: u64,
}

/// Distinct keys of a produce workload.
const KEYS: u64 = 100_000;

impl RecordSource {
    fn new(spec: &ProduceSpec) -> Self {
        RecordSource {
            keys: (0..KEYS).map(|k| Bytes::from(format!("k{k:08}"))).collect(),
            payloads: (0..64)
                .map(|i| Bytes::from(crate::payload(i, spec.record_bytes)))
                .collect(),
            partitions: u64::from(spec.partitions.max(1)),
        }
    }

    fn record(&self, i: u64) -> ProduceRecord {
        ProduceRecord {
            key: Some(self.keys[(i % KEYS) as usize].clone()),
            value: Some(self.payloads[(i % self.payloads.len() as u64) as usize].clone()),
            partition: Some((i % self.partitions) as u32),
            ..Default::default()
        }
    }
}

/// Counts acknowledged records and moves the progress bar every 4096 of them (the bar reads
/// the clock on every move).
struct Ticker<'a> {
    bar: &'a ProgressBar,
    unshown: u64,
}

impl<'a> Ticker<'a> {
    fn new(bar: &'a ProgressBar) -> Self {
        Ticker { bar, unshown: 0 }
    }

    fn tick(&mut self) {
        self.unshown += 1;
        if self.unshown == 4096 {
            self.bar.inc(self.unshown);
            self.unshown = 0;
        }
    }
}

impl Drop for Ticker<'_> {
    fn drop(&mut self) {
        self.bar.inc(self.unshown);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProduceResult {
    pub throughput: Throughput,
    /// send() to acknowledgement, per record (includes batching and queueing).
    pub ack_latency: Latency,
}

/// W1: closed-loop peak produce (as fast as acknowledgements allow).
pub async fn produce_peak(
    client: &Client,
    spec: &ProduceSpec,
    progress: bool,
) -> Result<ProduceResult, BenchError> {
    produce_peak_with(client, spec, progress, false).await
}

/// [`produce_peak`], optionally with an idempotent producer.
pub async fn produce_peak_with(
    client: &Client,
    spec: &ProduceSpec,
    progress: bool,
    idempotent: bool,
) -> Result<ProduceResult, BenchError> {
    let producer = producer(client, spec, idempotent);
    let source = RecordSource::new(spec);
    let pb = bar(spec.records, progress, "produce");
    let mut ticker = Ticker::new(&pb);
    let mut h = hist()?;
    let mut pending = FuturesUnordered::new();
    let t = Instant::now();
    for i in 0..spec.records {
        let sent = Instant::now();
        let fut = producer.send(&spec.log, source.record(i)).await?;
        pending.push(async move { (sent, fut.await) });
        while pending.len() > 100_000 {
            if let Some((sent, r)) = pending.next().await {
                r?;
                let _ = h.record(sent.elapsed().as_micros() as u64);
                ticker.tick();
            }
        }
    }
    while let Some((sent, r)) = pending.next().await {
        r?;
        let _ = h.record(sent.elapsed().as_micros() as u64);
        ticker.tick();
    }
    let secs = t.elapsed().as_secs_f64();
    drop(ticker);
    pb.finish_and_clear();
    producer.close().await?;
    Ok(ProduceResult {
        throughput: Throughput::new(spec.records, spec.records * spec.record_bytes as u64, secs),
        ack_latency: Latency::of(&h),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    pub target_records_per_s: f64,
    pub throughput: Throughput,
    /// Scheduled send time to acknowledgement (open loop: no coordinated omission).
    pub produce_latency: Latency,
    /// Record timestamp (set at the scheduled send time) to arrival at a tailing consumer.
    pub end_to_end_latency: Latency,
}

/// W2 + W3: open-loop produce at a fixed rate with a tailing consumer per partition.
pub async fn produce_open_loop(
    client: &Client,
    spec: &ProduceSpec,
    rate: f64,
    duration: Duration,
    progress: bool,
) -> Result<LatencyResult, BenchError> {
    let start_offsets: Vec<u64> = client
        .list_offsets(&spec.log, None)
        .await?
        .iter()
        .map(|o| o.latest)
        .collect();
    let total = (rate * duration.as_secs_f64()) as u64;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let epoch = Instant::now();
    let wall_at_epoch = now_micros();
    let mut tails = Vec::new();
    for (p, start) in start_offsets.iter().enumerate() {
        let mut c = PartitionConsumer::new(
            client.clone(),
            &spec.log,
            p as u32,
            LogOffset(*start),
            ConsumerConfig {
                wait: Duration::from_millis(200),
                verify_crc: true,
                max_bytes: 0,
                prefetch: true,
            },
        );
        let stop = stop.clone();
        tails.push(tokio::spawn(async move {
            let mut h = hist()?;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for r in c.poll().await? {
                    let lat = now_micros() - r.timestamp;
                    let _ = h.record(lat.max(1) as u64);
                }
            }
            Ok::<_, BenchError>(h)
        }));
    }
    let producer = producer(client, spec, false);
    let source = RecordSource::new(spec);
    let pb = bar(total, progress, "open-loop");
    // Acknowledgements are timed by a task of their own as they resolve, not by this loop:
    // a `send` that waits for buffer room would otherwise time every acknowledgement that
    // resolved meanwhile late by that wait. They reach it in chunks, so the hop costs little
    // per record; a record waits in a chunk at most `ACK_CHUNK` sends or one pause.
    const ACK_CHUNK: usize = 256;
    let (acks, mut to_time) =
        tokio::sync::mpsc::unbounded_channel::<Vec<(Instant, DeliveryFuture)>>();
    let timer = {
        let pb = pb.clone();
        tokio::spawn(async move {
            let mut ticker = Ticker::new(&pb);
            let mut h = hist()?;
            let mut pending = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    chunk = to_time.recv(), if open => match chunk {
                        Some(chunk) => {
                            for (s, fut) in chunk {
                                pending.push(async move { (s, fut.await) });
                            }
                        }
                        None => open = false,
                    },
                    Some((s, r)) = pending.next(), if !pending.is_empty() => {
                        let r: Result<_, pyralog_client::ClientError> = r;
                        r?;
                        let _ = h.record(Instant::now().duration_since(s).as_micros() as u64);
                        ticker.tick();
                    }
                    else => break,
                }
            }
            Ok::<_, BenchError>(h)
        })
    };
    let mut chunk = Vec::with_capacity(ACK_CHUNK);
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0..total {
        let scheduled = epoch + interval.mul_f64(i as f64);
        if Instant::now() < scheduled {
            // Ahead of schedule: hand over what waits for timing, then pause.
            if !chunk.is_empty() {
                let _ = acks.send(std::mem::replace(&mut chunk, Vec::with_capacity(ACK_CHUNK)));
            }
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let mut rec = source.record(i);
        rec.timestamp = Some(wall_at_epoch + scheduled.duration_since(epoch).as_micros() as i64);
        let fut = producer.send(&spec.log, rec).await?;
        chunk.push((scheduled, fut));
        if chunk.len() == ACK_CHUNK {
            let _ = acks.send(std::mem::replace(&mut chunk, Vec::with_capacity(ACK_CHUNK)));
        }
    }
    let _ = acks.send(chunk);
    drop(acks);
    let h = timer
        .await
        .map_err(|e| BenchError::Invalid(e.to_string()))??;
    let secs = epoch.elapsed().as_secs_f64();
    pb.finish_and_clear();
    producer.close().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut e2e = hist()?;
    for t in tails {
        let th = t.await.map_err(|e| BenchError::Invalid(e.to_string()))??;
        e2e.add(&th)
            .map_err(|e| BenchError::Invalid(e.to_string()))?;
    }
    Ok(LatencyResult {
        target_records_per_s: rate,
        throughput: Throughput::new(total, total * spec.record_bytes as u64, secs),
        produce_latency: Latency::of(&h),
        end_to_end_latency: Latency::of(&e2e),
    })
}

/// W4: drain the whole log from offset 0, all partitions concurrently.
pub async fn consume_drain(
    client: &Client,
    log: &str,
    progress: bool,
) -> Result<Throughput, BenchError> {
    let offsets = client.list_offsets(log, None).await?;
    let total: u64 = offsets.iter().map(|o| o.latest - o.earliest).sum();
    let pb = bar(total, progress, "consume");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for o in offsets {
        let mut c = PartitionConsumer::new(
            client.clone(),
            log,
            o.partition,
            LogOffset(o.earliest),
            ConsumerConfig {
                wait: Duration::ZERO,
                max_bytes: 8 << 20,
                verify_crc: true,
                prefetch: true,
            },
        );
        let pb = pb.clone();
        tasks.push(tokio::spawn(async move {
            let (mut n, mut bytes) = (0u64, 0u64);
            while c.position().0 < o.latest {
                let records = c.poll().await?;
                if records.is_empty() {
                    break;
                }
                for r in &records {
                    bytes += r.value.as_ref().map_or(0, |v| v.len()) as u64;
                }
                n += records.len() as u64;
                pb.inc(records.len() as u64);
            }
            Ok::<_, BenchError>((n, bytes))
        }));
    }
    let (mut n, mut bytes) = (0, 0);
    for t in tasks {
        let (a, b) = t.await.map_err(|e| BenchError::Invalid(e.to_string()))??;
        n += a;
        bytes += b;
    }
    pb.finish_and_clear();
    Ok(Throughput::new(n, bytes, t.elapsed().as_secs_f64()))
}

fn now_micros() -> i64 {
    use pyralog_types::Clock;
    pyralog_types::SystemClock.now_micros()
}

/// Builds an archived backlog for a cold reader: `mb` of payload in a log whose closed
/// segments (8 MiB) go to the node's cold tier and then leave its disk. Returns the number
/// of records once only the active segment is left locally.
pub async fn archive_backlog(
    client: &Client,
    log: &str,
    mb: u64,
    record_bytes: usize,
    progress: bool,
) -> Result<u64, BenchError> {
    let spec = ProduceSpec {
        log: log.to_owned(),
        partitions: 1,
        records: (mb << 20) / record_bytes.max(1) as u64,
        record_bytes,
        batch_bytes: 1 << 20,
        acks: AckPolicy::Leader,
        fsync: "1s".into(),
        compression: Compression::None,
        replication_factor: 1,
        min_in_sync_replicas: 1,
    };
    let _ = client.delete_log(log).await;
    client
        .create_log(
            log,
            v1::LogConfig {
                partition_count: Some(1),
                fsync: Some(spec.fsync.clone()),
                segment_bytes: Some(8 << 20),
                retention: Some(v1::Retention::default()),
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(1),
                }),
                ..Default::default()
            },
        )
        .await?;
    produce_peak(client, &spec, progress).await?;
    client.roll_segments(log, Vec::new()).await?;
    let t = Instant::now();
    loop {
        let d = client.describe_log(log).await?;
        if d.partitions.first().is_some_and(|p| p.local_segments <= 1) {
            return Ok(spec.records);
        }
        if t.elapsed() > Duration::from_secs(600) {
            return Err(BenchError::Invalid(format!(
                "{log} was not archived within 10 minutes: does the node have a cold tier?"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
