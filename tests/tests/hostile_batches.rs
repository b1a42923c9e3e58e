//! Issue 14 replayed against a real node: binary batches with a valid CRC whose header lies
//! about their records are refused with `CORRUPT_BATCH` and leave the high watermark where it
//! was; zstd bombs are refused with `BATCH_TOO_LARGE` before they inflate, so sixteen at once
//! neither grow the node's memory nor stall a well-behaved producer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{Client, ClientError, Compression};
use pyralog_e2e::TestNode;
use pyralog_proto::v1;
use pyralog_types::batch::{assign, BatchBuilder, NewRecord, HEADER_LEN};
use pyralog_types::{Epoch, LogOffset, Reason};

// Header positions (see `pyralog_types::batch`).
const OFF_CRC: usize = 21;
const OFF_ATTRIBUTES: usize = 25;
const OFF_LAST_OFFSET_DELTA: usize = 27;
const OFF_MAX_TS: usize = 43;

const T0: i64 = 1_700_000_000_000_000;

fn record(i: i64, value: Option<&'static [u8]>) -> NewRecord {
    NewRecord {
        timestamp: T0 + i,
        value: value.map(Bytes::from_static),
        ..Default::default()
    }
}

/// A batch whose records sit at `deltas` (the builder's header agrees with them).
fn at_deltas(deltas: &[u32]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, d) in deltas.iter().enumerate() {
        b.push_at(*d, &record(i as i64, Some(b"v")))
            .expect("increasing");
    }
    b.build().expect("build")
}

/// Writes `value` at `at`, then the length and CRC a forger computes: only validation stands
/// between these bytes and the log.
fn forged(bytes: &[u8], at: usize, value: &[u8]) -> Bytes {
    let mut v = bytes.to_vec();
    v[at..at + value.len()].copy_from_slice(value);
    reseal(v)
}

fn reseal(mut v: Vec<u8>) -> Bytes {
    let len = (v.len() - 12) as u32;
    v[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&v[25..]);
    v[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    Bytes::from(v)
}

/// A zstd batch of a few KB whose one frame inflates to 256 MiB of zeros.
fn zstd_bomb() -> Bytes {
    use std::io::Write;
    let size: u64 = 256 << 20;
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).expect("encoder");
    enc.set_pledged_src_size(Some(size)).expect("pledge");
    enc.include_contentsize(true).expect("content size");
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&chunk).expect("compress");
    }
    let frame = enc.finish().expect("finish");
    let mut b = BatchBuilder::new(Compression::Zstd(1));
    b.push(&record(0, Some(b"v")));
    let mut v = b.build().expect("build")[..HEADER_LEN].to_vec();
    v.extend_from_slice(&(size as u32).to_le_bytes());
    v.extend_from_slice(&frame);
    reseal(v)
}

fn batch_req(log: &str, batch: Bytes) -> v1::ProduceRequest {
    v1::ProduceRequest {
        log: log.to_owned(),
        partition: 0,
        payload: Some(v1::produce_request::Payload::Batch(batch)),
        ..Default::default()
    }
}

fn good_req(log: &str, values: &[&'static [u8]]) -> v1::ProduceRequest {
    let mut b = BatchBuilder::new(Compression::Zstd(1));
    for (i, v) in values.iter().enumerate() {
        b.push(&record(i as i64, Some(v)));
    }
    batch_req(log, b.build().expect("build"))
}

async fn high_watermark(client: &Client, log: &str) -> u64 {
    client
        .fetch(v1::FetchRequest {
            log: log.to_owned(),
            partition: 0,
            start: Some(v1::fetch_request::Start::Offset(0)),
            format: v1::FetchFormat::Records as i32,
            ..Default::default()
        })
        .await
        .expect("fetch")
        .high_watermark
}

async fn offsets(client: &Client, log: &str) -> Vec<u64> {
    let r = client
        .fetch(v1::FetchRequest {
            log: log.to_owned(),
            partition: 0,
            start: Some(v1::fetch_request::Start::Offset(0)),
            format: v1::FetchFormat::Records as i32,
            max_bytes: 1 << 20,
            ..Default::default()
        })
        .await
        .expect("fetch");
    r.records.iter().map(|r| r.offset).collect()
}

/// Peak resident memory of a process so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

fn expect_refused(e: &ClientError, reason: Reason, mentions: &str, what: &str) {
    assert_eq!(e.reason(), Some(reason), "{what}: {e}");
    assert!(e.to_string().contains(mentions), "{what}: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_whose_header_lies_are_refused_and_the_high_watermark_stays() {
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log("hostile", v1::LogConfig::default())
        .await
        .expect("create");
    client
        .produce_raw(good_req("hostile", &[b"a", b"b", b"c"]))
        .await
        .expect("good produce");
    assert_eq!(high_watermark(&client, "hostile").await, 3);

    let two = {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(&record(10, Some(b"x")));
        b.push(&record(30, Some(b"y")));
        b.build().expect("build")
    };
    let one = {
        let mut b = BatchBuilder::new(Compression::Zstd(1));
        b.push(&record(0, Some(b"x")));
        b.build().expect("build")
    };
    let mut first_ts_off = two.to_vec();
    first_ts_off[HEADER_LEN + 2] = 2; // the first record's timestamp delta: +1
    let cases: Vec<(&str, Bytes, &str)> = vec![
        (
            "offset deltas 0,5 with last_offset_delta 5",
            at_deltas(&[0, 5]),
            "last_offset_delta",
        ),
        (
            "last_offset_delta 7 with 2 records",
            forged(&two, OFF_LAST_OFFSET_DELTA, &7u32.to_le_bytes()),
            "last_offset_delta",
        ),
        (
            "last_offset_delta 0xFFFFFFFF with one record",
            forged(&one, OFF_LAST_OFFSET_DELTA, &u32::MAX.to_le_bytes()),
            "last_offset_delta",
        ),
        (
            "max_timestamp below a record's",
            forged(&two, OFF_MAX_TS, &(T0 + 20).to_le_bytes()),
            "max_timestamp",
        ),
        (
            "first_timestamp not the first record's",
            reseal(first_ts_off),
            "first_timestamp",
        ),
        (
            "an unknown attribute bit",
            forged(&two, OFF_ATTRIBUTES, &0x100u16.to_le_bytes()),
            "attributes",
        ),
        (
            "a tombstone flag without a tombstone",
            forged(&two, OFF_ATTRIBUTES, &0b100u16.to_le_bytes()),
            "tombstone",
        ),
    ];
    for (what, bytes, field) in cases {
        let e = client
            .produce_raw(batch_req("hostile", bytes))
            .await
            .expect_err(what);
        expect_refused(&e, Reason::CorruptBatch, field, what);
        assert_eq!(
            high_watermark(&client, "hostile").await,
            3,
            "{what}: the high watermark must not move"
        );
    }
    let e = client
        .produce_raw(batch_req("hostile", zstd_bomb()))
        .await
        .expect_err("zstd bomb");
    expect_refused(&e, Reason::BatchTooLarge, "268435456", "zstd bomb");
    assert_eq!(high_watermark(&client, "hostile").await, 3);

    // Whatever base offset a producer writes, the leader assigns its own (and does not
    // overflow adding record deltas to it while validating).
    let mut top = two.to_vec();
    assign(&mut top, LogOffset(u64::MAX), Epoch(9));
    let r = client
        .produce_raw(batch_req("hostile", Bytes::from(top)))
        .await
        .expect("a batch with any base offset");
    assert_eq!((r.base_offset, r.last_offset), (3, 4));
    client
        .produce_raw(good_req("hostile", &[b"d"]))
        .await
        .expect("good produce");
    assert_eq!(
        offsets(&client, "hostile").await,
        (0..6).collect::<Vec<_>>()
    );
    assert_eq!(high_watermark(&client, "hostile").await, 6);
    assert!(
        !node.log().contains("panicked"),
        "node log:\n{}",
        node.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_zstd_bombs_are_refused_quickly_in_bounded_memory() {
    let node = TestNode::start();
    let pid = node.pid().expect("running");
    let client = node.client().await;
    client
        .create_log("bombed", v1::LogConfig::default())
        .await
        .expect("create");
    client
        .produce_raw(good_req("bombed", &[b"warm-up"]))
        .await
        .expect("warm-up produce");
    let baseline = peak_rss(pid);
    let bomb = zstd_bomb();
    assert!(bomb.len() < 16 << 10, "a bomb of {} bytes", bomb.len());

    let started = Instant::now();
    let bombs: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            let bomb = bomb.clone();
            tokio::spawn(async move { client.produce_raw(batch_req("bombed", bomb)).await })
        })
        .collect();
    // A well-behaved producer in the middle of the storm.
    let good_started = Instant::now();
    let good = client
        .produce_raw(good_req("bombed", &[b"still", b"served"]))
        .await
        .expect("a good produce during the bombs");
    let good_took = good_started.elapsed();
    let mut answers = Vec::new();
    for b in bombs {
        answers.push(b.await.expect("task"));
    }
    let all_refused = started.elapsed();
    let grew = peak_rss(pid).saturating_sub(baseline);
    eprintln!(
        "16 zstd bombs of {} bytes: refused in {all_refused:?}; a good produce took \
         {good_took:?}; peak RSS {} MB over a baseline of {} MB",
        bomb.len(),
        grew >> 20,
        baseline >> 20
    );
    assert!(grew < 200 << 20, "peak RSS grew by {} MB", grew >> 20);
    for a in answers {
        let e = a.expect_err("a bomb is refused");
        assert_eq!(e.reason(), Some(Reason::BatchTooLarge), "{e}");
    }
    assert_eq!((good.base_offset, good.last_offset), (1, 2));
    assert!(
        all_refused < Duration::from_secs(5),
        "16 bombs took {all_refused:?}"
    );
    assert!(
        good_took < Duration::from_secs(2),
        "a good produce took {good_took:?}"
    );
    client
        .produce_raw(good_req("bombed", &[b"after"]))
        .await
        .expect("a good produce after the bombs");
    assert_eq!(high_watermark(&client, "bombed").await, 4);
}
