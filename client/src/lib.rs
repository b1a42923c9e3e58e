//! The Rust client for Pyralog.
//!
//! - [`Client`]: a connection (one HTTP/2 channel) with admin calls and raw fetch.
//! - [`Producer`]: batches records per partition by size and linger, routes keyed records by
//!   the documented key hash (`pyralog_types::partitioner`), retries retriable errors, and
//!   keeps several batches per partition in flight over one `ProduceStream`, in order.
//! - [`PartitionConsumer`]: reads one partition from an offset or timestamp, long-polling at
//!   the end.
//! - [`GroupConsumer`]: a consumer group member (cooperative rebalancing, auto or manual
//!   commits, commits by VLSN, offset reset policy).
//! - With `ProducerConfig::enable_idempotence`, the producer's retries never duplicate a
//!   batch.

mod acls;
mod client;
mod consumer;
mod error;
mod group;
mod producer;
mod transport;

pub use acls::WhoAmI;
pub use client::{ArchiveInfo, Client, LogInfo, PartitionInfo, TableInfo};
pub use consumer::{ConsumerConfig, PartitionConsumer};
pub use error::ClientError;
pub use group::{
    GroupConfig, GroupConsumer, GroupRecord, LogPartition, OffsetReset, RebalanceListener,
};
pub use producer::{Delivered, DeliveryFuture, ProduceRecord, Producer, ProducerConfig};
pub use pyralog_proto::v1::AssignmentStrategy;
pub use pyralog_types::batch::Compression;
pub use pyralog_types::{AckPolicy, Header, LogConfig, LogOffset, Record, Retention};
pub use transport::ClientOptions;
