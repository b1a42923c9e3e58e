//! Every request message a node accepts from the network (the public API and the cluster
//! listener's), through prost and the public conversions to domain types that the gateway's
//! handlers use (`pyralog_proto::convert`, `convert_acl`), plus the names and batches they
//! carry.
//!
//! The input's first byte picks the message type, the rest is its encoding. Contract: no
//! panic; a message that decodes re-encodes to one that decodes equal; a log config that
//! converts is valid and converts back to itself; an ACL entry that converts is valid and
//! converts back to itself; a produce request's records encode into a batch that parses.

use bytes::Bytes;
use prost::Message;
use pyralog_proto::internal as cluster;
use pyralog_proto::v1;
use pyralog_types::acl::AclEntry;
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::{LogConfig, LogId};

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

/// Number of message types the first input byte chooses from.
pub const MESSAGE_TYPES: u8 = 31;

pub fn target(input: &[u8]) {
    let Some((&which, bytes)) = input.split_first() else {
        return;
    };
    match which % MESSAGE_TYPES {
        0 => {
            if let Some(m) = decode::<v1::ProduceRequest>(bytes) {
                produce(m);
            }
        }
        1 => drop(decode::<v1::InitProducerRequest>(bytes)),
        2 => {
            if let Some(m) = decode::<v1::FetchRequest>(bytes) {
                name(&m.log);
            }
        }
        3 => {
            if let Some(m) = decode::<v1::ListOffsetsRequest>(bytes) {
                name(&m.log);
            }
        }
        4 => {
            if let Some(m) = decode::<v1::CreateLogRequest>(bytes) {
                name(&m.log);
                log_config(m.config.unwrap_or_default());
            }
        }
        5 => drop(decode::<v1::ListLogsRequest>(bytes)),
        6 => drop(decode::<v1::DescribeLogRequest>(bytes)),
        7 => drop(decode::<v1::DeleteLogRequest>(bytes)),
        8 => drop(decode::<v1::RollSegmentsRequest>(bytes)),
        9 => drop(decode::<v1::DescribeClusterRequest>(bytes)),
        10 => drop(decode::<v1::RunCompactionRequest>(bytes)),
        11 => drop(decode::<v1::CompactionStatusRequest>(bytes)),
        12 => drop(decode::<v1::JoinGroupRequest>(bytes)),
        13 => drop(decode::<v1::SyncGroupRequest>(bytes)),
        14 => drop(decode::<v1::GroupHeartbeatRequest>(bytes)),
        15 => drop(decode::<v1::LeaveGroupRequest>(bytes)),
        16 => drop(decode::<v1::CommitOffsetsRequest>(bytes)),
        17 => drop(decode::<v1::FetchOffsetsRequest>(bytes)),
        18 => drop(decode::<v1::ListGroupsRequest>(bytes)),
        19 => drop(decode::<v1::DescribeGroupRequest>(bytes)),
        20 => drop(decode::<v1::ResetOffsetsRequest>(bytes)),
        21 => drop(decode::<v1::DeleteGroupRequest>(bytes)),
        22 => drop(decode::<v1::WhoAmIRequest>(bytes)),
        23 => {
            if let Some(m) = decode::<v1::CreateAclsRequest>(bytes) {
                m.entries.into_iter().for_each(acl);
            }
        }
        24 => {
            if let Some(m) = decode::<v1::DeleteAclsRequest>(bytes) {
                m.entries.into_iter().for_each(acl);
            }
        }
        25 => drop(decode::<v1::ListAclsRequest>(bytes)),
        26 => {
            // The controller's `Write` carries a command as JSON.
            if let Some(m) = decode::<cluster::RaftPayload>(bytes) {
                crate::controller::target(&m.json);
            }
        }
        27 => drop(decode::<cluster::HeartbeatRequest>(bytes)),
        28 => drop(decode::<cluster::ReplicaFetchRequest>(bytes)),
        29 => drop(decode::<cluster::EpochEndOffsetRequest>(bytes)),
        _ => {
            // A bare log config, the richest conversion.
            if let Some(m) = decode::<v1::LogConfig>(bytes) {
                log_config(m);
            }
        }
    }
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
    vec![
        (
            "produce-records".into(),
            with(0, &|| produce_records.encode_to_vec()),
        ),
        (
            "produce-batch".into(),
            with(0, &|| produce_batch.encode_to_vec()),
        ),
        ("create-log".into(), with(4, &|| create.encode_to_vec())),
        ("create-acls".into(), with(23, &|| acls.encode_to_vec())),
        ("raft-write".into(), with(26, &|| raft.encode_to_vec())),
        ("log-config".into(), with(30, &|| config.encode_to_vec())),
    ]
}
