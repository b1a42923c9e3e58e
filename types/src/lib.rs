//! Shared vocabulary of Pyralog.
//!
//! Every other crate speaks in these types: [`LogId`], [`PartitionId`], [`LogOffset`],
//! [`Epoch`], [`Record`], the [`LogConfig`] of a log, the wire/disk [`batch`] format, and the
//! stable [`Reason`] codes that errors carry to clients. The crate has no I/O and no async so
//! that it stays at the bottom of the dependency graph and builds in seconds.

pub mod acl;
pub mod batch;
pub mod clock;
pub mod config;
pub mod ids;
pub mod partitioner;
pub mod reason;
pub mod record;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    AckPolicy, CompactionMode, DownsampleTier, FsyncPolicy, Integrity, LogConfig, Retention,
    TimeSeriesSpec,
};
pub use ids::{Epoch, LogId, LogIdError, LogOffset, NodeId, PartitionId, TimestampMicros};
pub use reason::Reason;
pub use record::{Header, Record};
