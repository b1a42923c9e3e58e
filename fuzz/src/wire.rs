//! Every request message a node accepts from the network (the public API and the cluster
//! listener's), through prost and the public conversions to domain types that the gateway's
//! handlers use (`pyralog_proto::convert`, `convert_acl`), plus the names and batches they
//! carry, and the JSON the controller's RPCs carry in a `RaftPayload` (a command for `Write`,
//! openraft's requests for `Raft`, a group heartbeat), decoded as the controller does.
//!
//! The input's first byte picks the request ([`ARMS`]), the rest is its encoding. Contract: no
//! panic; a message that decodes re-encodes to one that decodes equal; a log config that
//! converts is valid and converts back to itself; an ACL entry that converts is valid and
//! converts back to itself; a produce request's records encode into a batch that parses; a
//! Raft payload's JSON that decodes re-encodes to JSON that decodes to the same.

use bytes::Bytes;
use prost::Message;
use pyralog_controller::{GroupHeartbeat, RaftTypeConfig};
use pyralog_proto::internal as cluster;
use pyralog_proto::v1;
use pyralog_types::acl::AclEntry;
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::{LogConfig, LogId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::batch;

/// Decodes `bytes` as `M`, checks the round trip, and returns the message.
fn decode<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
    let m = M::decode(bytes).ok()?;
    let again = M::decode(m.encode_to_vec().as_slice()).expect("a decoded message decodes again");
    assert_eq!(again, m, "message changed in a round trip");
    Some(m)
}

fn name(s: &str) {
    if let Ok(id) = LogId::new(s) {
        assert_eq!(id.as_str(), s);
    }
}

fn log_config(c: v1::LogConfig) {
    let defaults = LogConfig::default();
    if let Ok(cfg) = c.into_domain(&defaults) {
        cfg.validate().expect("a converted config is valid");
        let back = v1::LogConfig::from(&cfg)
            .into_domain(&defaults)
            .expect("a valid config converts back");
        assert_eq!(back, cfg, "log config changed in a wire round trip");
    }
}

fn acl(e: v1::AclEntry) {
    if let Ok(entry) = AclEntry::try_from(e) {
        entry.validate().expect("a converted ACL entry is valid");
        let back = AclEntry::try_from(v1::AclEntry::from(&entry)).expect("converts back");
        assert_eq!(back, entry, "ACL entry changed in a wire round trip");
    }
}

fn produce(p: v1::ProduceRequest) {
    name(&p.log);
    let _ = v1::AckPolicy::try_from(p.acks).map(pyralog_types::AckPolicy::from);
    match p.payload {
        Some(v1::produce_request::Payload::Batch(b)) => batch::check_bytes(&b),
        Some(v1::produce_request::Payload::Records(list)) => {
            let mut builder = BatchBuilder::new(Compression::None);
            for r in list.records.into_iter().take(1000) {
                builder.push(&NewRecord::from(r));
            }
            if let Ok(b) = builder.build() {
                pyralog_types::batch::Batch::parse_verified(b)
                    .expect("records from a request encode into a valid batch");
            }
        }
        None => {}
    }
}

/// A request message whose contents the fuzzer may check beyond the round trip.
trait Request: Message + Default + PartialEq + std::fmt::Debug {
    fn check(self) {}
}

macro_rules! plain_requests {
    ($($t:ty),* $(,)?) => {
        $(impl Request for $t {})*
    };
}

plain_requests!(
    v1::InitProducerRequest,
    v1::ListLogsRequest,
    v1::DescribeLogRequest,
    v1::DeleteLogRequest,
    v1::AddPartitionsRequest,
    v1::ReassignPartitionsRequest,
    v1::DecommissionNodeRequest,
    v1::RollSegmentsRequest,
    v1::DescribeClusterRequest,
    v1::RunCompactionRequest,
    v1::CompactionStatusRequest,
    v1::JoinGroupRequest,
    v1::SyncGroupRequest,
    v1::GroupHeartbeatRequest,
    v1::LeaveGroupRequest,
    v1::CommitOffsetsRequest,
    v1::FetchOffsetsRequest,
    v1::ListGroupsRequest,
    v1::DescribeGroupRequest,
    v1::ResetOffsetsRequest,
    v1::DeleteGroupRequest,
    v1::WhoAmIRequest,
    v1::ListAclsRequest,
    cluster::HeartbeatRequest,
    cluster::ReplicaFetchRequest,
    cluster::EpochEndOffsetRequest,
);

impl Request for cluster::AddLearnerRequest {
    fn check(self) {
        // The leader's checks before it touches the membership: never a panic.
        let voters = std::collections::BTreeMap::from([(1, "127.0.0.1:7412".to_owned())]);
        let _ = pyralog_controller::check_learner(self.node_id, &self.cluster_address, &voters);
    }
}

impl Request for v1::ProduceRequest {
    fn check(self) {
        produce(self)
    }
}

impl Request for v1::FetchRequest {
    fn check(self) {
        name(&self.log)
    }
}

impl Request for v1::ListOffsetsRequest {
    fn check(self) {
        name(&self.log)
    }
}

impl Request for v1::RepairPartitionRequest {
    fn check(self) {
        name(&self.log)
    }
}

impl Request for v1::CreateLogRequest {
    fn check(self) {
        name(&self.log);
        log_config(self.config.unwrap_or_default());
    }
}

impl Request for v1::CreateAclsRequest {
    fn check(self) {
        self.entries.into_iter().for_each(acl)
    }
}

impl Request for v1::DeleteAclsRequest {
    fn check(self) {
        self.entries.into_iter().for_each(acl)
    }
}

impl Request for v1::LogConfig {
    fn check(self) {
        log_config(self)
    }
}

fn request<M: Request>(bytes: &[u8]) {
    if let Some(m) = decode::<M>(bytes) {
        m.check();
    }
}

/// A `RaftPayload` whose JSON the node decodes as `T` (`serde_json`, as the controller's
/// services do): no panic, and what decodes re-encodes to JSON that decodes to the same.
fn raft_json<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let Some(payload) = decode::<cluster::RaftPayload>(bytes) else {
        return;
    };
    if let Ok(value) = serde_json::from_slice::<T>(&payload.json) {
        let json = serde_json::to_vec(&value).expect("a decoded payload encodes");
        let again: T = serde_json::from_slice(&json).expect("an encoded payload decodes");
        let json_again = serde_json::to_vec(&again).expect("encodes again");
        assert_eq!(
            json, json_again,
            "Raft payload changed in a JSON round trip"
        );
    }
}

/// The controller's `Write` carries a command as JSON: the controller command target's input.
fn controller_write(bytes: &[u8]) {
    if let Some(m) = decode::<cluster::RaftPayload>(bytes) {
        crate::controller::target(&m.json);
    }
}

/// One choice of the input's first byte: the RPCs (`package.Service/Method`) whose request
/// it decodes as the node does, the Rust type of that request message, and the decoding.
#[derive(Debug, Clone, Copy)]
pub struct Arm {
    pub rpcs: &'static [&'static str],
    /// `std::any::type_name` of the request message.
    pub message: fn() -> &'static str,
    pub run: fn(&[u8]),
}

/// The arm of a protobuf request message: decoded, round-tripped and checked.
const fn arm<M: Request>(rpcs: &'static [&'static str]) -> Arm {
    Arm {
        rpcs,
        message: std::any::type_name::<M>,
        run: request::<M>,
    }
}

/// The arm of a Raft RPC whose `RaftPayload` carries `T` as JSON.
const fn raft_arm<T: Serialize + DeserializeOwned>(rpc: &'static [&'static str]) -> Arm {
    Arm {
        rpcs: rpc,
        message: std::any::type_name::<cluster::RaftPayload>,
        run: raft_json::<T>,
    }
}

type AppendEntries = openraft::raft::AppendEntriesRequest<RaftTypeConfig>;
type Vote = openraft::raft::VoteRequest<pyralog_types::NodeId>;
type InstallSnapshot = openraft::raft::InstallSnapshotRequest<RaftTypeConfig>;

/// Every arm, by the input's first byte (modulo their number). Every RPC of the public and
/// the cluster services has exactly one (`tests::every_rpc_has_an_arm_of_its_request_type`);
/// new arms go at the end, so the committed corpus keeps its meaning.
pub const ARMS: &[Arm] = &[
    arm::<v1::ProduceRequest>(&[
        "pyralog.v1.Producer/Produce",
        "pyralog.v1.Producer/ProduceStream",
    ]),
    arm::<v1::InitProducerRequest>(&["pyralog.v1.Producer/InitProducer"]),
    arm::<v1::FetchRequest>(&["pyralog.v1.Consumer/Fetch"]),
    arm::<v1::ListOffsetsRequest>(&["pyralog.v1.Consumer/ListOffsets"]),
    arm::<v1::CreateLogRequest>(&["pyralog.v1.Admin/CreateLog"]),
    arm::<v1::ListLogsRequest>(&["pyralog.v1.Admin/ListLogs"]),
    arm::<v1::DescribeLogRequest>(&["pyralog.v1.Admin/DescribeLog"]),
    arm::<v1::DeleteLogRequest>(&["pyralog.v1.Admin/DeleteLog"]),
    arm::<v1::AddPartitionsRequest>(&["pyralog.v1.Admin/AddPartitions"]),
    arm::<v1::ReassignPartitionsRequest>(&["pyralog.v1.Admin/ReassignPartitions"]),
    arm::<v1::DecommissionNodeRequest>(&["pyralog.v1.Admin/DecommissionNode"]),
    arm::<v1::RollSegmentsRequest>(&["pyralog.v1.Admin/RollSegments"]),
    arm::<v1::DescribeClusterRequest>(&["pyralog.v1.Admin/DescribeCluster"]),
    arm::<v1::RunCompactionRequest>(&["pyralog.v1.Admin/RunCompaction"]),
    arm::<v1::CompactionStatusRequest>(&["pyralog.v1.Admin/CompactionStatus"]),
    arm::<v1::JoinGroupRequest>(&["pyralog.v1.Groups/JoinGroup"]),
    arm::<v1::SyncGroupRequest>(&["pyralog.v1.Groups/SyncGroup"]),
    arm::<v1::GroupHeartbeatRequest>(&["pyralog.v1.Groups/Heartbeat"]),
    arm::<v1::LeaveGroupRequest>(&["pyralog.v1.Groups/LeaveGroup"]),
    arm::<v1::CommitOffsetsRequest>(&["pyralog.v1.Groups/CommitOffsets"]),
    arm::<v1::FetchOffsetsRequest>(&["pyralog.v1.Groups/FetchOffsets"]),
    arm::<v1::ListGroupsRequest>(&["pyralog.v1.Groups/ListGroups"]),
    arm::<v1::DescribeGroupRequest>(&["pyralog.v1.Groups/DescribeGroup"]),
    arm::<v1::ResetOffsetsRequest>(&["pyralog.v1.Groups/ResetOffsets"]),
    arm::<v1::DeleteGroupRequest>(&["pyralog.v1.Groups/DeleteGroup"]),
    arm::<v1::WhoAmIRequest>(&["pyralog.v1.Security/WhoAmI"]),
    arm::<v1::CreateAclsRequest>(&["pyralog.v1.Security/CreateAcls"]),
    arm::<v1::DeleteAclsRequest>(&["pyralog.v1.Security/DeleteAcls"]),
    arm::<v1::ListAclsRequest>(&["pyralog.v1.Security/ListAcls"]),
    Arm {
        rpcs: &["pyralog.internal.v1.Controller/Write"],
        message: std::any::type_name::<cluster::RaftPayload>,
        run: controller_write,
    },
    arm::<cluster::HeartbeatRequest>(&["pyralog.internal.v1.Controller/Heartbeat"]),
    arm::<cluster::ReplicaFetchRequest>(&["pyralog.internal.v1.Replication/Fetch"]),
    arm::<cluster::EpochEndOffsetRequest>(&["pyralog.internal.v1.Replication/EpochEndOffset"]),
    // A bare log config, the richest conversion (inside `CreateLog`).
    arm::<v1::LogConfig>(&[]),
    arm::<v1::RepairPartitionRequest>(&["pyralog.v1.Admin/RepairPartition"]),
    raft_arm::<AppendEntries>(&["pyralog.internal.v1.Raft/AppendEntries"]),
    raft_arm::<Vote>(&["pyralog.internal.v1.Raft/Vote"]),
    raft_arm::<InstallSnapshot>(&["pyralog.internal.v1.Raft/InstallSnapshot"]),
    raft_arm::<GroupHeartbeat>(&["pyralog.internal.v1.Controller/GroupHeartbeat"]),
    arm::<cluster::AddLearnerRequest>(&["pyralog.internal.v1.Controller/AddLearner"]),
];

/// Number of message types the first input byte chooses from.
pub const MESSAGE_TYPES: u8 = ARMS.len() as u8;

pub fn target(input: &[u8]) {
    let Some((&which, bytes)) = input.split_first() else {
        return;
    };
    (ARMS[usize::from(which % MESSAGE_TYPES)].run)(bytes);
}

/// The first input byte that picks the arm of `rpc` (`""`: the bare log config's).
fn which(rpc: &str) -> u8 {
    let i = ARMS
        .iter()
        .position(|a| {
            if rpc.is_empty() {
                a.rpcs.is_empty()
            } else {
                a.rpcs.contains(&rpc)
            }
        })
        .unwrap_or_else(|| panic!("no arm for {rpc:?}"));
    u8::try_from(i).expect("fewer than 256 arms")
}

/// Seeds: (file name, input) for realistic requests of the types with conversions.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let with = |which: u8, m: &dyn Fn() -> Vec<u8>| {
        let mut v = vec![which];
        v.extend(m());
        v
    };
    let records = v1::RecordList {
        records: vec![
            v1::NewRecord {
                timestamp_us: crate::seeds::T0,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"v")),
                headers: vec![v1::Header {
                    key: "h".into(),
                    value: Bytes::from_static(b"x"),
                }],
            },
            v1::NewRecord {
                timestamp_us: crate::seeds::T0 + 1,
                key: None,
                value: None,
                headers: vec![],
            },
        ],
    };
    let produce_records = v1::ProduceRequest {
        log: "orders".into(),
        partition: 1,
        payload: Some(v1::produce_request::Payload::Records(records)),
        acks: v1::AckPolicy::Quorum as i32,
        timeout_ms: 5000,
        producer_id: None,
        producer_epoch: 0,
        base_sequence: 0,
    };
    let produce_batch = v1::ProduceRequest {
        payload: Some(v1::produce_request::Payload::Batch(
            crate::seeds::batches()[1].clone(),
        )),
        producer_id: Some(7),
        ..produce_records.clone()
    };
    let config = v1::LogConfig::from(&LogConfig {
        partition_count: 6,
        ..LogConfig::default()
    });
    let create = v1::CreateLogRequest {
        log: "orders".into(),
        config: Some(config.clone()),
    };
    let acls = v1::CreateAclsRequest {
        entries: vec![v1::AclEntry {
            principal: "alice".into(),
            permission: v1::AclPermission::Allow as i32,
            operation: v1::AclOperation::Produce as i32,
            resource_type: v1::AclResourceType::Log as i32,
            pattern_type: v1::AclPatternType::Prefix as i32,
            resource_name: "orders".into(),
        }],
    };
    let raft = cluster::RaftPayload {
        json: serde_json::to_vec(&crate::controller::commands()[2])
            .expect("serializes")
            .into(),
    };
    let repair = v1::RepairPartitionRequest {
        log: "orders".into(),
        partition: 2,
    };
    let [append, vote, snapshot, group_heartbeat] = raft_seeds();
    vec![
        (
            "produce-records".into(),
            with(which("pyralog.v1.Producer/Produce"), &|| {
                produce_records.encode_to_vec()
            }),
        ),
        (
            "produce-batch".into(),
            with(which("pyralog.v1.Producer/Produce"), &|| {
                produce_batch.encode_to_vec()
            }),
        ),
        (
            "create-log".into(),
            with(which("pyralog.v1.Admin/CreateLog"), &|| {
                create.encode_to_vec()
            }),
        ),
        (
            "create-acls".into(),
            with(which("pyralog.v1.Security/CreateAcls"), &|| {
                acls.encode_to_vec()
            }),
        ),
        (
            "raft-write".into(),
            with(which("pyralog.internal.v1.Controller/Write"), &|| {
                raft.encode_to_vec()
            }),
        ),
        (
            "log-config".into(),
            with(which(""), &|| config.encode_to_vec()),
        ),
        (
            "repair-partition".into(),
            with(which("pyralog.v1.Admin/RepairPartition"), &|| {
                repair.encode_to_vec()
            }),
        ),
        (
            "add-partitions".into(),
            with(which("pyralog.v1.Admin/AddPartitions"), &|| {
                v1::AddPartitionsRequest {
                    log: "orders".into(),
                    partition_count: 8,
                }
                .encode_to_vec()
            }),
        ),
        (
            "reassign-partitions".into(),
            with(which("pyralog.v1.Admin/ReassignPartitions"), &|| {
                v1::ReassignPartitionsRequest {
                    moves: vec![v1::PartitionMove {
                        log: "orders".into(),
                        partition: 1,
                        replicas: vec![3, 2],
                    }],
                }
                .encode_to_vec()
            }),
        ),
        (
            "decommission-node".into(),
            with(which("pyralog.v1.Admin/DecommissionNode"), &|| {
                v1::DecommissionNodeRequest { node_id: 2 }.encode_to_vec()
            }),
        ),
        (
            "raft-append-entries".into(),
            with(which("pyralog.internal.v1.Raft/AppendEntries"), &|| {
                append.clone()
            }),
        ),
        (
            "raft-vote".into(),
            with(which("pyralog.internal.v1.Raft/Vote"), &|| vote.clone()),
        ),
        (
            "raft-install-snapshot".into(),
            with(which("pyralog.internal.v1.Raft/InstallSnapshot"), &|| {
                snapshot.clone()
            }),
        ),
        (
            "group-heartbeat".into(),
            with(
                which("pyralog.internal.v1.Controller/GroupHeartbeat"),
                &|| group_heartbeat.clone(),
            ),
        ),
    ]
}

/// `value` as the JSON of a `RaftPayload`, encoded.
fn raft_payload<T: Serialize>(value: &T) -> Vec<u8> {
    cluster::RaftPayload {
        json: serde_json::to_vec(value).expect("serializes").into(),
    }
    .encode_to_vec()
}

/// The controller's Raft requests (append entries carrying a command, a membership change and
/// a blank entry; a vote; a whole snapshot in one chunk) and a group heartbeat, as encoded
/// `RaftPayload`s.
fn raft_seeds() -> [Vec<u8>; 4] {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, Membership, SnapshotMeta};
    use openraft::{StoredMembership, Vote as RaftVote};
    let log_id = |index| openraft::LogId::new(CommittedLeaderId::new(3, 1), index);
    let membership = Membership::new(vec![[1, 2, 3].into()], ());
    let append = AppendEntries {
        vote: RaftVote::new_committed(3, 1),
        prev_log_id: Some(log_id(41)),
        entries: vec![
            Entry {
                log_id: log_id(42),
                payload: EntryPayload::Normal(crate::controller::commands()[2].clone()),
            },
            Entry {
                log_id: log_id(43),
                payload: EntryPayload::Membership(membership.clone()),
            },
            Entry {
                log_id: log_id(44),
                payload: EntryPayload::Blank,
            },
        ],
        leader_commit: Some(log_id(41)),
    };
    let vote = Vote::new(RaftVote::new(4, 2), Some(log_id(44)));
    let snapshot = InstallSnapshot {
        vote: RaftVote::new_committed(3, 1),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(44)),
            last_membership: StoredMembership::new(Some(log_id(43)), membership),
            snapshot_id: "3-1-44".into(),
        },
        offset: 0,
        data: serde_json::to_vec(&pyralog_controller::ClusterState::default()).expect("serializes"),
        done: true,
    };
    let heartbeat = GroupHeartbeat {
        group: "billing".into(),
        member: "m-1".into(),
        owned: [(LogId::new("orders").expect("valid name"), 0)].into(),
    };
    [
        raft_payload(&append),
        raft_payload(&vote),
        raft_payload(&snapshot),
        raft_payload(&heartbeat),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::ARMS;

    /// `pyralog.v1.FetchRequest` for `.pyralog.v1.FetchRequest`; the same for the Rust type
    /// `pyralog_proto::v1::FetchRequest` (`internal` is the package `pyralog.internal.v1`).
    fn proto_name(rust_type: &str) -> String {
        let path: Vec<&str> = rust_type.split("::").collect();
        match path.as_slice() {
            ["pyralog_proto", "v1", name] => format!("pyralog.v1.{name}"),
            ["pyralog_proto", "internal", name] => format!("pyralog.internal.v1.{name}"),
            _ => panic!("{rust_type} is not a top-level message of pyralog_proto"),
        }
    }

    /// Every RPC of every service in the .proto files (public and cluster), with the message
    /// its request carries.
    fn rpcs() -> BTreeMap<String, String> {
        let fds =
            FileDescriptorSet::decode(pyralog_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
        let mut out = BTreeMap::new();
        for file in &fds.file {
            for service in &file.service {
                for method in &service.method {
                    out.insert(
                        format!("{}.{}/{}", file.package(), service.name(), method.name()),
                        method.input_type().trim_start_matches('.').to_owned(),
                    );
                }
            }
        }
        out
    }

    #[test]
    fn every_rpc_has_an_arm_of_its_request_type() {
        let rpcs = rpcs();
        assert!(rpcs.len() >= 36, "the descriptor set lists every service");
        for (rpc, input) in &rpcs {
            let arms: Vec<_> = ARMS
                .iter()
                .filter(|a| a.rpcs.contains(&rpc.as_str()))
                .collect();
            assert_eq!(
                arms.len(),
                1,
                "{rpc}: one arm of the request target decodes its request"
            );
            assert_eq!(
                &proto_name((arms[0].message)()),
                input,
                "{rpc}: its arm decodes the message the RPC takes"
            );
        }
        for arm in ARMS {
            for rpc in arm.rpcs {
                assert!(
                    rpcs.contains_key(*rpc),
                    "{rpc} is not an RPC of the .proto files"
                );
            }
        }
    }
}
