//! Clean restart with many closed segments scans none of them, and a corrupt byte in a closed
//! segment yields CORRUPT_DATA for reads of that place only; other data and partitions keep
//! serving. `PYRALOG_E2E_RESTART_MB` sets how much data (per partition) to write first.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{
    ConsumerConfig, LogOffset, PartitionConsumer, ProduceRecord, Producer, ProducerConfig,
};
use pyralog_e2e::{env_usize, payload, TestNode};
use pyralog_proto::v1;
use pyralog_types::Reason;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_and_corrupt_closed_segment() {
    let mb = env_usize("PYRALOG_E2E_RESTART_MB", 24);
    let segment_bytes: u64 = env_usize("PYRALOG_E2E_SEGMENT_BYTES", 256 << 10) as u64;
    let mut node = TestNode::start();
    let client = node.client().await;
    client
        .create_log(
            "many",
            v1::LogConfig {
                partition_count: Some(2),
                segment_bytes: Some(segment_bytes),
                max_batch_bytes: Some((segment_bytes / 2) as u32),
                fsync: Some("never".into()),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: (segment_bytes / 4) as usize,
            ..Default::default()
        },
    );
    let per_record = 1000usize;
    let total = (mb << 20) * 2 / per_record;
    let mut futs = Vec::new();
    for i in 0..total as u64 {
        let mut rec = ProduceRecord::new(None::<Bytes>, payload(i, per_record));
        rec.partition = Some((i % 2) as u32);
        futs.push(producer.send("many", rec).await.expect("send"));
        if futs.len() > 10_000 {
            for f in futs.drain(..) {
                f.await.expect("ack");
            }
        }
    }
    for f in futs.drain(..) {
        f.await.expect("ack");
    }
    producer.close().await.expect("close");
    let before = client.describe_log("many").await.expect("describe");
    let segments = before.partitions[0].local_segments;
    assert!(segments > 20, "many segments expected, got {segments}");

    assert_eq!(node.stop(), Some(0), "clean exit on SIGTERM");

    // Corrupt one byte in the middle of a closed segment of partition 0.
    let dir = node.data_dir().join("logs/many/0");
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let victim = logs[logs.len() / 2].clone();
    let victim_base: u64 = victim
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("base offset file name");
    let next_base: u64 = logs[logs.len() / 2 + 1]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("next base");
    let mut bytes = std::fs::read(&victim).expect("read segment");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&victim, &bytes).expect("write segment");

    let t = Instant::now();
    node.restart();
    let client = node.client().await;
    let restart = t.elapsed();
    let after = client.describe_log("many").await.expect("describe");
    // The node listens on a new port after the restart, so only the data is compared.
    let data = |info: &pyralog_client::LogInfo| {
        info.partitions
            .iter()
            .map(|p| {
                (
                    p.start_offset,
                    p.high_watermark,
                    p.epoch,
                    p.local_bytes,
                    p.local_segments,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        data(&before),
        data(&after),
        "a clean restart neither truncates nor rescans closed segments"
    );
    println!(
        "FIGURES clean restart with {} segments ({} MB per partition): {:.0} ms to serving",
        segments * 2,
        mb,
        restart.as_secs_f64() * 1e3
    );

    // Reading through the victim segment hits CORRUPT_DATA, never garbage.
    let mut c = PartitionConsumer::new(
        client.clone(),
        "many",
        0,
        LogOffset(victim_base),
        ConsumerConfig {
            wait: Duration::ZERO,
            max_bytes: 4096,
            ..Default::default()
        },
    );
    let mut saw_corrupt = false;
    while c.position().0 < next_base {
        match c.poll().await {
            Ok(records) => {
                for r in &records {
                    assert!(
                        r.value.as_deref() == Some(payload(r.offset.0 * 2, per_record).as_slice())
                    );
                }
                assert!(!records.is_empty());
            }
            Err(e) => {
                assert_eq!(e.reason(), Some(Reason::CorruptData), "{e}");
                saw_corrupt = true;
                break;
            }
        }
    }
    assert!(saw_corrupt, "the corrupt batch must be reported");

    // The rest of partition 0 and all of partition 1 still serve correct data.
    for (p, from) in [(0u32, next_base), (1, 0)] {
        let mut c = PartitionConsumer::new(
            client.clone(),
            "many",
            p,
            LogOffset(from),
            ConsumerConfig {
                wait: Duration::ZERO,
                ..Default::default()
            },
        );
        let end = after.partitions[p as usize].high_watermark;
        while c.position() < end {
            for r in c.poll().await.expect("healthy data serves") {
                let i = r.offset.0 * 2 + u64::from(p);
                assert!(r.value.as_deref() == Some(payload(i, per_record).as_slice()));
            }
        }
    }
}
