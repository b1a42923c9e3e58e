//! `kill -9` during produce (fsync every batch, acks=leader): after restart every acknowledged
//! record is there at its offset, offsets are dense, a torn tail is never served, and the log
//! accepts writes again.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pyralog_client::{
    Client, ConsumerConfig, LogOffset, PartitionConsumer, ProduceRecord, Producer, ProducerConfig,
    Record,
};
use pyralog_e2e::{payload, TestNode};
use pyralog_proto::v1;

const PARTITIONS: u32 = 2;

async fn read_all(client: &Client, log: &str, p: u32) -> Vec<Record> {
    let mut c = PartitionConsumer::new(
        client.clone(),
        log,
        p,
        LogOffset::ZERO,
        ConsumerConfig {
            wait: Duration::ZERO,
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    loop {
        let batch = c.poll().await.expect("poll");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

fn last_segment(node: &TestNode, log: &str, p: u32) -> std::path::PathBuf {
    let dir = node.data_dir().join("logs").join(log).join(p.to_string());
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .expect("partition dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_produce_loses_nothing_acknowledged() {
    let mut node = TestNode::start();
    let client = node.client().await;
    client
        .create_log(
            "crash",
            v1::LogConfig {
                partition_count: Some(PARTITIONS),
                fsync: Some("every_batch".into()),
                segment_bytes: Some(1 << 20),
                max_batch_bytes: Some(256 << 10),
                ..Default::default()
            },
        )
        .await
        .expect("create");

    // Producer task: keeps sending until the node dies; records every acknowledgement.
    let acked: Arc<Mutex<Vec<(u32, LogOffset, u64)>>> = Arc::default();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 32 << 10,
            linger: Duration::from_millis(1),
            retries: 0,
            ..Default::default()
        },
    );
    let acked_w = acked.clone();
    let task = tokio::spawn(async move {
        let mut futs = Vec::new();
        for i in 0u64.. {
            let rec = ProduceRecord::new(Some(format!("k{i}")), payload(i, 200));
            match producer.send("crash", rec).await {
                Ok(f) => futs.push((i, f)),
                Err(_) => break,
            }
            if futs.len() >= 64 {
                let mut failed = false;
                for (i, f) in futs.drain(..) {
                    match f.await {
                        Ok(d) => acked_w
                            .lock()
                            .expect("lock")
                            .push((d.partition, d.offset, i)),
                        Err(_) => failed = true,
                    }
                }
                if failed {
                    break;
                }
            }
        }
    });
    // Let it run, then pull the plug mid-stream.
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if acked.lock().expect("lock").len() > 20_000 {
            break;
        }
    }
    node.kill9();
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 20_000);

    node.restart();
    let client = node.client().await;
    let mut ends = HashMap::new();
    for p in 0..PARTITIONS {
        let records = read_all(&client, "crash", p).await;
        for (j, r) in records.iter().enumerate() {
            assert_eq!(
                r.offset,
                LogOffset(j as u64),
                "dense offsets after recovery"
            );
        }
        for &(ap, off, i) in acked.iter().filter(|a| a.0 == p) {
            let r = records
                .get(off.0 as usize)
                .unwrap_or_else(|| panic!("acknowledged record {i} at {ap}:{off} lost"));
            assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
            assert!(r.value.as_deref() == Some(payload(i, 200).as_slice()));
        }
        ends.insert(p, records.len() as u64);
    }

    // A torn tail: half a batch appended to the active segment, as a crash mid-write leaves.
    node.kill9();
    let seg = last_segment(&node, "crash", 0);
    let whole = {
        let mut b = pyralog_types::batch::BatchBuilder::new(Default::default());
        b.push(&pyralog_types::batch::NewRecord {
            value: Some(Bytes::from(vec![9u8; 500])),
            ..Default::default()
        });
        b.build().expect("build")
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open segment");
    f.write_all(&whole[..whole.len() / 2]).expect("torn write");
    drop(f);
    node.restart();
    let client = node.client().await;
    let records = read_all(&client, "crash", 0).await;
    assert_eq!(records.len() as u64, ends[&0], "torn tail is not served");
    assert!(records
        .iter()
        .all(|r| r.value.as_deref() != Some(&[9u8; 500][..])));

    // The log accepts writes and offsets continue densely.
    let r = client
        .produce_raw(v1::ProduceRequest {
            log: "crash".into(),
            partition: 0,
            payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
                records: vec![v1::NewRecord {
                    value: Some(Bytes::from_static(b"after")),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        })
        .await
        .expect("write after recovery");
    assert_eq!(r.base_offset, ends[&0]);
    let records = read_all(&client, "crash", 0).await;
    assert_eq!(
        records.last().and_then(|r| r.value.clone()).as_deref(),
        Some(&b"after"[..])
    );
    assert!(
        node.log().contains("truncat"),
        "recovery logs the truncation:\n{}",
        node.log()
    );
}
