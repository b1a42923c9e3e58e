//! The hostile-load run: a well-behaved producer (acks = leader, `fsync = every_batch`) and
//! consumer run alone for a baseline, then for 60 s next to several hostile clients at once:
//!
//! - garbage: random bytes on fresh sockets, and bad HTTP/2 (a valid preface followed by
//!   frames with nonsense headers and payloads);
//! - zstd bombs: small batches whose zstd frame declares and inflates to 200 MiB, each refused
//!   `BATCH_TOO_LARGE` (over `max_batch_bytes`, from the declared length, before inflating);
//! - idle-socket floods from four other loopback addresses;
//! - oversized requests: a gRPC message prefix declaring 80 MiB (over the 65 MiB maximum),
//!   each answered `OUT_OF_RANGE` from the prefix;
//! - half-sent messages: calls whose message never arrives whole, each answered
//!   `DEADLINE_EXCEEDED` (`TIMEOUT`) after `server.request_message_timeout`.
//!
//! It must hold: the pair's throughput under load stays within 50% of the baseline, the node's
//! peak RSS (VmHWM) grows by less than [`RSS_GROWTH_BOUND_MB`] over its peak in the baseline
//! (the same well-behaved load without attackers), and every acknowledged record reads back
//! byte for byte. The figures are printed (`FIGURES` lines). `PYRALOG_E2E_BASELINE_SECS` and
//! `PYRALOG_E2E_HOSTILE_SECS` change the phases (15 s and 60 s).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{Client, ClientError, ConsumerConfig, LogOffset, PartitionConsumer};
use pyralog_e2e::raw::{grpc_outcome, GrpcOutcome};
use pyralog_e2e::{env_usize, payload, TestNode};
use pyralog_proto::v1;
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::Reason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const VALUE_BYTES: usize = 1024;
const RECORDS_PER_BATCH: u64 = 64;
/// How much the attacks may add to the node's peak resident memory over the baseline phase's
/// peak (the well-behaved pair alone). A zstd bomb that inflated to its declared 200 MiB would
/// cross it on its own. The peak also covers the archiver, which tiers the segments the pair
/// fills; it used to encode whole segments in memory (up to +440 MiB here, whenever a segment
/// closed during the attack) and now streams them (issue 13). Measured: +149 MiB
/// (65 -> 214 MiB) on a 2-core machine.
const RSS_GROWTH_BOUND_MB: u64 = 256;

fn socket_addr(node: &TestNode) -> SocketAddr {
    node.url()
        .trim_start_matches("http://")
        .parse()
        .expect("node address")
}

fn vm_hwm_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// What the well-behaved pair has done so far.
#[derive(Debug, Default)]
struct Progress {
    /// Records acknowledged (offsets 0..acked, record i at offset i).
    acked: AtomicU64,
    /// Value bytes read back by the consumer.
    consumed_bytes: AtomicU64,
}

fn record(i: u64) -> v1::NewRecord {
    v1::NewRecord {
        key: Some(Bytes::copy_from_slice(&i.to_le_bytes())),
        value: Some(Bytes::from(payload(i, VALUE_BYTES))),
        ..Default::default()
    }
}

/// Produces batches of RECORDS_PER_BATCH records, one request at a time, until `stop`.
async fn produce_until(client: Client, progress: Arc<Progress>, stop: Arc<AtomicBool>) {
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let req = v1::ProduceRequest {
            log: "steady".into(),
            partition: 0,
            payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
                records: (next..next + RECORDS_PER_BATCH).map(record).collect(),
            })),
            acks: v1::AckPolicy::Leader as i32,
            ..Default::default()
        };
        let answer = client
            .produce_raw(req)
            .await
            .unwrap_or_else(|e| panic!("well-behaved produce at record {next} failed: {e}"));
        assert_eq!(answer.base_offset, next, "dense offsets, in send order");
        next += RECORDS_PER_BATCH;
        progress.acked.store(next, Ordering::Release);
    }
}

/// Follows the log from offset 0 until `stop`, checking every value.
async fn consume_until(client: Client, progress: Arc<Progress>, stop: Arc<AtomicBool>) {
    let mut c = PartitionConsumer::new(
        client,
        "steady",
        0,
        LogOffset::ZERO,
        ConsumerConfig {
            wait: Duration::from_millis(200),
            ..ConsumerConfig::default()
        },
    );
    while !stop.load(Ordering::Relaxed) {
        let records = c.poll().await.expect("well-behaved fetch");
        for r in records {
            let value = r.value.expect("value");
            assert!(
                value == payload(r.offset.0, VALUE_BYTES),
                "record {}",
                r.offset.0
            );
            progress
                .consumed_bytes
                .fetch_add(value.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Pseudo-random bytes (the harness's payload generator, seeded per round).
fn noise(round: u64, len: usize) -> Vec<u8> {
    payload(round.wrapping_mul(0x9e37_79b9), len)
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Random bytes, then bad HTTP/2, on fresh connections.
async fn garbage(addr: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let mut rounds = 0u64;
    while !stop.load(Ordering::Relaxed) {
        rounds += 1;
        let mut bytes = noise(rounds, 16 * 1024);
        if rounds.is_multiple_of(2) {
            // A valid preface, then frames whose headers and payloads are noise: a HEADERS
            // frame with garbage HPACK on stream 1, a DATA frame on stream 0.
            let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
            h2.extend_from_slice(&[0, 0x10, 0, 1, 0x4, 0, 0, 0, 1]);
            h2.extend_from_slice(&bytes[..4096]);
            h2.extend_from_slice(&[0, 0, 16, 0, 0, 0, 0, 0, 0]);
            h2.extend_from_slice(&bytes[..16]);
            bytes = h2;
        }
        if let Ok(mut s) = TcpStream::connect(addr).await {
            let _ = s.write_all(&bytes).await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rounds
}

/// A batch of one small record whose zstd frame declares and inflates to `inflated` bytes.
fn zstd_bomb(inflated: usize) -> Bytes {
    use std::io::Write;
    let mut b = BatchBuilder::new(Compression::Zstd(1));
    b.push(&NewRecord {
        key: None,
        value: Some(Bytes::from_static(b"x")),
        headers: Vec::new(),
        timestamp: 1,
    });
    let honest = b.build().expect("batch");
    let header_len = 65;
    let mut frame = Vec::new();
    {
        let mut enc = zstd::stream::Encoder::new(&mut frame, 19).expect("encoder");
        enc.set_pledged_src_size(Some(inflated as u64))
            .expect("pledged size");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..inflated / zeros.len() {
            enc.write_all(&zeros).expect("compress");
        }
        enc.finish().expect("finish");
    }
    let mut out = honest[..header_len].to_vec();
    out.extend_from_slice(&(inflated as u32).to_le_bytes());
    out.extend_from_slice(&frame);
    let length = (out.len() - 12) as u32;
    out[8..12].copy_from_slice(&length.to_le_bytes());
    let crc = crc32c::crc32c(&out[25..]);
    out[21..25].copy_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

/// Produces zstd bombs, one after the other; every one must be refused `BATCH_TOO_LARGE`
/// (`INVALID_ARGUMENT`): its declared uncompressed length is over `max_batch_bytes`.
async fn bombs(client: Client, stop: Arc<AtomicBool>) -> u64 {
    let bomb = zstd_bomb(200 << 20);
    assert!(
        bomb.len() < 64 * 1024,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let req = v1::ProduceRequest {
            log: "target".into(),
            partition: 0,
            payload: Some(v1::produce_request::Payload::Batch(bomb.clone())),
            ..Default::default()
        };
        match client.produce_raw(req).await {
            Err(ClientError::Server {
                code: tonic::Code::InvalidArgument,
                reason: Some(Reason::BatchTooLarge),
                ..
            }) => {}
            other => panic!("a zstd bomb must be refused BATCH_TOO_LARGE, got {other:?}"),
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sent
}

/// Holds 100 silent sockets from each of four addresses, renewed every 3 seconds.
async fn idle_flood(addr: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let mut opened = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut held = Vec::new();
        for a in 20..24u8 {
            for _ in 0..100 {
                if let Ok(Ok(s)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    connect_from(IpAddr::from([127, 0, 0, a]), addr),
                )
                .await
                {
                    held.push(s);
                    opened += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    opened
}

/// An HTTP/2 connection, driven in the background.
async fn h2_connect(addr: SocketAddr) -> Option<h2::client::SendRequest<Bytes>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (send, conn) = h2::client::handshake(tcp).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.ok()
}

fn grpc_request(addr: SocketAddr, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request")
}

/// Messages declaring 80 MiB (the maximum is 65 MiB), 2 MiB of which are sent: each must be
/// answered `OUT_OF_RANGE` (tonic's refusal from the length prefix, before the message is read).
async fn oversized(addr: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(mut h2) = h2_connect(addr).await {
            if let Ok((response, mut body)) =
                h2.send_request(grpc_request(addr, "/pyralog.v1.Producer/Produce"), false)
            {
                let mut prefix = vec![0u8];
                prefix.extend_from_slice(&(80u32 << 20).to_be_bytes());
                let _ = body.send_data(Bytes::from(prefix), false);
                let _ = body.send_data(Bytes::from(noise(sent, 2 << 20)), false);
                let answered =
                    tokio::time::timeout(Duration::from_secs(10), grpc_outcome(response)).await;
                match answered {
                    Ok(Ok(GrpcOutcome { code, .. })) if code.as_deref() == Some("11") => {}
                    Ok(other) => panic!("an oversized message must be OUT_OF_RANGE, got {other:?}"),
                    Err(_) => panic!("an oversized message got no answer in 10 s"),
                }
                sent += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sent
}

/// Ten calls at a time whose message never arrives whole: each must be answered
/// `DEADLINE_EXCEEDED` (`TIMEOUT`) once `server.request_message_timeout` has passed.
async fn half_sent(addr: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(h2) = h2_connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut waiting = Vec::new();
        let mut bodies = Vec::new();
        for _ in 0..10 {
            let Ok(mut h2) = h2.clone().ready().await else {
                break;
            };
            if let Ok((response, mut body)) =
                h2.send_request(grpc_request(addr, "/pyralog.v1.Producer/Produce"), false)
            {
                let _ = body.send_data(Bytes::from_static(&[0, 0, 0, 4, 0, 1, 2, 3]), false);
                bodies.push(body);
                waiting.push(response);
                sent += 1;
            }
        }
        for response in waiting {
            let answered =
                tokio::time::timeout(Duration::from_secs(15), grpc_outcome(response)).await;
            match answered {
                Ok(Ok(GrpcOutcome { code, reason, .. }))
                    if code.as_deref() == Some("4") && reason.as_deref() == Some("TIMEOUT") => {}
                Ok(other) => {
                    panic!("a half-sent message must be DEADLINE_EXCEEDED (TIMEOUT), got {other:?}")
                }
                Err(_) => panic!("a half-sent message held its stream for 15 s"),
            }
        }
    }
    sent
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn well_behaved_clients_keep_their_pace_under_hostile_load() {
    let baseline_secs = env_usize("PYRALOG_E2E_BASELINE_SECS", 15) as u64;
    let hostile_secs = env_usize("PYRALOG_E2E_HOSTILE_SECS", 60) as u64;
    // Both timeouts shorter than their defaults (30 s and 10 s), so that within the 60-second
    // run the node's own timeouts close the attackers' streams and sockets many times over:
    // a half-sent round is answered after 2 s instead of holding its ten streams for 30 s
    // (two rounds a minute, each over the attacker's 15 s patience), and a flood's silent
    // sockets are closed by the node before the attacker drops them at its 3 s renewal
    // (with 10 s the node would never close one). The bounds themselves are what is tested,
    // not their default values.
    let node = TestNode::start_with_env(&[
        ("PYRALOG_SERVER__REQUEST_MESSAGE_TIMEOUT", "2s"),
        ("PYRALOG_SERVER__FIRST_BYTES_TIMEOUT", "2s"),
    ]);
    let pid = node.pid().expect("pid");
    let addr = socket_addr(&node);
    let client = node.client().await;
    for log in ["steady", "target"] {
        client
            .create_log(
                log,
                v1::LogConfig {
                    fsync: Some("every_batch".into()),
                    ..Default::default()
                },
            )
            .await
            .expect("create");
    }

    let progress = Arc::new(Progress::default());
    let stop_pair = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce_until(
        node.client().await,
        progress.clone(),
        stop_pair.clone(),
    ));
    let consumer = tokio::spawn(consume_until(
        node.client().await,
        progress.clone(),
        stop_pair.clone(),
    ));
    let snapshot = |p: &Progress| {
        (
            p.acked.load(Ordering::Acquire) * VALUE_BYTES as u64,
            p.consumed_bytes.load(Ordering::Relaxed),
            Instant::now(),
        )
    };

    // Baseline: the pair alone (after a second of warm-up).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (p0, c0, t0) = snapshot(&progress);
    tokio::time::sleep(Duration::from_secs(baseline_secs)).await;
    let (p1, c1, t1) = snapshot(&progress);
    let base_secs = (t1 - t0).as_secs_f64();
    let (base_produce, base_consume) = (mb_s(p1 - p0, base_secs), mb_s(c1 - c0, base_secs));
    let rss_baseline = vm_hwm_mb(pid);

    // The same, next to every attack at once.
    let stop_attacks = Arc::new(AtomicBool::new(false));
    let attacks = vec![
        ("garbage", tokio::spawn(garbage(addr, stop_attacks.clone()))),
        (
            "zstd bombs",
            tokio::spawn(bombs(node.client().await, stop_attacks.clone())),
        ),
        (
            "idle sockets",
            tokio::spawn(idle_flood(addr, stop_attacks.clone())),
        ),
        (
            "oversized",
            tokio::spawn(oversized(addr, stop_attacks.clone())),
        ),
        (
            "half-sent",
            tokio::spawn(half_sent(addr, stop_attacks.clone())),
        ),
    ];
    tokio::time::sleep(Duration::from_secs(hostile_secs)).await;
    let (p2, c2, t2) = snapshot(&progress);
    stop_attacks.store(true, Ordering::Relaxed);
    let load_secs = (t2 - t1).as_secs_f64();
    let (load_produce, load_consume) = (mb_s(p2 - p1, load_secs), mb_s(c2 - c1, load_secs));
    let mut counts = Vec::new();
    for (name, task) in attacks {
        let n = task.await.unwrap_or_else(|e| panic!("{name}: {e}"));
        counts.push(format!("{name} {n}"));
    }
    stop_pair.store(true, Ordering::Relaxed);
    producer.await.expect("producer");
    consumer.await.expect("consumer");
    let rss_peak = vm_hwm_mb(pid);

    // Nothing acknowledged is lost: read the whole log back.
    let acked = progress.acked.load(Ordering::Acquire);
    let mut reader = PartitionConsumer::new(
        node.client().await,
        "steady",
        0,
        LogOffset::ZERO,
        ConsumerConfig::default(),
    );
    let mut next = 0u64;
    while next < acked {
        let records = reader.poll().await.expect("read back");
        assert!(
            !records.is_empty(),
            "read back stalled at {next} of {acked}"
        );
        for r in records {
            assert_eq!(r.offset, LogOffset(next), "dense offsets");
            assert_eq!(r.key.as_deref(), Some(&next.to_le_bytes()[..]));
            assert!(
                r.value.as_deref() == Some(payload(next, VALUE_BYTES).as_slice()),
                "value of record {next}"
            );
            next += 1;
        }
    }

    println!(
        "FIGURES hostile load: baseline {base_secs:.0} s produce {base_produce:.2} MB/s consume \
         {base_consume:.2} MB/s | under attack {load_secs:.0} s produce {load_produce:.2} MB/s \
         consume {load_consume:.2} MB/s ({:.0}% / {:.0}% of baseline) | node VmHWM {rss_baseline} \
         MiB after baseline, {rss_peak} MiB at the end (growth bound {RSS_GROWTH_BOUND_MB}) | {acked} records \
         acknowledged, all read back | attacks: {}",
        load_produce / base_produce * 100.0,
        load_consume / base_consume * 100.0,
        counts.join(", ")
    );
    assert!(
        load_produce >= 0.5 * base_produce,
        "produce under attack {load_produce:.2} MB/s vs baseline {base_produce:.2} MB/s"
    );
    assert!(
        load_consume >= 0.5 * base_consume,
        "consume under attack {load_consume:.2} MB/s vs baseline {base_consume:.2} MB/s"
    );
    assert!(
        rss_peak.saturating_sub(rss_baseline) < RSS_GROWTH_BOUND_MB,
        "node peak RSS grew from {rss_baseline} to {rss_peak} MiB, over the {RSS_GROWTH_BOUND_MB} MiB bound"
    );
}
