//! Pyralog's wire API.
//!
//! The generated tonic/prost code lives in [`v1`]; domain crates never see it. Conversions
//! between wire and domain types live in [`convert`], and the one mapping between a domain
//! [`Reason`](pyralog_types::Reason) and a gRPC status lives in [`status`], so the gateway and
//! the client library agree on it.

#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("pyralog.v1");
}

/// Node-to-node services (controller Raft, controller writes, partition replication).
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod internal {
    tonic::include_proto!("pyralog.internal.v1");
}

pub mod convert;
pub mod convert_acl;
pub mod status;

/// Encoded `FileDescriptorSet` of every Pyralog proto, internal services included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pyralog_descriptor.bin"));

/// Encoded `FileDescriptorSet` of the public API only: what the client listener's gRPC
/// reflection serves (the internal services are not on that listener, nor listed).
pub const PUBLIC_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pyralog_public_descriptor.bin"));
