//! `Producer.ProduceStream` against a real node: a stream's batches are stored in the order
//! sent and answered in that order; a bad request is answered with its reason and the stream
//! goes on; a node with one request in flight per stream still serves every request; an open
//! stream does not hold up shutdown; the client library's producer keeps several batches in
//! flight per partition and delivers every record at the offset of its send order, keeps
//! the records of logs it interleaves apart (each in its log and key's partition, in send
//! order), sends a lone record when its linger ends, keeps each task's send order when tasks
//! share a partition, and sends open batches at once when its byte budget is full.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{Producer, ProducerConfig};
use pyralog_e2e::TestNode;
use pyralog_proto::v1::{self, produce_stream_response::Result as Answer};
use pyralog_types::Reason;
use tonic::Status;

const LOG: &str = "stream";

/// A request of `n` records `"{tag}-{i}"` for partition 0 of [`LOG`].
fn request(tag: &str, n: usize) -> v1::ProduceRequest {
    v1::ProduceRequest {
        log: LOG.into(),
        partition: 0,
        acks: v1::AckPolicy::Leader as i32,
        payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
            records: (0..n)
                .map(|i| v1::NewRecord {
                    value: Some(Bytes::from(format!("{tag}-{i}"))),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

/// Sends `requests` over one stream at once and collects every answer, in order.
async fn stream_all(
    node: &TestNode,
    requests: Vec<v1::ProduceRequest>,
) -> Vec<Result<v1::ProduceResponse, Status>> {
    let channel = tonic::transport::Channel::from_shared(node.url().to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut answers = v1::producer_client::ProducerClient::new(channel)
        .produce_stream(futures::stream::iter(requests))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut out = Vec::new();
    while let Some(answer) = answers.message().await.expect("the stream goes on") {
        out.push(match answer.result.expect("an answer has a result") {
            Answer::Ok(resp) => Ok(resp),
            Answer::Error(e) => Err(Status::with_details(
                tonic::Code::from_i32(e.code),
                e.message,
                e.details,
            )),
        });
    }
    out
}

fn reason(status: &Status) -> Option<Reason> {
    pyralog_proto::status::reason_of(status).map(|(r, _)| r)
}

async fn values_from_start(node: &TestNode) -> Vec<String> {
    values_of(node, LOG, 0).await
}

/// Creates `log` with `partitions` partitions.
async fn create(client: &pyralog_client::Client, log: &str, partitions: u32) {
    client
        .create_log(
            log,
            v1::LogConfig {
                partition_count: Some(partitions),
                ..Default::default()
            },
        )
        .await
        .expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stores_its_batches_in_send_order_and_answers_in_that_order() {
    let node = TestNode::start();
    let client = node.client().await;
    create(&client, LOG, 1).await;
    let requests: Vec<_> = (0..60).map(|b| request(&format!("b{b}"), 10)).collect();
    let answers = stream_all(&node, requests).await;
    assert_eq!(answers.len(), 60);
    for (b, answer) in answers.iter().enumerate() {
        let resp = answer.as_ref().expect("every request succeeds");
        assert_eq!(resp.base_offset, b as u64 * 10, "batch {b}");
        assert_eq!(resp.last_offset, b as u64 * 10 + 9, "batch {b}");
    }
    let expected: Vec<String> = (0..60)
        .flat_map(|b| (0..10).map(move |i| format!("b{b}-{i}")))
        .collect();
    assert_eq!(values_from_start(&node).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_is_answered_with_its_reason_and_the_stream_goes_on() {
    let node = TestNode::start();
    let client = node.client().await;
    create(&client, LOG, 1).await;
    let corrupt = {
        let mut bytes =
            pyralog_types::batch::BatchBuilder::new(pyralog_types::batch::Compression::None);
        bytes.push(&pyralog_types::batch::NewRecord {
            timestamp: 1,
            value: Some(Bytes::from_static(b"x")),
            ..Default::default()
        });
        let mut v = bytes.build().expect("build").to_vec();
        let last = v.len() - 1;
        v[last] ^= 0xff;
        Bytes::from(v)
    };
    let requests = vec![
        request("first", 3),
        v1::ProduceRequest {
            payload: None,
            ..request("no-payload", 1)
        },
        v1::ProduceRequest {
            payload: Some(v1::produce_request::Payload::Batch(corrupt)),
            ..request("corrupt", 1)
        },
        v1::ProduceRequest {
            log: "nope".into(),
            ..request("unknown-log", 1)
        },
        v1::ProduceRequest {
            acks: 99,
            ..request("bad-acks", 1)
        },
        v1::ProduceRequest {
            partition: 7,
            ..request("no-partition", 1)
        },
        request("last", 2),
    ];
    let answers = stream_all(&node, requests).await;
    let reasons: Vec<Option<Reason>> = answers
        .iter()
        .map(|a| a.as_ref().err().and_then(reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            None,
            Some(Reason::InvalidRequest),
            Some(Reason::CorruptBatch),
            Some(Reason::LogNotFound),
            Some(Reason::InvalidRequest),
            Some(Reason::PartitionNotFound),
            None,
        ],
        "{answers:?}"
    );
    assert_eq!(answers[6].as_ref().map(|r| r.base_offset).ok(), Some(3));
    assert_eq!(
        values_from_start(&node).await,
        vec!["first-0", "first-1", "first-2", "last-0", "last-1"]
    );
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_in_flight_per_stream_still_serves_them_all_in_order() {
    let node = TestNode::start_with_env(&[("PYRALOG_PRODUCE__MAX_IN_FLIGHT_PER_STREAM", "1")]);
    let client = node.client().await;
    create(&client, LOG, 1).await;
    let answers = stream_all(
        &node,
        (0..20).map(|b| request(&format!("b{b}"), 5)).collect(),
    )
    .await;
    let bases: Vec<u64> = answers
        .into_iter()
        .map(|a| a.expect("success").base_offset)
        .collect();
    assert_eq!(bases, (0..20).map(|b| b * 5).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_does_not_hold_up_shutdown() {
    let mut node = TestNode::start();
    let client = node.client().await;
    create(&client, LOG, 1).await;
    let channel = tonic::transport::Channel::from_shared(node.url().to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(request("only", 1)).await.expect("queue");
    let mut answers = v1::producer_client::ProducerClient::new(channel)
        .produce_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("open")
        .into_inner();
    let first = answers.message().await.expect("answer").expect("one");
    assert!(matches!(first.result, Some(Answer::Ok(_))), "{first:?}");
    // The client keeps its side open (`tx` lives) and sends nothing more.
    let started = Instant::now();
    assert_eq!(node.stop(), Some(0), "clean exit");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown took {:?} with a stream open",
        started.elapsed()
    );
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_keeps_batches_in_flight_and_every_record_lands_in_send_order() {
    let node = TestNode::start();
    let client = node.client().await;
    create(&client, LOG, 2).await;
    // Small batches so that many are in flight at once.
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 2048,
            max_in_flight: 5,
            ..Default::default()
        },
    );
    let mut deliveries = Vec::new();
    for i in 0..20_000u32 {
        let record = pyralog_client::ProduceRecord {
            partition: Some(i % 2),
            ..pyralog_client::ProduceRecord::new(None::<Bytes>, format!("r{i}"))
        };
        deliveries.push(producer.send(LOG, record).await.expect("send"));
    }
    producer.close().await.expect("close");
    let mut next = [0u64; 2];
    for (i, d) in deliveries.into_iter().enumerate() {
        let d = d.await.expect("delivered");
        assert_eq!(d.partition, i as u32 % 2);
        assert_eq!(
            d.offset.0, next[d.partition as usize],
            "record {i} out of send order"
        );
        next[d.partition as usize] += 1;
    }
    assert_eq!(next, [10_000, 10_000]);
}

/// Every value of `log`'s `partition`, from offset 0, in offset order.
async fn values_of(node: &TestNode, log: &str, partition: u32) -> Vec<String> {
    let client = node.client().await;
    let fetched = client
        .fetch(v1::FetchRequest {
            log: log.into(),
            partition,
            start: Some(v1::fetch_request::Start::Offset(0)),
            format: v1::FetchFormat::Records as i32,
            max_bytes: 32 << 20,
            max_response_bytes: Some(32 << 20),
            ..Default::default()
        })
        .await
        .expect("fetch");
    fetched
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_producer_interleaving_two_logs_stores_each_record_in_its_log_and_partition_in_send_order(
) {
    let node = TestNode::start();
    let client = node.client().await;
    for (log, partitions) in [("left", 1), ("right", 3)] {
        create(&client, log, partitions).await;
    }
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 4096,
            ..Default::default()
        },
    );
    // Records alternate between the logs; "right" is keyed, so its records spread over its
    // three partitions by key.
    let mut expected: [Vec<Vec<String>>; 2] = [vec![Vec::new()], vec![Vec::new(); 3]];
    let mut deliveries = Vec::new();
    for i in 0..6_000u32 {
        let (log, which, key) = if i % 2 == 0 {
            ("left", 0, None)
        } else {
            ("right", 1, Some(Bytes::from(format!("key-{}", i % 11))))
        };
        let value = format!("{log}-{i}");
        let partition = key
            .as_ref()
            .map_or(0, |k| pyralog_types::partitioner::partition_for_key(k, 3));
        expected[which][partition as usize].push(value.clone());
        let record = pyralog_client::ProduceRecord::new(key, value);
        deliveries.push((
            which,
            partition,
            producer.send(log, record).await.expect("send"),
        ));
    }
    producer.close().await.expect("close");
    for (which, partition, d) in deliveries {
        let d = d.await.expect("delivered");
        assert_eq!(
            (which, d.partition),
            (which, partition),
            "keyed to its partition"
        );
    }
    for (which, log) in ["left", "right"].into_iter().enumerate() {
        for (partition, values) in expected[which].iter().enumerate() {
            assert_eq!(
                &values_of(&node, log, partition as u32).await,
                values,
                "{log}/{partition} holds its records in send order"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_record_is_sent_when_its_linger_ends_without_a_flush() {
    let node = TestNode::start();
    let client = node.client().await;
    create(&client, LOG, 1).await;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger: Duration::from_millis(20),
            ..Default::default()
        },
    );
    // Twice: the linger timer is armed again for a batch opened after the first one sealed.
    for (i, value) in ["first", "second"].into_iter().enumerate() {
        let delivery = producer
            .send(
                LOG,
                pyralog_client::ProduceRecord::new(None::<Bytes>, value),
            )
            .await
            .expect("send");
        let delivered = tokio::time::timeout(Duration::from_secs(10), delivery)
            .await
            .expect("delivered after the linger, with no flush")
            .expect("stored");
        assert_eq!(delivered.offset.0, i as u64);
    }
    assert_eq!(values_from_start(&node).await, ["first", "second"]);
    producer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_sharing_a_producer_and_a_partition_each_keep_their_send_order() {
    let node = TestNode::start();
    let client = node.client().await;
    create(&client, LOG, 1).await;
    // Small batches, so batches are sealed and handed over while other tasks add records.
    let producer = std::sync::Arc::new(Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 1024,
            queued_batches_per_partition: 1,
            ..Default::default()
        },
    ));
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            let mut deliveries = Vec::new();
            for i in 0..1_000u32 {
                let record = pyralog_client::ProduceRecord::new(None::<Bytes>, format!("{t}-{i}"));
                deliveries.push(producer.send(LOG, record).await.expect("send"));
            }
            let mut offsets = Vec::new();
            for d in deliveries {
                offsets.push(d.await.expect("delivered").offset.0);
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let offsets = task.await.expect("task");
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "a task's records are stored in its send order"
        );
        all.extend(offsets);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..8_000).collect::<Vec<u64>>(),
        "each record once, offsets dense"
    );
    std::sync::Arc::into_inner(producer)
        .expect("the only handle")
        .close()
        .await
        .expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_byte_budget_sends_open_batches_at_once_instead_of_at_their_linger() {
    let node = TestNode::start();
    let client = node.client().await;
    create(&client, LOG, 3).await;
    // Room for a few dozen records, batches that never fill, and a linger far beyond the
    // test's patience: only sealing on a full budget delivers these in time.
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            buffer_bytes: 8 * 1024,
            batch_bytes: 1 << 20,
            linger: Duration::from_secs(600),
            ..Default::default()
        },
    );
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for i in 0..2_000u32 {
        let record = pyralog_client::ProduceRecord {
            partition: Some(i % 3),
            ..pyralog_client::ProduceRecord::new(None::<Bytes>, vec![b'x'; 100])
        };
        deliveries.push(
            tokio::time::timeout(Duration::from_secs(30), producer.send(LOG, record))
                .await
                .expect("send finds room without waiting for the linger")
                .expect("send"),
        );
    }
    // Everything but the last batches went out on a full budget; these go with the flush.
    producer.flush().await.expect("flush");
    for d in deliveries {
        d.await.expect("delivered");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    producer.close().await.expect("close");
}
