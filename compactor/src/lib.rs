//! The compactor: moves closed segments from the hot tier to the cold tier and keeps both
//! within their retention.
//!
//! This crate holds the steps; the node decides when to run them (a ticker per node, for the
//! partitions it leads). Each step is safe to interrupt at any point and to repeat:
//!
//! 1. [`archive::archive_partition`]: every closed local segment past the manifest's end is
//!    read (CRC-checked), encoded as Parquet, uploaded under a key derived from its offsets
//!    (a retry lands on the same key), then committed to the manifest. Only then may
//!    local retention delete it: the hot tier's `deletable_below` is the manifest's end.
//! 2. [`retention::apply_total_retention`]: the log's total retention removes the oldest
//!    cold segments from the manifest (one commit); their objects become orphans, which
//!    [`pyralog_cold_tier::gc_orphans`] deletes after a grace period.
//!
//! A crash between any two steps leaves either an uncommitted object (invisible, collected
//! later) or a committed segment whose local copy still exists (deleted on the next run).

pub mod archive;
pub mod compact;
pub mod error;
pub mod keys;
pub mod retention;
pub mod standalone;
pub mod timeseries;

pub use archive::{archive_partition, ArchiveOptions, ArchiveReport, PartitionTiers};
pub use compact::{compact_partition, ColdTarget, CompactOptions, CompactTarget, CompactionReport};
pub use error::CompactorError;
pub use keys::KeyMap;
pub use retention::{apply_retention, RetentionReport};
pub use standalone::{PartitionPass, StandaloneCompactor, StandaloneConfig};
pub use timeseries::{downsample, BucketValue, BUCKET_HEADER};
