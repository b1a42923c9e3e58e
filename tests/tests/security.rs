//! Security, tried as an attacker on the network would (issue: "anyone who can reach a node's
//! port owns the cluster"): every attack below worked against the plaintext single-port
//! cluster, and must now be refused, with the cluster's state unchanged. Also: a node cannot
//! speak for another, bad TLS and bad credentials get a clear status and a log line, and
//! ACLs replicate through the controller and survive its failover.

use std::time::{Duration, Instant};

use pyralog_client::{Client, ClientError, ClientOptions};
use pyralog_e2e::secure::{channel, now};
use pyralog_e2e::{Secure, TestCluster};
use pyralog_proto::internal::{
    controller_client::ControllerClient, raft_client::RaftClient,
    replication_client::ReplicationClient, EpochEndOffsetRequest, HeartbeatRequest, RaftPayload,
    ReplicaFetchRequest,
};
use pyralog_proto::v1;
use pyralog_security::client::ClientTlsFiles;
use pyralog_types::acl::{
    AclEntry, Operation, PatternKind, Permission, ResourceKind, ResourcePattern,
};
use pyralog_types::{LogConfig, Reason};
use serde_json::json;
use tonic::Code;

const LOG: &str = "ledger";

fn log_config() -> v1::LogConfig {
    v1::LogConfig {
        partition_count: Some(1),
        replication_factor: Some(3),
        min_in_sync_replicas: Some(2),
        ..Default::default()
    }
}

async fn wait_ready(cluster: &TestCluster) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) = cluster.client(1).await {
            match c.create_log(LOG, log_config()).await {
                Ok(_) => return c,
                Err(e) if e.reason() == Some(Reason::LogAlreadyExists) => return c,
                Err(e) => assert!(Instant::now() < deadline, "create: {e}"),
            }
        }
        assert!(Instant::now() < deadline, "cluster did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the log has a leader and every replica in its ISR; returns (leader, epoch).
async fn settled(c: &Client) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(info) = c.describe_log(LOG).await {
            let p = &info.partitions[0];
            if let Some((leader, _)) = &p.leader {
                if p.isr.len() == 3 {
                    return (*leader, p.epoch.0);
                }
            }
        }
        assert!(Instant::now() < deadline, "the log did not settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn payload(value: serde_json::Value) -> RaftPayload {
    RaftPayload {
        json: serde_json::to_vec(&value).expect("json").into(),
    }
}

/// The attacks of the issue, as the internal services' payloads.
fn write_attacks(victim_epoch: u64) -> Vec<(&'static str, serde_json::Value)> {
    let bad_config = serde_json::to_value(LogConfig {
        partition_count: 0,
        segment_bytes: 0,
        ..LogConfig::default()
    })
    .expect("config json");
    let _ = victim_epoch;
    vec![
        (
            "register a fake node",
            json!({"RegisterNode": {"id": 99, "address": "203.0.113.9:7410"}}),
        ),
        ("fence a healthy node", json!({"FenceNode": {"id": 1}})),
        (
            "wrap the epoch",
            json!({"AdvanceEpoch": {"log": LOG, "partition": 0, "above": u64::MAX}}),
        ),
        (
            "create a log that skips validation",
            json!({"CreateLog": {"log": "evil", "config": bad_config, "request": 0}}),
        ),
        ("delete a log", json!({"DeleteLog": {"log": LOG}})),
    ]
}

fn vote(term: u64, candidate: u64) -> serde_json::Value {
    json!({"vote": {"leader_id": {"term": term, "node_id": candidate}, "committed": false}, "last_log_id": null})
}

fn append_entries(term: u64, leader: u64) -> serde_json::Value {
    json!({"vote": {"leader_id": {"term": term, "node_id": leader}, "committed": true},
           "prev_log_id": null, "entries": [], "leader_commit": null})
}

/// Every internal RPC an attacker would use, against node `target`'s cluster listener over
/// `ch`; returns each outcome (`Ok` = the call was answered without an error status).
async fn attack(
    ch: tonic::transport::Channel,
    victim_epoch: u64,
    claim: u64,
) -> Vec<(String, Result<String, tonic::Status>)> {
    let mut out = Vec::new();
    let mut controller = ControllerClient::new(ch.clone());
    for (what, cmd) in write_attacks(victim_epoch) {
        let r = controller
            .write(payload(cmd))
            .await
            .map(|a| String::from_utf8_lossy(&a.into_inner().json).into_owned());
        out.push((what.to_owned(), r));
    }
    // A controlled shutdown in another node's name would take its leaderships; balancing is
    // the controller leader's own proposal.
    for (what, cmd) in [
        (
            "leave the cluster as another node",
            json!({"LeaveCluster": {"id": claim}}),
        ),
        ("balance leaders", json!("BalanceLeaders")),
    ] {
        let r = controller
            .write(payload(cmd))
            .await
            .map(|a| String::from_utf8_lossy(&a.into_inner().json).into_owned());
        out.push((what.to_owned(), r));
    }
    let r = controller
        .heartbeat(HeartbeatRequest {
            node_id: claim,
            address: "203.0.113.9:7410".into(),
        })
        .await
        .map(|a| format!("{:?}", a.into_inner()));
    out.push(("fake heartbeat".into(), r));
    let mut raft = RaftClient::new(ch.clone());
    let r = raft
        .vote(payload(vote(1_000_000, claim)))
        .await
        .map(|a| String::from_utf8_lossy(&a.into_inner().json).into_owned());
    out.push(("vote at a high term".into(), r));
    let r = raft
        .append_entries(payload(append_entries(1_000_000, claim)))
        .await
        .map(|a| String::from_utf8_lossy(&a.into_inner().json).into_owned());
    out.push(("append entries as a leader".into(), r));
    let mut replication = ReplicationClient::new(ch);
    let fetch = ReplicaFetchRequest {
        log: LOG.into(),
        partition: 0,
        replica_id: claim,
        leader_epoch: victim_epoch,
        fetch_offset: 1 << 62,
        max_bytes: 1 << 20,
        max_wait_ms: 10,
    };
    let r = match replication.fetch(tokio_stream::iter(vec![fetch])).await {
        Ok(resp) => match resp.into_inner().message().await {
            Ok(m) => Ok(format!("{m:?}")),
            Err(s) => Err(s),
        },
        Err(s) => Err(s),
    };
    out.push(("fetch as a follower at 2^62".into(), r));
    let r = replication
        .epoch_end_offset(EpochEndOffsetRequest {
            log: LOG.into(),
            partition: 0,
            replica_id: claim,
            leader_epoch: victim_epoch,
            epoch: victim_epoch,
        })
        .await
        .map(|a| format!("{:?}", a.into_inner()));
    out.push(("epoch end offset".into(), r));
    out
}

/// The cluster as clients see it: nodes (id, fenced), logs, the victim's leader and epoch.
async fn snapshot(c: &Client) -> (Vec<(u64, bool)>, Vec<String>, Option<u64>, u64) {
    let d = c.describe_cluster().await.expect("describe cluster");
    let nodes = d.nodes.iter().map(|n| (n.node_id, n.fenced)).collect();
    let logs = c
        .list_logs()
        .await
        .expect("list")
        .into_iter()
        .map(|l| l.name)
        .collect();
    let info = c.describe_log(LOG).await.expect("describe log");
    let p = &info.partitions[0];
    (nodes, logs, p.leader.as_ref().map(|l| l.0), p.epoch.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_attack_on_the_internal_services_is_refused_and_changes_nothing() {
    let cluster = TestCluster::start_with::<&str, &str>(3, &[], Some(Secure::new(3)));
    let admin = wait_ready(&cluster).await;
    let (leader, epoch) = settled(&admin).await;
    let secure = cluster.secure.as_ref().expect("secure");
    let before = snapshot(&admin).await;
    assert!(before.1.contains(&LOG.to_owned()));

    // Three attackers: plaintext, TLS without a certificate, and a valid *client*
    // certificate of the cluster's own CA (a client is not a node).
    let no_cert = ClientTlsFiles {
        ca: Some(secure.set.ca.clone()),
        cert: None,
        key: None,
    };
    let attackers: Vec<(&str, Option<ClientTlsFiles>)> = vec![
        ("plaintext", None),
        ("TLS without a certificate", Some(no_cert)),
        (
            "alice's client certificate",
            Some(secure.client_files("alice")),
        ),
    ];
    for (who, files) in attackers {
        for target in [leader, 1 + leader % 3] {
            let address = &cluster.cluster_addresses[(target - 1) as usize];
            let identity = format!("node-{target}");
            let ch = channel(address, files.clone(), Some(&identity));
            for (what, outcome) in attack(ch, epoch, 1 + target % 3).await {
                let status = match outcome {
                    Ok(answer) => panic!("{who}: {what} on node {target} was answered: {answer}"),
                    Err(s) => s,
                };
                assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "{who}: {what} on node {target}: {status:?}"
                );
            }
        }
    }

    // The same internal services are not on the client listener at all, whoever calls.
    for (what, outcome) in attack(cluster.channel(leader), epoch, leader).await {
        let status = outcome.expect_err(&format!("{what} answered on the client port"));
        assert!(
            matches!(status.code(), Code::PermissionDenied | Code::Unimplemented),
            "{what} on the client port: {status:?}"
        );
    }

    // Nothing changed, and the log still takes quorum writes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = snapshot(&admin).await;
    assert_eq!(before, after, "the cluster's state changed");
    let c = cluster.client(leader).await.expect("client");
    let record = v1::ProduceRequest {
        log: LOG.into(),
        partition: 0,
        acks: v1::AckPolicy::Quorum as i32,
        timeout_ms: 10_000,
        payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
            records: vec![v1::NewRecord {
                value: Some(bytes::Bytes::from_static(b"still-writable")),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    c.produce_raw(record)
        .await
        .expect("a quorum write after the attacks");
    // Every refusal was logged on the audit target.
    let logs = cluster.logs();
    assert!(logs.contains("pyralog::audit"), "no audit lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cannot_speak_for_another_and_its_claims_are_checked() {
    let cluster = TestCluster::start_with::<&str, &str>(3, &[], Some(Secure::new(3)));
    let admin = wait_ready(&cluster).await;
    let (leader, epoch) = settled(&admin).await;
    let secure = cluster.secure.as_ref().expect("secure");
    let before = snapshot(&admin).await;
    // A follower's certificate: it is a node of the cluster, but not the one it claims.
    let me = 1 + leader % 3;
    let other = 1 + me % 3;
    assert!(me != leader && other != me);
    let address = &cluster.cluster_addresses[(leader - 1) as usize];
    let ch = channel(
        address,
        Some(secure.node_files(me)),
        Some(&format!("node-{leader}")),
    );
    // Speaking as itself, a node still cannot wrap an epoch (it is not the leader) nor
    // claim to hold more than the leader has.
    let mut controller = ControllerClient::new(ch.clone());
    let refused = controller
        .write(payload(
            json!({"AdvanceEpoch": {"log": LOG, "partition": 0, "above": u64::MAX}}),
        ))
        .await
        .expect_err("a non-leader advancing an epoch");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut replication = ReplicationClient::new(ch.clone());
    let fetch = ReplicaFetchRequest {
        log: LOG.into(),
        partition: 0,
        replica_id: me,
        leader_epoch: epoch,
        fetch_offset: 1 << 62,
        max_bytes: 1 << 20,
        max_wait_ms: 10,
    };
    let status = replication
        .fetch(tokio_stream::iter(vec![fetch]))
        .await
        .expect("stream")
        .into_inner()
        .message()
        .await
        .expect_err("a fetch past the leader's end");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    for (what, outcome) in attack(ch, epoch, other).await {
        match (what.as_str(), outcome) {
            // Forwarded client requests a node may make (they carry no node claim): the
            // state machine itself refuses the bad ones, and the victim log's deletion is
            // the one real write a compromised node could still do: re-checked below.
            ("create a log that skips validation", Ok(answer)) => {
                assert!(answer.contains("Rejected"), "{answer}");
                assert!(answer.contains("partition_count"), "{answer}");
            }
            ("delete a log", Ok(_)) => {}
            (what, Ok(answer)) => {
                panic!("node {me} claiming node {other}: {what} answered {answer}")
            }
            (what, Err(status)) => assert_eq!(
                status.code(),
                Code::PermissionDenied,
                "node {me} claiming node {other}: {what}: {status:?}"
            ),
        }
    }
    // The leader's epoch and the nodes are as before (the log was deleted by the one
    // unclaimed command the compromised node could send).
    let after = admin.describe_cluster().await.expect("describe");
    let nodes: Vec<(u64, bool)> = after.nodes.iter().map(|n| (n.node_id, n.fenced)).collect();
    assert_eq!(before.0, nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acls_replicate_through_the_controller_and_survive_its_failover() {
    let mut cluster = TestCluster::start_with::<&str, &str>(3, &[], Some(Secure::new(3)));
    let admin = wait_ready(&cluster).await;
    let secure = cluster.secure.as_ref().expect("secure");
    let alice_options = secure.options_of("alice");
    let alice = Client::connect_with(cluster.url(3), alice_options.clone())
        .await
        .expect("alice connects");
    // Deny by default: alice may not read.
    let denied = alice.describe_log(LOG).await.expect_err("no grant yet");
    assert_eq!(denied.reason(), Some(Reason::PermissionDenied), "{denied}");
    admin
        .create_acls(&[AclEntry {
            principal: "alice".into(),
            permission: Permission::Allow,
            operation: Operation::Consume,
            resource: ResourcePattern {
                kind: ResourceKind::Log,
                pattern: PatternKind::Literal,
                name: LOG.into(),
            },
        }])
        .await
        .expect("grant");
    // Granted on node 1, effective on node 3 once replicated.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alice.describe_log(LOG).await.is_err() {
        assert!(Instant::now() < deadline, "the grant did not reach node 3");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Kill the controller leader: the ACL is controller state and survives.
    let d = admin.describe_cluster().await.expect("describe");
    let controller = d.controller_leader;
    assert!(controller > 0);
    cluster.node(controller).kill9();
    let survivor = 1 + controller % 3;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = Client::connect_with(cluster.url(survivor), alice_options.clone()).await;
        if let Ok(c) = c {
            if c.describe_log(LOG).await.is_ok() {
                let e = c
                    .create_log("alices-own", log_config())
                    .await
                    .expect_err("alice may not create");
                assert_eq!(e.reason(), Some(Reason::PermissionDenied), "{e}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "alice lost her grant after the failover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.node(controller).restart();
    let back = Client::connect_with(cluster.url(controller), alice_options)
        .await
        .expect("alice on the restarted node");
    let deadline = Instant::now() + Duration::from_secs(30);
    while back.describe_log(LOG).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the restarted node lost the grant"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `ClientError` of a failed connect or call, as text for assertions.
fn text(e: &ClientError) -> String {
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tls_and_bad_credentials_get_a_clear_status_and_a_log_line() {
    let cluster = TestCluster::start_with::<&str, &str>(3, &[], Some(Secure::new(3)));
    let _admin = wait_ready(&cluster).await;
    let secure = cluster.secure.as_ref().expect("secure");
    let address = cluster.addresses[0].clone();

    // Plaintext to the TLS port.
    let e = Client::connect(format!("http://{address}"))
        .await
        .expect_err("plaintext on a TLS port");
    assert_eq!(e.reason(), Some(Reason::Unauthenticated), "{e}");
    assert!(text(&e).contains("speaks TLS"), "{e}");

    // A CA the node's certificate does not chain to.
    let stranger = Secure::new(1);
    let e = Client::connect_with(cluster.url(1), stranger.admin_options())
        .await
        .expect_err("wrong CA");
    assert!(text(&e).contains("certificate"), "{e}");

    // An expired client certificate of the right CA.
    let expired = secure.issue(
        &["mallory"],
        now() - Duration::from_secs(10 * 86_400),
        Duration::from_secs(86_400),
        "expired",
    );
    let e = Client::connect_with(
        cluster.url(1),
        ClientOptions {
            tls_ca: expired.ca.clone(),
            tls_cert: expired.cert.clone(),
            tls_key: expired.key.clone(),
            token: None,
        },
    )
    .await
    .expect_err("expired certificate");
    assert_eq!(e.reason(), Some(Reason::Unauthenticated), "{e}");
    assert!(text(&e).to_lowercase().contains("expired"), "{e}");

    // No credentials at all, an unknown token, a malformed JWT.
    for (what, token, needle) in [
        ("no credentials", None, "no credentials"),
        (
            "unknown token",
            Some("pyt_not-a-token"),
            "unknown bearer token",
        ),
        ("malformed JWT", Some("aaa.bbb.ccc"), "bearer token"),
    ] {
        let e = Client::connect_with(cluster.url(1), secure.token_options(token))
            .await
            .expect_err(what);
        assert_eq!(e.reason(), Some(Reason::Unauthenticated), "{what}: {e}");
        assert!(text(&e).contains(needle), "{what}: {e}");
    }
    // A good token works.
    let (who, token) = pyralog_e2e::secure::TOKENS[0];
    let c = Client::connect_with(cluster.url(1), secure.token_options(Some(token)))
        .await
        .expect("token");
    let me = c.who_am_i().await.expect("whoami");
    assert_eq!((me.principal.as_str(), me.method.as_str()), (who, "token"));

    // Every refusal left a line in the node's log, and the node still serves.
    let log = cluster.nodes[0].log();
    for needle in [
        "speaks TLS",
        "expired",
        "unknown bearer token",
        "no credentials",
    ] {
        assert!(
            log.to_lowercase().contains(&needle.to_lowercase()),
            "no log line about {needle:?}"
        );
    }
    cluster.client(1).await.expect("the node still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_secure_is_one_command_and_says_how_to_connect() {
    let node = pyralog_e2e::TestNode::start_dev_secure();
    assert!(node.url().starts_with("https://"), "{}", node.url());
    // The node printed how to connect, with the real address.
    let log = node.log();
    assert!(log.contains(&format!("--server {}", node.url())), "{log}");
    assert!(log.contains("PYRALOG_TOKEN="), "{log}");
    // The admin certificate it made is a superuser's; the CLI works with it.
    let out = node.cli(&["auth", "whoami"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("admin (by certificate, superuser)"),
        "{out:?}"
    );
    let out = node.cli(&["logs", "create", "orders"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = node.cli(&["produce", "orders"], Some(b"a\nb\n"));
    assert_eq!(out.code, Some(0), "{out:?}");
    // The token it printed works too.
    let token = log
        .split("PYRALOG_TOKEN=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("token")
        .to_owned();
    let options = ClientOptions {
        tls_ca: node.client_options().tls_ca.clone(),
        token: Some(token),
        ..Default::default()
    };
    let c = Client::connect_with(node.url(), options)
        .await
        .expect("token");
    assert_eq!(c.who_am_i().await.expect("whoami").method, "token");
    // Without credentials: refused, with the reason.
    let out = pyralog_e2e::run_cli_with(
        node.url(),
        &ClientOptions {
            tls_ca: node.client_options().tls_ca.clone(),
            ..Default::default()
        },
        &["logs", "list"],
        None,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("UNAUTHENTICATED"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_and_cas_are_used_without_a_restart() {
    let old = Secure::new(1);
    let new = Secure::new(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca) = (
        dir.path().join("node.pem"),
        dir.path().join("node-key.pem"),
        dir.path().join("ca.pem"),
    );
    // Files are replaced the way operators and cert-manager do: write aside, then rename.
    let install = |from: &Secure| {
        let (c, k) = from.set.node_cert(1);
        for (src, dst) in [(&c, &cert), (&k, &key), (&from.set.ca, &ca)] {
            let tmp = dst.with_extension("tmp");
            std::fs::copy(src, &tmp).expect("copy");
            std::fs::rename(&tmp, dst).expect("rename");
        }
    };
    install(&old);
    let config = format!(
        "[security]\nclient_ca = {ca:?}\nreload_interval = \"200ms\"\n\
         [security.tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [security.auth]\nenabled = true\nsuperusers = [\"admin\"]\n"
    );
    let node = pyralog_e2e::TestNode::start_serve(&config, old.admin_options());
    Client::connect_with(node.url(), old.admin_options())
        .await
        .expect("the first CA's admin");
    let refused = Client::connect_with(node.url(), new.admin_options()).await;
    assert!(refused.is_err(), "the new CA is not trusted yet");

    install(&new);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match Client::connect_with(node.url(), new.admin_options()).await {
            Ok(c) => {
                let me = c.who_am_i().await.expect("whoami");
                assert_eq!(me.principal, "admin");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "not reloaded: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old CA's clients no longer trust the node, and the node no longer trusts them.
    let e = Client::connect_with(node.url(), old.admin_options())
        .await
        .expect_err("the old CA after the rotation");
    assert!(text(&e).contains("certificate"), "{e}");
    assert!(
        node.log().contains("reloaded"),
        "no log line for the reload"
    );
}
