//! Bad input gets a clear error with a machine-readable reason, never a panic, and the node
//! keeps serving afterwards.

use bytes::Bytes;
use pyralog_client::{ClientError, Compression, LogOffset};
use pyralog_e2e::{raw, TestNode};
use pyralog_proto::v1;
use pyralog_types::batch::{assign, BatchBuilder, NewRecord};
use pyralog_types::{Epoch, Reason};

fn reason(e: &ClientError) -> Option<Reason> {
    e.reason()
}

fn records_req(log: &str, partition: u32, values: Vec<Vec<u8>>) -> v1::ProduceRequest {
    v1::ProduceRequest {
        log: log.to_owned(),
        partition,
        payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
            records: values
                .into_iter()
                .map(|v| v1::NewRecord {
                    value: Some(Bytes::from(v)),
                    ..Default::default()
                })
                .collect(),
        })),
        acks: 0,
        timeout_ms: 0,
        ..Default::default()
    }
}

fn fetch_req(log: &str, partition: u32, offset: u64) -> v1::FetchRequest {
    v1::FetchRequest {
        log: log.to_owned(),
        partition,
        start: Some(v1::fetch_request::Start::Offset(offset)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_catalogue() {
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log(
            "orders",
            v1::LogConfig {
                partition_count: Some(2),
                max_record_bytes: Some(1000),
                max_batch_bytes: Some(64 * 1024),
                ..Default::default()
            },
        )
        .await
        .expect("create orders");

    // Invalid log names, on every entry point.
    let long = "x".repeat(300);
    for name in ["a/b", "A", "x@y", "", long.as_str(), ".."] {
        let e = client
            .create_log(name, v1::LogConfig::default())
            .await
            .expect_err("bad name must be rejected");
        assert_eq!(
            reason(&e),
            Some(Reason::InvalidLogName),
            "create {name:?}: {e}"
        );
        let e = client
            .produce_raw(records_req(name, 0, vec![b"v".to_vec()]))
            .await
            .expect_err("bad name");
        assert_eq!(
            reason(&e),
            Some(Reason::InvalidLogName),
            "produce {name:?}: {e}"
        );
        let e = client
            .fetch(fetch_req(name, 0, 0))
            .await
            .expect_err("bad name");
        assert_eq!(
            reason(&e),
            Some(Reason::InvalidLogName),
            "fetch {name:?}: {e}"
        );
        assert!(e.to_string().len() < 400, "message stays bounded: {e}");
    }

    // Unknown log.
    let e = client.describe_log("nope").await.expect_err("unknown");
    assert_eq!(reason(&e), Some(Reason::LogNotFound));
    let e = client
        .fetch(fetch_req("nope", 0, 0))
        .await
        .expect_err("unknown");
    assert_eq!(reason(&e), Some(Reason::LogNotFound));

    // Zero partitions and other invalid configs.
    let e = client
        .create_log(
            "zero",
            v1::LogConfig {
                partition_count: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect_err("zero partitions");
    assert_eq!(reason(&e), Some(Reason::InvalidConfig));
    assert!(e.to_string().contains("partition_count"), "{e}");
    let e = client
        .create_log(
            "badfsync",
            v1::LogConfig {
                fsync: Some("sometimes".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("bad fsync");
    assert_eq!(reason(&e), Some(Reason::InvalidConfig));

    // Existing log.
    let e = client
        .create_log("orders", v1::LogConfig::default())
        .await
        .expect_err("exists");
    assert_eq!(reason(&e), Some(Reason::LogAlreadyExists));

    // Unknown partition.
    let e = client
        .produce_raw(records_req("orders", 7, vec![b"v".to_vec()]))
        .await
        .expect_err("partition 7");
    assert_eq!(reason(&e), Some(Reason::PartitionNotFound));

    // Record over max_record_bytes (records payload and encoded batch).
    let e = client
        .produce_raw(records_req("orders", 0, vec![vec![0u8; 1001]]))
        .await
        .expect_err("record too large");
    assert_eq!(reason(&e), Some(Reason::RecordTooLarge), "{e}");
    let mut b = BatchBuilder::new(Compression::Zstd(1));
    b.push(&NewRecord {
        value: Some(Bytes::from(vec![7u8; 5000])),
        ..Default::default()
    });
    let e = client
        .produce_raw(v1::ProduceRequest {
            log: "orders".into(),
            partition: 0,
            payload: Some(v1::produce_request::Payload::Batch(
                b.build().expect("build"),
            )),
            ..Default::default()
        })
        .await
        .expect_err("compressed record too large");
    assert_eq!(reason(&e), Some(Reason::RecordTooLarge), "{e}");

    // Batch over max_batch_bytes.
    let many: Vec<Vec<u8>> = (0..100).map(|_| vec![1u8; 900]).collect();
    let e = client
        .produce_raw(records_req("orders", 0, many))
        .await
        .expect_err("batch too large");
    assert_eq!(reason(&e), Some(Reason::BatchTooLarge), "{e}");

    // A batch with a bad CRC, and bytes that are not a batch at all.
    let mut b = BatchBuilder::new(Compression::None);
    b.push(&NewRecord {
        value: Some(Bytes::from_static(b"hello")),
        ..Default::default()
    });
    let mut bytes = b.build().expect("build").to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    for payload in [
        Bytes::from(bytes),
        Bytes::from_static(b"definitely not a batch"),
    ] {
        let e = client
            .produce_raw(v1::ProduceRequest {
                log: "orders".into(),
                partition: 0,
                payload: Some(v1::produce_request::Payload::Batch(payload)),
                ..Default::default()
            })
            .await
            .expect_err("corrupt batch");
        assert_eq!(reason(&e), Some(Reason::CorruptBatch), "{e}");
    }
    let e = client
        .produce_raw(v1::ProduceRequest {
            log: "orders".into(),
            partition: 0,
            payload: None,
            ..Default::default()
        })
        .await
        .expect_err("no payload");
    assert_eq!(reason(&e), Some(Reason::InvalidRequest));

    // A good write, then a fetch beyond the end.
    let ok = client
        .produce_raw(records_req("orders", 0, vec![b"a".to_vec(), b"b".to_vec()]))
        .await
        .expect("good produce");
    assert_eq!((ok.base_offset, ok.last_offset), (0, 1));
    let e = client
        .fetch(fetch_req("orders", 0, 3))
        .await
        .expect_err("beyond end");
    assert_eq!(reason(&e), Some(Reason::OffsetOutOfRange));
    assert_eq!(e.metadata("latest"), Some("2"));
    assert_eq!(e.metadata("earliest"), Some("0"));
    // At the end (not beyond) is fine: empty.
    let at_end = client
        .fetch(fetch_req("orders", 0, 2))
        .await
        .expect("at end");
    assert!(at_end.batches.is_empty());

    // A batch whose header claims offsets the producer should not set is simply reassigned.
    let mut b = BatchBuilder::new(Compression::None);
    b.push(&NewRecord {
        value: Some(Bytes::from_static(b"c")),
        ..Default::default()
    });
    let mut bytes = b.build().expect("build").to_vec();
    assign(&mut bytes, LogOffset(999), Epoch(42));
    let r = client
        .produce_raw(v1::ProduceRequest {
            log: "orders".into(),
            partition: 0,
            payload: Some(v1::produce_request::Payload::Batch(Bytes::from(bytes))),
            ..Default::default()
        })
        .await
        .expect("produce");
    assert_eq!(r.base_offset, 2);

    // Malformed protobuf bytes on the wire.
    for path in [
        "/pyralog.v1.Producer/Produce",
        "/pyralog.v1.Producer/ProduceStream",
        "/pyralog.v1.Consumer/Fetch",
        "/pyralog.v1.Admin/CreateLog",
    ] {
        let err = raw::call(
            node.url(),
            path,
            Bytes::from_static(&[0xff, 0xff, 0xff, 0x07, 0x01]),
        )
        .await
        .expect_err("malformed protobuf must fail");
        assert!(
            matches!(
                err.code(),
                tonic::Code::Internal | tonic::Code::InvalidArgument
            ),
            "{path}: {err:?}"
        );
    }

    // Still serving, nothing lost.
    let all = client
        .fetch(v1::FetchRequest {
            format: v1::FetchFormat::Records as i32,
            ..fetch_req("orders", 0, 0)
        })
        .await
        .expect("fetch");
    let values: Vec<_> = all
        .records
        .iter()
        .map(|r| r.value.clone().unwrap_or_default())
        .collect();
    assert_eq!(values, vec![&b"a"[..], b"b", b"c"]);
    assert!(
        !node.log().contains("panicked"),
        "node log:\n{}",
        node.log()
    );
}

#[test]
fn cli_bad_input_exits_2_with_a_message() {
    let node = TestNode::start();
    let out = node.cli(&["logs", "create", "Bad/Name"], None);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("INVALID_LOG_NAME"), "{out:?}");
    let out = node.cli(&["logs", "create", "ok", "--partitions", "0"], None);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("partition_count"), "{out:?}");
    let out = node.cli(&["consume", "missing", "--from-beginning"], None);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("LOG_NOT_FOUND"), "{out:?}");
    let out = node.cli(&["produce"], None);
    assert_eq!(out.code, Some(2), "clap usage error: {out:?}");
    // Unreachable server is a runtime failure (1), with a hint.
    let out = pyralog_e2e::run_cli("http://127.0.0.1:1", &["logs", "list"], None);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("pyralog dev"), "{out:?}");
}
