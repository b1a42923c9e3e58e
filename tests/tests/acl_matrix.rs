//! The ACL matrix: principals with different grants call every client RPC, and each call is
//! allowed or denied as the ACLs say. The RPC list comes from the node's own access table
//! (`pyralog_gateway::access::authz::CLIENT_RPCS`, itself checked against the `.proto`), so
//! a new RPC without a call here fails this test. Also JWT bearer tokens (valid, expired,
//! forged, wrong issuer) and the metrics token, on a standalone secure node.

use std::collections::BTreeSet;

use pyralog_client::Client;
use pyralog_e2e::secure::{channel, TOKENS};
use pyralog_e2e::{Secure, TestNode};
use pyralog_gateway::access::authz::CLIENT_RPCS;
use pyralog_proto::v1::{self, *};
use pyralog_types::acl::{
    AclEntry, Operation, PatternKind, Permission, ResourceKind, ResourcePattern,
};
use pyralog_types::Reason;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "pyralog";

/// A JWT issuer: an ECDSA P-256 key and its JWKS.
struct Issuer {
    key_pem: String,
    jwks: serde_json::Value,
}

impl Issuer {
    fn new(kid: &str) -> Issuer {
        use base64::Engine;
        let key = rcgen::KeyPair::generate().expect("key");
        let raw = key.public_key_raw();
        assert_eq!(raw.len(), 65, "uncompressed P-256 point");
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Issuer {
            key_pem: key.serialize_pem(),
            jwks: serde_json::json!({"keys": [{
                "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
            }]}),
        }
    }

    fn token(&self, kid: &str, claims: serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        let key = jsonwebtoken::EncodingKey::from_ec_pem(self.key_pem.as_bytes()).expect("pem");
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A standalone `serve` node with TLS, client certificates, static tokens, JWT and ACLs.
fn secure_node(secure: &Secure, issuer: &Issuer, dir: &std::path::Path) -> TestNode {
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks.to_string()).expect("jwks");
    let metrics_token = dir.join("metrics-token");
    std::fs::write(&metrics_token, "metrics-secret\n").expect("metrics token");
    let (cert, key) = secure.set.node_cert(1);
    let config = format!(
        "[security]\nclient_ca = {ca:?}\nmetrics_token_file = {metrics_token:?}\n\
         [security.tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [security.auth]\nenabled = true\nsuperusers = [\"admin\"]\ntokens_file = {tokens:?}\n\
         [security.auth.jwt]\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\njwks_file = {jwks:?}\n",
        ca = secure.set.ca,
        tokens = secure.tokens_file,
    );
    TestNode::start_serve(&config, secure.admin_options())
}

fn call_req<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        if let Ok(v) = format!("Bearer {t}").parse() {
            r.metadata_mut().insert("authorization", v);
        }
    }
    r
}

fn produce_req() -> ProduceRequest {
    ProduceRequest {
        log: "a".into(),
        partition: 0,
        acks: AckPolicy::Leader as i32,
        payload: Some(produce_request::Payload::Records(RecordList {
            records: vec![NewRecord {
                value: Some(bytes::Bytes::from_static(b"x")),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn acl_entry() -> v1::AclEntry {
    v1::AclEntry {
        principal: "nobody".into(),
        permission: AclPermission::Allow as i32,
        operation: AclOperation::Describe as i32,
        resource_type: AclResourceType::Log as i32,
        pattern_type: AclPatternType::Literal as i32,
        resource_name: "zzz".into(),
    }
}

/// Calls RPC `path` on `ch` with a request about log `a` and group `g`. `None`: the matrix
/// has no call for this RPC (the test fails: add one).
async fn call(path: &str, ch: Channel, token: Option<&str>) -> Option<Result<(), Status>> {
    use tonic_reflection::pb::{v1 as refl, v1alpha as refl_alpha};
    let t = token;
    let r = match path {
        "/pyralog.v1.Producer/Produce" => producer_client::ProducerClient::new(ch)
            .produce(call_req(produce_req(), t))
            .await
            .map(drop),
        "/pyralog.v1.Producer/ProduceStream" => {
            let requests = futures::stream::iter([produce_req()]);
            match producer_client::ProducerClient::new(ch)
                .produce_stream(call_req(requests, t))
                .await
            {
                Err(status) => Err(status),
                Ok(answers) => match answers.into_inner().message().await {
                    Err(status) => Err(status),
                    Ok(None) => Err(Status::internal("the stream ended without an answer")),
                    Ok(Some(answer)) => match answer.result {
                        Some(produce_stream_response::Result::Ok(_)) => Ok(()),
                        Some(produce_stream_response::Result::Error(e)) => Err(
                            Status::with_details(Code::from_i32(e.code), e.message, e.details),
                        ),
                        None => Err(Status::internal("an empty answer")),
                    },
                },
            }
        }
        "/pyralog.v1.Producer/InitProducer" => producer_client::ProducerClient::new(ch)
            .init_producer(call_req(InitProducerRequest { name: None }, t))
            .await
            .map(drop),
        "/pyralog.v1.Consumer/Fetch" => consumer_client::ConsumerClient::new(ch)
            .fetch(call_req(
                FetchRequest {
                    log: "a".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Consumer/ListOffsets" => consumer_client::ConsumerClient::new(ch)
            .list_offsets(call_req(
                ListOffsetsRequest {
                    log: "a".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Admin/CreateLog" => admin_client::AdminClient::new(ch)
            .create_log(call_req(
                CreateLogRequest {
                    log: "a".into(),
                    config: None,
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Admin/ListLogs" => admin_client::AdminClient::new(ch)
            .list_logs(call_req(ListLogsRequest {}, t))
            .await
            .map(drop),
        "/pyralog.v1.Admin/DescribeLog" => admin_client::AdminClient::new(ch)
            .describe_log(call_req(DescribeLogRequest { log: "a".into() }, t))
            .await
            .map(drop),
        "/pyralog.v1.Admin/DeleteLog" => admin_client::AdminClient::new(ch)
            .delete_log(call_req(
                DeleteLogRequest {
                    log: "a".into(),
                    break_glass: false,
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Admin/AddPartitions" => admin_client::AdminClient::new(ch)
            .add_partitions(call_req(
                AddPartitionsRequest {
                    log: "a".into(),
                    partition_count: 1,
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Admin/ReassignPartitions" => admin_client::AdminClient::new(ch)
            .reassign_partitions(call_req(
                ReassignPartitionsRequest {
                    moves: vec![PartitionMove {
                        log: "a".into(),
                        partition: 0,
                        replicas: vec![1],
                    }],
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Admin/DecommissionNode" => admin_client::AdminClient::new(ch)
            .decommission_node(call_req(DecommissionNodeRequest { node_id: 7 }, t))
            .await
            .map(drop),
        "/pyralog.v1.Admin/RollSegments" => admin_client::AdminClient::new(ch)
            .roll_segments(call_req(
                RollSegmentsRequest {
                    log: "a".into(),
                    partitions: vec![],
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Admin/RunCompaction" => admin_client::AdminClient::new(ch)
            .run_compaction(call_req(RunCompactionRequest { log: "a".into() }, t))
            .await
            .map(drop),
        "/pyralog.v1.Admin/CompactionStatus" => admin_client::AdminClient::new(ch)
            .compaction_status(call_req(CompactionStatusRequest { log: "a".into() }, t))
            .await
            .map(drop),
        "/pyralog.v1.Admin/DescribeCluster" => admin_client::AdminClient::new(ch)
            .describe_cluster(call_req(DescribeClusterRequest {}, t))
            .await
            .map(drop),
        "/pyralog.v1.Admin/RepairPartition" => admin_client::AdminClient::new(ch)
            .repair_partition(call_req(
                v1::RepairPartitionRequest {
                    log: "a".into(),
                    partition: 0,
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Groups/JoinGroup" => groups_client::GroupsClient::new(ch)
            .join_group(call_req(
                JoinGroupRequest {
                    group: "g".into(),
                    logs: vec!["a".into()],
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Groups/SyncGroup" => groups_client::GroupsClient::new(ch)
            .sync_group(call_req(
                SyncGroupRequest {
                    group: "g".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Groups/Heartbeat" => groups_client::GroupsClient::new(ch)
            .heartbeat(call_req(
                GroupHeartbeatRequest {
                    group: "g".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Groups/LeaveGroup" => groups_client::GroupsClient::new(ch)
            .leave_group(call_req(
                LeaveGroupRequest {
                    group: "g".into(),
                    member_id: "m".into(),
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Groups/CommitOffsets" => groups_client::GroupsClient::new(ch)
            .commit_offsets(call_req(
                CommitOffsetsRequest {
                    group: "g".into(),
                    offsets: vec![PartitionCommit {
                        log: "a".into(),
                        position: Some(partition_commit::Position::Offset(0)),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Groups/FetchOffsets" => groups_client::GroupsClient::new(ch)
            .fetch_offsets(call_req(
                FetchOffsetsRequest {
                    group: "g".into(),
                    logs: vec![],
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Groups/ListGroups" => groups_client::GroupsClient::new(ch)
            .list_groups(call_req(ListGroupsRequest {}, t))
            .await
            .map(drop),
        "/pyralog.v1.Groups/DescribeGroup" => groups_client::GroupsClient::new(ch)
            .describe_group(call_req(DescribeGroupRequest { group: "g".into() }, t))
            .await
            .map(drop),
        "/pyralog.v1.Groups/ResetOffsets" => groups_client::GroupsClient::new(ch)
            .reset_offsets(call_req(
                ResetOffsetsRequest {
                    group: "g".into(),
                    log: "a".into(),
                    to: Some(reset_offsets_request::To::Earliest(true)),
                    dry_run: true,
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Groups/DeleteGroup" => groups_client::GroupsClient::new(ch)
            .delete_group(call_req(DeleteGroupRequest { group: "g".into() }, t))
            .await
            .map(drop),
        "/pyralog.v1.Security/WhoAmI" => security_client::SecurityClient::new(ch)
            .who_am_i(call_req(WhoAmIRequest {}, t))
            .await
            .map(drop),
        "/pyralog.v1.Security/CreateAcls" => security_client::SecurityClient::new(ch)
            .create_acls(call_req(
                CreateAclsRequest {
                    entries: vec![acl_entry()],
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Security/DeleteAcls" => security_client::SecurityClient::new(ch)
            .delete_acls(call_req(
                DeleteAclsRequest {
                    entries: vec![acl_entry()],
                },
                t,
            ))
            .await
            .map(drop),
        "/pyralog.v1.Security/ListAcls" => security_client::SecurityClient::new(ch)
            .list_acls(call_req(ListAclsRequest::default(), t))
            .await
            .map(drop),
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" => {
            let req = refl::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    refl::server_reflection_request::MessageRequest::ListServices(String::new()),
                ),
            };
            match refl::server_reflection_client::ServerReflectionClient::new(ch)
                .server_reflection_info(call_req(tokio_stream::iter(vec![req]), t))
                .await
            {
                Ok(s) => s.into_inner().message().await.map(drop),
                Err(e) => Err(e),
            }
        }
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" => {
            let req = refl_alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    refl_alpha::server_reflection_request::MessageRequest::ListServices(
                        String::new(),
                    ),
                ),
            };
            match refl_alpha::server_reflection_client::ServerReflectionClient::new(ch)
                .server_reflection_info(call_req(tokio_stream::iter(vec![req]), t))
                .await
            {
                Ok(s) => s.into_inner().message().await.map(drop),
                Err(e) => Err(e),
            }
        }
        _ => return None,
    };
    Some(r)
}

fn grant(
    principal: &str,
    op: Operation,
    kind: ResourceKind,
    pattern: PatternKind,
    name: &str,
) -> AclEntry {
    AclEntry {
        principal: principal.into(),
        permission: Permission::Allow,
        operation: op,
        resource: ResourcePattern {
            kind,
            pattern,
            name: name.into(),
        },
    }
}

/// RPCs every authenticated principal may call (results filtered to what it may see).
const OPEN: [&str; 6] = [
    "/pyralog.v1.Admin/DescribeCluster",
    "/pyralog.v1.Admin/ListLogs",
    "/pyralog.v1.Groups/ListGroups",
    "/pyralog.v1.Security/WhoAmI",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_is_allowed_or_denied_as_the_acls_say() {
    let secure = Secure::new(1);
    let issuer = Issuer::new("k1");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = secure_node(&secure, &issuer, dir.path());
    let admin = node.client().await;
    admin
        .create_log(
            "a",
            LogConfig {
                partition_count: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("create a");
    use Operation as Op;
    use PatternKind::{Literal, Prefix};
    use ResourceKind::{Group, Log};
    admin
        .create_acls(&[
            grant("alice", Op::Produce, Log, Literal, "a"),
            grant("alice", Op::Consume, Log, Literal, "a"),
            grant("alice", Op::Group, Group, Literal, "g"),
            grant("bob", Op::Describe, Log, Prefix, "a"),
            grant("bob", Op::Delete, Group, Prefix, "g"),
            grant("svc-reporting", Op::Consume, Log, Literal, "*"),
        ])
        .await
        .expect("grants");

    let svc_jwt = issuer.token(
        "k1",
        serde_json::json!({"sub": "svc-reporting", "iss": ISSUER, "aud": AUDIENCE,
                           "exp": unix_now() + 600}),
    );
    let (carol, carol_token) = TOKENS[0];
    let alice_allowed = [
        "/pyralog.v1.Producer/Produce",
        "/pyralog.v1.Producer/ProduceStream",
        "/pyralog.v1.Producer/InitProducer",
        "/pyralog.v1.Consumer/Fetch",
        "/pyralog.v1.Consumer/ListOffsets",
        "/pyralog.v1.Admin/DescribeLog",
        "/pyralog.v1.Admin/CompactionStatus",
        "/pyralog.v1.Groups/JoinGroup",
        "/pyralog.v1.Groups/SyncGroup",
        "/pyralog.v1.Groups/Heartbeat",
        "/pyralog.v1.Groups/LeaveGroup",
        "/pyralog.v1.Groups/CommitOffsets",
        "/pyralog.v1.Groups/FetchOffsets",
        "/pyralog.v1.Groups/DescribeGroup",
    ];
    let bob_allowed = [
        "/pyralog.v1.Consumer/ListOffsets",
        "/pyralog.v1.Admin/DescribeLog",
        "/pyralog.v1.Admin/CompactionStatus",
        "/pyralog.v1.Groups/FetchOffsets",
        "/pyralog.v1.Groups/DescribeGroup",
        "/pyralog.v1.Groups/DeleteGroup",
    ];
    let svc_allowed = [
        "/pyralog.v1.Consumer/Fetch",
        "/pyralog.v1.Consumer/ListOffsets",
        "/pyralog.v1.Admin/DescribeLog",
        "/pyralog.v1.Admin/CompactionStatus",
    ];
    let address = node.url().trim_start_matches("https://").to_owned();
    // (who, channel files, token, allowed RPCs); the superuser last (it deletes `a`).
    let principals: Vec<(&str, _, Option<String>, BTreeSet<&str>)> = vec![
        (
            "alice (certificate)",
            secure.client_files("alice"),
            None,
            alice_allowed.into(),
        ),
        (
            "bob (certificate)",
            secure.client_files("bob"),
            None,
            bob_allowed.into(),
        ),
        (
            carol,
            pyralog_security::client::ClientTlsFiles {
                ca: Some(secure.set.ca.clone()),
                ..Default::default()
            },
            Some(carol_token.to_owned()),
            BTreeSet::new(),
        ),
        (
            "svc-reporting (JWT)",
            pyralog_security::client::ClientTlsFiles {
                ca: Some(secure.set.ca.clone()),
                ..Default::default()
            },
            Some(svc_jwt),
            svc_allowed.into(),
        ),
        (
            "admin (superuser)",
            secure.admin_files(),
            None,
            CLIENT_RPCS.iter().map(|r| r.path).collect(),
        ),
    ];
    // Lists are filtered: bob sees log `a` (describe on prefix `a`), carol sees nothing.
    let bob = Client::connect_with(node.url(), secure.options_of("bob"))
        .await
        .expect("bob");
    let names: Vec<String> = bob
        .list_logs()
        .await
        .expect("list")
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, vec!["a".to_owned()]);
    let c = Client::connect_with(node.url(), secure.token_options(Some(carol_token)))
        .await
        .expect("carol");
    assert!(c.list_logs().await.expect("list").is_empty());

    let mut failures = Vec::new();
    for (who, files, token, allowed) in &principals {
        let ch = channel(&address, Some(files.clone()), None);
        for rule in CLIENT_RPCS {
            let outcome = call(rule.path, ch.clone(), token.as_deref())
                .await
                .unwrap_or_else(|| panic!("the matrix has no call for {}: add one", rule.path));
            let denied = matches!(&outcome, Err(s) if s.code() == Code::PermissionDenied);
            let unauthenticated = matches!(&outcome, Err(s) if s.code() == Code::Unauthenticated);
            let expected_allowed = allowed.contains(rule.path) || OPEN.contains(&rule.path);
            if unauthenticated || denied == expected_allowed {
                failures.push(format!(
                    "{who} {}: expected {}, got {outcome:?}",
                    rule.path,
                    if expected_allowed {
                        "allowed"
                    } else {
                        "denied"
                    }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Denials are audited.
    assert!(node.log().contains("denied"), "no audit line for a denial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_are_checked_for_signature_expiry_and_issuer() {
    let secure = Secure::new(1);
    let issuer = Issuer::new("k1");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = secure_node(&secure, &issuer, dir.path());
    let now = unix_now();
    let claims = |exp: u64, iss: &str| serde_json::json!({"sub": "svc-reporting", "iss": iss, "aud": AUDIENCE, "exp": exp});
    let forger = Issuer::new("k1");
    let cases = [
        ("valid", issuer.token("k1", claims(now + 600, ISSUER)), None),
        (
            "expired",
            issuer.token("k1", claims(now - 3600, ISSUER)),
            Some("Expired"),
        ),
        (
            "forged",
            forger.token("k1", claims(now + 600, ISSUER)),
            Some("InvalidSignature"),
        ),
        (
            "wrong issuer",
            issuer.token("k1", claims(now + 600, "https://evil")),
            Some("Issuer"),
        ),
        (
            "unknown key",
            issuer.token("k2", claims(now + 600, ISSUER)),
            Some("kid"),
        ),
        ("garbage", "not.a.jwt".to_owned(), Some("JWT")),
    ];
    for (what, token, error) in cases {
        let r = Client::connect_with(node.url(), secure.token_options(Some(&token))).await;
        match (r, error) {
            (Ok(c), None) => {
                let me = c.who_am_i().await.expect("whoami");
                assert_eq!(
                    (me.principal.as_str(), me.method.as_str()),
                    ("svc-reporting", "jwt")
                );
            }
            (Err(e), Some(needle)) => {
                assert_eq!(e.reason(), Some(Reason::Unauthenticated), "{what}: {e}");
                assert!(e.to_string().contains(needle), "{what}: {e}");
            }
            (Ok(_), Some(_)) => panic!("{what}: accepted"),
            (Err(e), None) => panic!("{what}: refused: {e}"),
        }
    }
    assert!(
        node.log().contains("invalid JWT"),
        "no log line for a bad JWT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_metrics_token_when_one_is_set() {
    use std::io::{Read, Write};
    let secure = Secure::new(1);
    let issuer = Issuer::new("k1");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = secure_node(&secure, &issuer, dir.path());
    let url = node
        .metrics_url()
        .expect("metrics endpoint announced")
        .to_owned();
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let get = move |auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(&hostport).expect("connect metrics");
        let header = auth
            .map(|a| format!("Authorization: Bearer {a}\r\n"))
            .unwrap_or_default();
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: x\r\n{header}\r\n").as_bytes())
            .expect("request");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("response");
        body
    };
    let open = get(None);
    assert!(open.contains(" 401 "), "{open}");
    assert!(
        !open.contains("pyralog_"),
        "metrics leaked without the token"
    );
    assert!(get(Some("wrong")).contains(" 401 "));
    let ok = get(Some("metrics-secret"));
    assert!(ok.contains(" 200 "), "{ok}");
    assert!(ok.contains("pyralog_"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_acl_changes_are_refused_with_a_reason_and_the_cli_exits_2() {
    let secure = Secure::new(1);
    let issuer = Issuer::new("k1");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = secure_node(&secure, &issuer, dir.path());
    let address = node.url().trim_start_matches("https://").to_owned();
    let ch = channel(&address, Some(secure.admin_files()), None);
    let mut sec = security_client::SecurityClient::new(ch);
    let bad_entries = [
        ("no entries", vec![]),
        (
            "unknown operation",
            vec![v1::AclEntry {
                operation: 42,
                ..acl_entry()
            }],
        ),
        (
            "empty principal",
            vec![v1::AclEntry {
                principal: String::new(),
                ..acl_entry()
            }],
        ),
        (
            "produce on a group",
            vec![v1::AclEntry {
                operation: AclOperation::Produce as i32,
                resource_type: AclResourceType::Group as i32,
                ..acl_entry()
            }],
        ),
        (
            "a 10 KB principal",
            vec![v1::AclEntry {
                principal: "p".repeat(10_000),
                ..acl_entry()
            }],
        ),
    ];
    for (what, entries) in bad_entries {
        let status = sec
            .create_acls(CreateAclsRequest { entries })
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().len() < 1000,
            "{what}: the message echoes the input"
        );
    }
    let admin = node.client().await;
    assert!(admin.list_acls(None).await.expect("list").is_empty());
    let out = node.cli(
        &[
            "acls",
            "add",
            "--principal",
            "alice",
            "--allow",
            "fly",
            "--log",
            "a",
        ],
        None,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("unknown operation"), "{out:?}");
    let out = node.cli(
        &[
            "acls",
            "add",
            "--principal",
            "alice",
            "--allow",
            "produce",
            "--group",
            "g",
        ],
        None,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = node.cli(
        &[
            "acls",
            "add",
            "--principal",
            "alice",
            "--allow",
            "produce,consume",
            "--log",
            "a",
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = node.cli(&["acls", "list"], None);
    assert!(
        out.stdout.contains("alice allow produce on log:a"),
        "{out:?}"
    );
    let out = node.cli(&["auth", "whoami"], None);
    assert!(
        out.stdout.contains("admin (by certificate, superuser)"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_ledger_takes_break_glass_and_a_superuser() {
    let secure = Secure::new(1);
    let issuer = Issuer::new("k1");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = secure_node(&secure, &issuer, dir.path());
    let admin = node.client().await;
    admin
        .create_log(
            "books",
            LogConfig {
                integrity: pyralog_proto::v1::Integrity::Ledger as i32,
                ..Default::default()
            },
        )
        .await
        .expect("create the ledger");
    admin
        .create_acls(&[grant(
            "bob",
            Operation::Delete,
            ResourceKind::Log,
            PatternKind::Literal,
            "books",
        )])
        .await
        .expect("grant");
    let bob = Client::connect_with(node.url(), secure.options_of("bob"))
        .await
        .expect("bob");
    // Without break_glass: refused for everyone, saying what it takes.
    for who in [&bob, &admin] {
        let e = who.delete_log("books").await.expect_err("no break_glass");
        assert_eq!(e.reason(), Some(Reason::InvalidRequest), "{e}");
        assert!(e.to_string().contains("break_glass"), "{e}");
    }
    // With it, an ACL that allows deleting the log is not enough: a superuser only.
    let e = bob
        .delete_log_with("books", true)
        .await
        .expect_err("bob is no superuser");
    assert_eq!(e.reason(), Some(Reason::PermissionDenied), "{e}");
    assert!(admin.describe_log("books").await.is_ok(), "still there");
    admin
        .delete_log_with("books", true)
        .await
        .expect("the superuser breaks the glass");
    assert!(node.log().contains("ledger log deleted with break_glass"));
}
