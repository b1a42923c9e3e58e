//! Small helpers the cluster tests share: create a log once the cluster takes it, build a
//! one-record produce request, read back what a node holds of a partition.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::Client;
use pyralog_proto::v1;
use pyralog_types::Reason;

/// Creates `log`, retrying retriable refusals (a cluster still electing) for up to 30 s; an
/// existing log counts as created. Panics with `context` otherwise.
pub async fn create_log_when_ready(c: &Client, log: &str, config: v1::LogConfig, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.create_log(log, config.clone()).await {
            Ok(_) => return,
            Err(e) if e.reason() == Some(Reason::LogAlreadyExists) => return,
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("create log {log}: {e}\n{context}"),
        }
    }
}

/// A produce request of one record with `value` to `log`/`partition`.
pub fn one_record(
    log: &str,
    partition: u32,
    value: String,
    acks: v1::AckPolicy,
    timeout_ms: u32,
) -> v1::ProduceRequest {
    v1::ProduceRequest {
        log: log.into(),
        partition,
        acks: acks as i32,
        timeout_ms,
        payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
            records: vec![v1::NewRecord {
                value: Some(Bytes::from(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

/// Every record `c`'s node holds of `log`/`partition` below `hw`, as (offset, value) in
/// offset order. Panics if the node cannot serve all of it.
pub async fn read_partition(c: &Client, log: &str, partition: u32, hw: u64) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    let mut from = 0;
    while from < hw {
        let resp = c
            .fetch(v1::FetchRequest {
                log: log.into(),
                partition,
                start: Some(v1::fetch_request::Start::Offset(from)),
                max_bytes: 4 << 20,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("fetch {log}/{partition}@{from}: {e}"));
        assert!(
            !resp.batches.is_empty(),
            "nothing at {log}/{partition}@{from} < {hw}"
        );
        for batch in pyralog_types::batch::split_batches(resp.batches) {
            for r in batch.expect("batch").records().expect("records") {
                if r.offset.0 >= from && r.offset.0 < hw {
                    out.push((r.offset.0, r.value.clone().unwrap_or_default()));
                }
            }
        }
        from = resp.next_offset;
    }
    out
}
