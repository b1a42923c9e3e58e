//! One million 1 KiB records with keys and headers through the client to a 4-partition log on
//! `pyralog dev`, read back and checked: keys, values, headers, per-partition order, dense
//! offsets. Prints throughput next to the disk's raw append+fsync speed measured in the same
//! run. `PYRALOG_E2E_RECORDS` changes the count.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use pyralog_client::{
    ConsumerConfig, Header, LogOffset, PartitionConsumer, ProduceRecord, Producer, ProducerConfig,
};
use pyralog_e2e::{disk_baseline_mb_s, env_usize, payload, TestNode};
use pyralog_proto::v1;
use pyralog_types::partitioner::partition_for_key;

const PARTITIONS: u32 = 4;
const VALUE_BYTES: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_records_round_trip() {
    let n = env_usize("PYRALOG_E2E_RECORDS", 1_000_000) as u64;
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log(
            "million",
            v1::LogConfig {
                partition_count: Some(PARTITIONS),
                ..Default::default()
            },
        )
        .await
        .expect("create");

    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut expected: Vec<Vec<u64>> = vec![Vec::new(); PARTITIONS as usize];
    let mut pending = VecDeque::new();
    let t = Instant::now();
    for i in 0..n {
        let key = format!("key-{i}");
        let p = partition_for_key(key.as_bytes(), PARTITIONS);
        expected[p as usize].push(i);
        let record = ProduceRecord {
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(payload(i, VALUE_BYTES))),
            headers: vec![Header {
                key: "i".into(),
                value: Bytes::copy_from_slice(&i.to_le_bytes()),
            }],
            ..Default::default()
        };
        let fut = producer.send("million", record).await.expect("send");
        pending.push_back((p, i, fut));
        while pending.len() > 50_000 {
            check_ack(&expected, pending.pop_front()).await;
        }
    }
    producer.flush().await.expect("flush");
    while let Some(x) = pending.pop_front() {
        check_ack(&expected, Some(x)).await;
    }
    let produce_secs = t.elapsed().as_secs_f64();
    producer.close().await.expect("close");

    let t = Instant::now();
    let mut consumed = 0u64;
    let mut bytes = 0u64;
    for p in 0..PARTITIONS {
        let want = &expected[p as usize];
        let mut c = PartitionConsumer::new(
            client.clone(),
            "million",
            p,
            LogOffset::ZERO,
            ConsumerConfig::default(),
        );
        let mut j = 0usize;
        while j < want.len() {
            let records = c.poll().await.expect("poll");
            assert!(
                !records.is_empty(),
                "partition {p} stalled at {j}/{}",
                want.len()
            );
            for r in records {
                let i = want[j];
                assert_eq!(
                    r.offset,
                    LogOffset(j as u64),
                    "dense offsets in partition {p}"
                );
                assert_eq!(r.key.as_deref(), Some(format!("key-{i}").as_bytes()));
                let value = r.value.as_deref().expect("value");
                assert!(
                    value == payload(i, VALUE_BYTES).as_slice(),
                    "value of record {i}"
                );
                assert_eq!(r.headers.len(), 1);
                assert_eq!(r.headers[0].key, "i");
                assert_eq!(&r.headers[0].value[..], &i.to_le_bytes());
                bytes += value.len() as u64;
                j += 1;
                consumed += 1;
            }
        }
        let end = c.poll().await.expect("poll at end");
        assert!(end.is_empty(), "no records beyond the produced ones");
    }
    let consume_secs = t.elapsed().as_secs_f64();
    assert_eq!(consumed, n);

    let disk = disk_baseline_mb_s(node.data_dir(), 256 << 20, 1 << 20);
    let mb = (n as f64 * VALUE_BYTES as f64) / 1e6;
    let produce_mb_s = mb / produce_secs;
    let consume_mb_s = bytes as f64 / 1e6 / consume_secs;
    println!(
        "FIGURES records={n} value_bytes={VALUE_BYTES} partitions={PARTITIONS} \
         produce={:.0} rec/s {produce_mb_s:.1} MB/s | consume={:.0} rec/s {consume_mb_s:.1} MB/s | \
         raw append+fsync(1MiB) {disk:.1} MB/s | produce/raw={:.2}",
        n as f64 / produce_secs,
        consumed as f64 / consume_secs,
        produce_mb_s / disk
    );
}

async fn check_ack(
    expected: &[Vec<u64>],
    item: Option<(u32, u64, pyralog_client::DeliveryFuture)>,
) {
    let Some((p, i, fut)) = item else { return };
    let d = fut.await.expect("acknowledged");
    assert_eq!(d.partition, p);
    let pos = expected[p as usize]
        .binary_search(&i)
        .expect("record expected in partition");
    assert_eq!(
        d.offset,
        LogOffset(pos as u64),
        "record {i} stored in send order"
    );
}

/// A consumer catching up keeps a fetch in flight ahead of it; a seek must drop that fetch
/// and read from where it asked, forwards and backwards, with nothing skipped or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_drops_the_fetch_sent_ahead_and_reads_from_the_new_position() {
    const N: u64 = 20_000;
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log("ahead", v1::LogConfig::default())
        .await
        .expect("create");
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut acks = Vec::new();
    for i in 0..N {
        let record = ProduceRecord {
            value: Some(Bytes::from(payload(i, VALUE_BYTES))),
            ..Default::default()
        };
        acks.push(producer.send("ahead", record).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    for a in acks {
        a.await.expect("ack");
    }
    producer.close().await.expect("close");

    // Small answers (about 60 records each), so every poll leaves a fetch in flight.
    let mut c = PartitionConsumer::new(
        client.clone(),
        "ahead",
        0,
        LogOffset::ZERO,
        ConsumerConfig {
            max_bytes: 64 << 10,
            ..ConsumerConfig::default()
        },
    );
    let first = c.poll().await.expect("poll");
    assert_eq!(first.first().map(|r| r.offset), Some(LogOffset(0)));
    assert!((first.len() as u64) < N / 10, "{} records", first.len());
    for at in [12_345u64, 5, N - 3] {
        c.seek(LogOffset(at));
        let mut next = at;
        while next < N {
            let records = c.poll().await.expect("poll");
            assert!(!records.is_empty(), "stalled at {next}");
            for r in records {
                assert_eq!(r.offset, LogOffset(next), "after a seek to {at}");
                assert!(r.value.as_deref() == Some(payload(next, VALUE_BYTES).as_slice()));
                next += 1;
            }
            if at == 5 && next > 2_000 {
                break;
            }
        }
    }
    assert!(c.poll().await.expect("poll at the end").is_empty());
}
