//! The API contract as a stock gRPC client sees it: responses it can receive, errors it can
//! read (bounded, whatever a request echoes), group RPCs that check their names, commits that
//! name real partitions, and reflection for older tools. Raw tonic clients with tonic's
//! defaults (a 4 MiB receive limit) stand in for clients generated in any language.

use bytes::Bytes;
use prost::Message;
use pyralog_e2e::TestNode;
use pyralog_proto::status::reason_of;
use pyralog_proto::v1::{self, consumer_client::ConsumerClient, groups_client::GroupsClient};
use pyralog_types::Reason;
use tonic::transport::Channel;

/// Stock gRPC clients refuse larger messages (tonic's `max_decoding_message_size` default).
const STOCK_RECEIVE_LIMIT: usize = 4 * 1024 * 1024;

async fn channel(node: &TestNode) -> Channel {
    tonic::transport::Endpoint::from_shared(node.url().to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

fn reason(status: &tonic::Status) -> Option<Reason> {
    reason_of(status).map(|(r, _)| r)
}

fn records(values: impl Iterator<Item = Vec<u8>>) -> Option<v1::produce_request::Payload> {
    Some(v1::produce_request::Payload::Records(v1::RecordList {
        records: values
            .map(|v| v1::NewRecord {
                value: Some(Bytes::from(v)),
                ..Default::default()
            })
            .collect(),
    }))
}

fn fetch_records(log: &str, offset: u64) -> v1::FetchRequest {
    v1::FetchRequest {
        log: log.into(),
        start: Some(v1::fetch_request::Start::Offset(offset)),
        format: v1::FetchFormat::Records as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_client_reads_a_backlog_of_small_records() {
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log("small", v1::LogConfig::default())
        .await
        .expect("create");
    // 300,000 records of 8 bytes: ~5 MB stored, ~9 MB as FETCH_FORMAT_RECORDS.
    const N: u64 = 300_000;
    const PER_REQUEST: u64 = 50_000;
    for chunk in 0..N / PER_REQUEST {
        let from = chunk * PER_REQUEST;
        client
            .produce_raw(v1::ProduceRequest {
                log: "small".into(),
                payload: records((from..from + PER_REQUEST).map(|i| i.to_be_bytes().to_vec())),
                ..Default::default()
            })
            .await
            .expect("produce");
    }

    // Default request: no max_bytes, no max_response_bytes; tonic's default receive limit.
    let mut consumer = ConsumerClient::new(channel(&node).await);
    let (mut next, mut fetches) = (0u64, 0);
    while next < N {
        let resp = consumer
            .fetch(fetch_records("small", next))
            .await
            .unwrap_or_else(|s| panic!("fetch from {next} ({fetches} fetches so far): {s:?}"))
            .into_inner();
        let size = resp.encoded_len();
        assert!(size <= 3 << 20, "default bound is 3 MiB, got {size}");
        assert!(size < STOCK_RECEIVE_LIMIT);
        assert!(!resp.records.is_empty(), "progress from {next}");
        for r in &resp.records {
            assert_eq!(r.offset, next);
            assert_eq!(r.value.as_deref(), Some(&next.to_be_bytes()[..]));
            next += 1;
        }
        assert_eq!(resp.next_offset, next);
        fetches += 1;
    }
    assert!(
        fetches >= 3,
        "a ~9 MB backlog takes several bounded fetches: {fetches}"
    );
    println!("tonic client: {N} records in {fetches} fetches");

    // A Python client generated from the .proto alone (grpcio defaults, the shipped retry
    // service config) reads the same backlog.
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(here.join("python/stock_client.py"))
        .arg(here.join("../proto/proto"))
        .arg(here.join("../proto/service_config.json"))
        .arg(node.url().trim_start_matches("http://"))
        .arg("small")
        .arg(N.to_string())
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python stock client failed (needs `pip install grpcio grpcio-tools`, which \
         scripts/test.sh does): {stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one line of JSON from the python client");
    println!("python client: {report}");
    assert_eq!(report["records"], N);
    assert!(report["largest_response"].as_u64().expect("size") <= 3 << 20);

    // The same through a tighter bound of the client's choosing, in both formats.
    let resp = consumer
        .fetch(v1::FetchRequest {
            max_response_bytes: Some(64 * 1024),
            ..fetch_records("small", 1000)
        })
        .await
        .expect("fetch")
        .into_inner();
    assert!(resp.encoded_len() <= 64 * 1024);
    assert_eq!(resp.records.first().map(|r| r.offset), Some(1000));
    assert_eq!(resp.next_offset, 1000 + resp.records.len() as u64);
    let resp = consumer
        .fetch(v1::FetchRequest {
            max_response_bytes: Some(1 << 20),
            format: v1::FetchFormat::Batches as i32,
            ..fetch_records("small", 0)
        })
        .await
        .expect("fetch batches")
        .into_inner();
    assert!(resp.encoded_len() <= 1 << 20);
    assert!(!resp.batches.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_the_response_bound_is_refused_naming_the_setting() {
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log("big", v1::LogConfig::default())
        .await
        .expect("create");
    client
        .produce_raw(v1::ProduceRequest {
            log: "big".into(),
            payload: records(std::iter::once(vec![9u8; 200_000])),
            ..Default::default()
        })
        .await
        .expect("produce");
    let mut consumer = ConsumerClient::new(channel(&node).await);
    for (format, expected) in [
        (v1::FetchFormat::Records, Reason::RecordTooLarge),
        (v1::FetchFormat::Batches, Reason::BatchTooLarge),
    ] {
        let e = consumer
            .fetch(v1::FetchRequest {
                max_response_bytes: Some(100_000),
                format: format as i32,
                ..fetch_records("big", 0)
            })
            .await
            .expect_err("over the bound");
        assert_eq!(reason(&e), Some(expected), "{e:?}");
        assert!(e.message().contains("max_response_bytes"), "{e:?}");
        let (_, meta) = reason_of(&e).expect("reason");
        assert_eq!(
            meta.get("max_response_bytes").map(String::as_str),
            Some("100000")
        );
        // Asking for enough gets it.
        let resp = consumer
            .fetch(v1::FetchRequest {
                max_response_bytes: Some(300_000),
                format: format as i32,
                ..fetch_records("big", 0)
            })
            .await
            .expect("fits")
            .into_inner();
        assert_eq!(resp.next_offset, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_wait_for_the_in_flight_budget_instead_of_failing() {
    // A budget of one fetch: twenty at once all succeed, one after another.
    let node = TestNode::start_with_env(&[
        ("PYRALOG_FETCH__DEFAULT_MAX_BYTES", "1048576"),
        ("PYRALOG_FETCH__MAX_BYTES", "1048576"),
        ("PYRALOG_FETCH__DEFAULT_MAX_RESPONSE_BYTES", "1048576"),
        ("PYRALOG_FETCH__MAX_RESPONSE_BYTES", "1048576"),
        ("PYRALOG_FETCH__MAX_IN_FLIGHT_BYTES", "1048576"),
    ]);
    let client = node.client().await;
    client
        .create_log("busy", v1::LogConfig::default())
        .await
        .expect("create");
    for _ in 0..4 {
        client
            .produce_raw(v1::ProduceRequest {
                log: "busy".into(),
                payload: records((0..100).map(|_| vec![5u8; 5000])),
                ..Default::default()
            })
            .await
            .expect("produce");
    }
    let consumer = ConsumerClient::new(channel(&node).await);
    let fetches = (0..20).map(|i| {
        let mut c = consumer.clone();
        async move {
            c.fetch(fetch_records("busy", i * 10))
                .await
                .map(|r| r.into_inner().records.len())
        }
    });
    for got in futures::future::join_all(fetches).await {
        let n = got.expect("waits, never fails");
        assert!(n > 0);
    }
}

/// Every group RPC with `group` as its group name.
async fn every_group_rpc(
    groups: &mut GroupsClient<Channel>,
    group: &str,
) -> Vec<(&'static str, tonic::Status)> {
    let g = || group.to_owned();
    let mut out = Vec::new();
    let mut push = |rpc, r: Result<(), tonic::Status>| {
        if let Err(s) = r {
            out.push((rpc, s));
        }
    };
    let join = v1::JoinGroupRequest {
        group: g(),
        logs: vec!["orders".into()],
        ..Default::default()
    };
    push("join", groups.join_group(join).await.map(drop));
    let sync = v1::SyncGroupRequest {
        group: g(),
        member_id: "m".into(),
        ..Default::default()
    };
    push("sync", groups.sync_group(sync).await.map(drop));
    let hb = v1::GroupHeartbeatRequest {
        group: g(),
        member_id: "m".into(),
        ..Default::default()
    };
    push("heartbeat", groups.heartbeat(hb).await.map(drop));
    let leave = v1::LeaveGroupRequest {
        group: g(),
        member_id: "m".into(),
    };
    push("leave", groups.leave_group(leave).await.map(drop));
    let commit = v1::CommitOffsetsRequest {
        group: g(),
        offsets: vec![v1::PartitionCommit {
            log: "orders".into(),
            position: Some(v1::partition_commit::Position::Offset(0)),
            ..Default::default()
        }],
        ..Default::default()
    };
    push("commit", groups.commit_offsets(commit).await.map(drop));
    let fetch = v1::FetchOffsetsRequest {
        group: g(),
        logs: vec![],
    };
    push("fetch_offsets", groups.fetch_offsets(fetch).await.map(drop));
    let describe = v1::DescribeGroupRequest { group: g() };
    push("describe", groups.describe_group(describe).await.map(drop));
    let reset = v1::ResetOffsetsRequest {
        group: g(),
        log: "orders".into(),
        to: Some(v1::reset_offsets_request::To::Earliest(true)),
        ..Default::default()
    };
    push("reset", groups.reset_offsets(reset).await.map(drop));
    let delete = v1::DeleteGroupRequest { group: g() };
    push("delete", groups.delete_group(delete).await.map(drop));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_rpc_checks_the_group_name_and_echoes_it_bounded() {
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log("orders", v1::LogConfig::default())
        .await
        .expect("create");
    let mut groups = GroupsClient::new(channel(&node).await);
    let huge = "g".repeat(10_000);
    for name in ["Bad/Name", "", huge.as_str()] {
        let refused = every_group_rpc(&mut groups, name).await;
        let rpcs: Vec<_> = refused.iter().map(|(rpc, _)| *rpc).collect();
        assert_eq!(rpcs.len(), 9, "{name:.20}: every RPC refuses, got {rpcs:?}");
        for (rpc, s) in refused {
            assert_eq!(
                reason(&s),
                Some(Reason::InvalidRequest),
                "{rpc} {name:.20}: {s:?}"
            );
            assert!(s.message().contains("group name"), "{rpc}: {}", s.message());
            assert!(
                s.message().len() < 400,
                "{rpc}: {} bytes",
                s.message().len()
            );
        }
    }
    // A valid group with a 10 KB member id: the error is short.
    let e = groups
        .sync_group(v1::SyncGroupRequest {
            group: "ok".into(),
            member_id: huge.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no such member");
    assert_eq!(reason(&e), Some(Reason::UnknownMember), "{e:?}");
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
    let e = groups
        .heartbeat(v1::GroupHeartbeatRequest {
            group: "ok".into(),
            member_id: huge.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no such member");
    assert!(e.message().len() <= 1024, "{} bytes", e.message().len());
    let e = groups
        .join_group(v1::JoinGroupRequest {
            group: "ok".into(),
            client_id: huge.clone(),
            logs: vec!["orders".into()],
            ..Default::default()
        })
        .await
        .expect_err("client id too long");
    assert_eq!(reason(&e), Some(Reason::InvalidRequest), "{e:?}");
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
    // A 10 KB log name in a consumer error is short too.
    let mut consumer = ConsumerClient::new(channel(&node).await);
    let e = consumer
        .fetch(fetch_records(&huge, 0))
        .await
        .expect_err("bad log name");
    assert_eq!(reason(&e), Some(Reason::InvalidLogName));
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
    assert!(e.message().contains("10000 bytes"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_name_a_partition_of_the_log_and_a_real_offset() {
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log(
            "orders",
            v1::LogConfig {
                partition_count: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let mut groups = GroupsClient::new(channel(&node).await);
    let commit = |log: &str, partition: u32, offset: u64| v1::CommitOffsetsRequest {
        group: "billing".into(),
        offsets: vec![v1::PartitionCommit {
            log: log.into(),
            partition,
            position: Some(v1::partition_commit::Position::Offset(offset)),
            ..Default::default()
        }],
        ..Default::default()
    };
    for (req, expected) in [
        (commit("orders", u32::MAX, 0), Reason::PartitionNotFound),
        (commit("orders", 2, 0), Reason::PartitionNotFound),
        (commit("orders", 0, u64::MAX), Reason::InvalidRequest),
        (commit("nope", 0, 0), Reason::LogNotFound),
    ] {
        let e = groups
            .commit_offsets(req.clone())
            .await
            .expect_err("refused");
        assert_eq!(reason(&e), Some(expected), "{req:?}: {e:?}");
    }
    // Nothing was stored; a real commit (past the end is allowed, as in Kafka) is.
    groups
        .commit_offsets(commit("orders", 1, 42))
        .await
        .expect("commit");
    let offsets = groups
        .fetch_offsets(v1::FetchOffsetsRequest {
            group: "billing".into(),
            logs: vec![],
        })
        .await
        .expect("fetch offsets")
        .into_inner()
        .offsets;
    let got: Vec<_> = offsets.iter().map(|o| (o.partition, o.offset)).collect();
    assert_eq!(got, vec![(1, 42)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_intervals_below_a_millisecond_are_refused() {
    let node = TestNode::start();
    let client = node.client().await;
    let e = client
        .create_log(
            "spin",
            v1::LogConfig {
                fsync: Some("1ns".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("1ns");
    assert_eq!(e.reason(), Some(Reason::InvalidConfig), "{e}");
    assert!(e.to_string().contains("at least 1ms"), "{e}");
    client
        .create_log(
            "ok",
            v1::LogConfig {
                fsync: Some("1ms".into()),
                ..Default::default()
            },
        )
        .await
        .expect("the floor itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_none_answers_without_offsets() {
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log("fire", v1::LogConfig::default())
        .await
        .expect("create");
    let resp = client
        .produce_raw(v1::ProduceRequest {
            log: "fire".into(),
            payload: records(std::iter::once(b"x".to_vec())),
            acks: v1::AckPolicy::None as i32,
            ..Default::default()
        })
        .await
        .expect("produce");
    // As documented in the .proto and README: u64::MAX is "not known", never an offset.
    assert_eq!((resp.base_offset, resp.last_offset), (u64::MAX, u64::MAX));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_lists_the_public_services_only() {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let node = TestNode::start();
    let mut reflection = ServerReflectionClient::new(channel(&node).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let msg = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("v1alpha reflection is served")
        .into_inner()
        .message()
        .await
        .expect("response")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer: {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "pyralog.v1.Producer",
        "pyralog.v1.Consumer",
        "pyralog.v1.Admin",
        "pyralog.v1.Groups",
        "pyralog.v1.Security",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("pyralog.internal")),
        "internal services are not on the client listener: {names:?}"
    );
}
