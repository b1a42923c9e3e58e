//! Many partitions under a small open-file limit, and `CreateLog` that answers only when the
//! log is writable, or leaves nothing behind (issue 14).
//!
//! - A node whose `RLIMIT_NOFILE` is soft = hard = 1024 (it cannot raise it) hosts a log of
//!   10,000 partitions (`PYRALOG_E2E_PARTITIONS` overrides the count): one record into each,
//!   a restart, and every record reads back. Time and peak RSS are printed.
//! - Right after `CreateLog` answers, a produce to every partition's leader succeeds at the
//!   first attempt (no redirect following), on one node and on three. On three, a produce
//!   sent to a replica that does not lead is refused `NOT_LEADER` with the gRPC code
//!   `UNAVAILABLE` (retriable by standard gRPC retry policies), naming the leader.
//! - A creation that fails (a file where the log's directory must go) answers `UNAVAILABLE`,
//!   and the log is gone: describe says `LOG_NOT_FOUND`, also after a restart, and a new
//!   creation under the same name works.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use pyralog_client::{Client, LogInfo};
use pyralog_e2e::{env_usize, TestCluster, TestNode};
use pyralog_proto::v1;
use pyralog_types::Reason;

fn one_record(log: &str, partition: u32, value: String) -> v1::ProduceRequest {
    v1::ProduceRequest {
        log: log.to_owned(),
        partition,
        acks: v1::AckPolicy::Leader as i32,
        payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
            records: vec![v1::NewRecord {
                value: Some(Bytes::from(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn config(partitions: u32, rf: u32) -> v1::LogConfig {
    v1::LogConfig {
        partition_count: Some(partitions),
        replication_factor: Some(rf),
        min_in_sync_replicas: Some(1),
        ..Default::default()
    }
}

/// Peak resident memory of a process, from `/proc/<pid>/status`.
fn peak_rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The values of partition `p`, read from offset 0 to its end.
async fn values(client: &Client, log: &str, p: u32) -> Vec<Bytes> {
    let resp = client
        .fetch(v1::FetchRequest {
            log: log.to_owned(),
            partition: p,
            start: Some(v1::fetch_request::Start::Offset(0)),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("fetch partition {p}: {e}"));
    pyralog_types::batch::split_batches(resp.batches)
        .flat_map(|b| b.expect("well-formed batch").records().expect("records"))
        .map(|r| r.value.unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_partitions_live_within_1024_open_files_across_a_restart() {
    let partitions = env_usize("PYRALOG_E2E_PARTITIONS", 10_000) as u32;
    let mut node = TestNode::start_with_fd_limit::<&str, &str>(&[], 1024);
    let started = Instant::now();
    let client = node.client().await;
    client
        .create_log("wide", config(partitions, 1))
        .await
        .unwrap_or_else(|e| panic!("create: {e}\n{}", node.log()));
    let created = started.elapsed();
    let produced: Vec<Result<(), String>> = futures::stream::iter(0..partitions)
        .map(|p| {
            let client = client.clone();
            async move {
                client
                    .produce_raw(one_record("wide", p, format!("record-{p}")))
                    .await
                    .map(drop)
                    .map_err(|e| format!("partition {p}: {e}"))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let failed: Vec<_> = produced.into_iter().filter_map(Result::err).collect();
    assert!(
        failed.is_empty(),
        "{} produces failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    let wrote = started.elapsed();
    let pid = node.pid().expect("running");
    let rss_before = peak_rss(pid);
    drop(client);
    node.stop();
    let restart = node.restart();
    let client = node.client().await;
    let read: Vec<Option<String>> = futures::stream::iter(0..partitions)
        .map(|p| {
            let client = client.clone();
            async move {
                let v = values(&client, "wide", p).await;
                let want = Bytes::from(format!("record-{p}"));
                (v != vec![want]).then(|| format!("partition {p}: {v:?}"))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let wrong: Vec<_> = read.into_iter().flatten().collect();
    assert!(
        wrong.is_empty(),
        "{} partitions read back wrong, first: {:?}",
        wrong.len(),
        wrong.first()
    );
    let pid = node.pid().expect("running");
    println!(
        "{partitions} partitions, RLIMIT_NOFILE 1024: created in {created:?}, one record each \
         written by {wrote:?}, restart {restart:?}, all read back by {:?}; peak RSS {rss_before} \
         before the restart, {} after",
        started.elapsed(),
        peak_rss(pid)
    );
}

/// Creates `log` through `client`, then sends one record to each partition straight to the
/// leader the answer names, with no redirect or retry: every one must be taken.
async fn create_then_produce_at_once(
    client: &Client,
    channel_of: impl Fn(&str) -> tonic::transport::Channel,
    log: &str,
    partitions: u32,
    rf: u32,
) -> Result<(), String> {
    let info: LogInfo = client
        .create_log(log, config(partitions, rf))
        .await
        .map_err(|e| format!("create {log}: {e}"))?;
    for p in &info.partitions {
        let Some((_, address)) = &p.leader else {
            return Err(format!("{log}/{}: created without a leader", p.partition));
        };
        let mut raw = v1::producer_client::ProducerClient::new(channel_of(address));
        raw.produce(one_record(log, p.partition, "first".into()))
            .await
            .map_err(|s| format!("{log}/{}: {:?} {}", p.partition, s.code(), s.message()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_log_takes_writes_at_once_on_a_single_node() {
    let node = TestNode::start();
    let client = node.client().await;
    let url = node.url().to_owned();
    let channel_of = |_: &str| {
        tonic::transport::Channel::from_shared(url.clone())
            .expect("url")
            .connect_lazy()
    };
    let mut failures = Vec::new();
    for round in 0..40 {
        if let Err(e) =
            create_then_produce_at_once(&client, channel_of, &format!("fresh-{round}"), 4, 1).await
        {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 40 failed: {failures:?}",
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_log_takes_writes_at_once_on_three_nodes() {
    let cluster = TestCluster::start::<&str, &str>(3, &[]);
    let client = cluster.wait_registered().await;
    let channel_of = |address: &str| {
        let id = cluster
            .id_of(address)
            .unwrap_or_else(|| panic!("unknown leader address {address}"));
        cluster.channel(id)
    };
    let mut failures = Vec::new();
    for round in 0..40 {
        let log = format!("fresh-{round}");
        if let Err(e) = create_then_produce_at_once(&client, channel_of, &log, 3, 3).await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 40 failed: {failures:?}\n{}",
        failures.len(),
        cluster.logs()
    );

    // The same produce sent to a replica that does not lead: NOT_LEADER, over the wire as
    // UNAVAILABLE (FAILED_PRECONDITION would be final for standard retry policies), with the
    // leader's address in the error's metadata.
    let info = client.describe_log("fresh-0").await.expect("describe");
    let p = &info.partitions[0];
    let (_, leader) = p.leader.clone().expect("a leader");
    let leader_id = cluster.id_of(&leader).expect("a node's address");
    let follower = (1..=3).find(|&id| id != leader_id).expect("three nodes");
    let status = v1::producer_client::ProducerClient::new(cluster.channel(follower))
        .produce(one_record("fresh-0", p.partition, "misdirected".into()))
        .await
        .expect_err("a replica that does not lead refuses the produce");
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{}",
        status.message()
    );
    let (reason, metadata) = pyralog_proto::status::reason_of(&status)
        .unwrap_or_else(|| panic!("no ErrorInfo: {status:?}"));
    assert_eq!(reason, Reason::NotLeader, "{}", status.message());
    assert_eq!(
        metadata.get("leader"),
        Some(&leader),
        "the refusal names the leader"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_creation_leaves_no_log_behind_even_after_a_restart() {
    let mut node = TestNode::start();
    let client = node.client().await;
    // A file where the log's directory must go: opening its partitions fails.
    let blocker = node.data_dir().join("logs").join("blocked");
    std::fs::write(&blocker, b"in the way").expect("blocker");
    let err = client
        .create_log("blocked", config(3, 1))
        .await
        .expect_err("the creation cannot succeed");
    assert_eq!(err.reason(), Some(Reason::StorageError), "{err}");
    assert!(err.is_retriable(), "{err}");
    assert!(
        matches!(
            &err,
            pyralog_client::ClientError::Server {
                code: tonic::Code::Unavailable,
                ..
            }
        ),
        "{err:?}"
    );
    let gone = |e: Result<LogInfo, pyralog_client::ClientError>| match e {
        Err(e) => e.reason() == Some(Reason::LogNotFound),
        Ok(_) => false,
    };
    assert!(gone(client.describe_log("blocked").await), "rolled back");
    assert!(
        !client
            .list_logs()
            .await
            .expect("list")
            .iter()
            .any(|l| l.name == "blocked"),
        "not listed"
    );

    drop(client);
    node.stop();
    node.restart();
    let client = node.client().await;
    assert!(
        gone(client.describe_log("blocked").await),
        "still gone after a restart"
    );

    let _ = std::fs::remove_file(&blocker);
    client
        .create_log("blocked", config(3, 1))
        .await
        .expect("a new creation under the same name");
    client
        .produce_raw(one_record("blocked", 2, "works".into()))
        .await
        .expect("produce");
    assert_eq!(
        values(&client, "blocked", 2).await,
        vec![Bytes::from("works")]
    );
}
