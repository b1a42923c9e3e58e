//! Pyralog's cold tier: closed segments as Parquet on object storage.
//!
//! The pieces, bottom up:
//! - [`store`]: open an object store by URL (S3, GCS, Azure, local folder, memory) and probe
//!   it at startup;
//! - [`layout`]: where segments and manifests live in the bucket (hive layout for SQL engines);
//! - [`codec`]: the Parquet schema, encoding a segment, and rebuilding hot-format batches;
//! - [`manifest`]: the per-partition list of cold segments, committed with conditional PUTs;
//! - [`upload`]: idempotent segment upload with retries, and garbage collection of orphans;
//! - [`reader`]: ranged reads of only the row groups a fetch needs, through the [`cache`];
//! - [`partition`]: one partition's committed manifest held in memory, with reads through it;
//! - [`registry`]: the bucket's copy of each log's configuration, for restores;
//! - [`fault`]: an object-store wrapper that injects failures, for tests here and end to end;
//! - [`write_once`]: the [`WriteOnce`] step that puts stored objects under retention (S3 Object
//!   Lock, implemented outside this crate) before a manifest names them.
//!
//! A write is: [`encode_segment`] → [`upload_segment`] → [`ManifestStore::commit`], or, for
//! the archiver, [`SegmentWriter`] into a [`PartSink`] while [`upload_streamed`] sends the
//! parts (memory bounded by a row group and a few parts) → commit. An object
//! becomes visible to readers only through a committed manifest, so a crash between any two
//! steps leaves at worst an unreferenced object, which [`gc_orphans`] removes later.

pub mod cache;
pub mod codec;
mod decoded;
pub mod error;
pub mod fault;
pub mod layout;
mod lru;
pub mod manifest;
pub mod partition;
pub mod reader;
pub mod registry;
pub mod store;
pub mod upload;
pub mod write_once;

pub use cache::{CacheSettings, CacheStats, ChunkCache};
pub use codec::{
    chain_column, decode_rows, encode_metric_records, encode_records, encode_segment, field_ids,
    for_each_ledger_row, ledger_schema, metrics_schema, records_to_batches, EncodeOptions,
    EncodedSegment, LedgerSeal, MetricRow, SegmentMeta, SegmentWriter, CHAIN_COLUMN,
};
pub use error::{AccessProblem, ColdError};
pub use fault::{Fault, FaultPlan, FaultyStore, OpKind};
pub use layout::{Layout, SegmentKey};
pub use manifest::{ColdSegment, CommitOutcome, Manifest, ManifestStore, ManifestVersion};
pub use partition::{ColdPartition, ManifestObserver};
pub use reader::{ColdRead, ColdReader, Readahead};
pub use registry::LogRegistry;
pub use store::{check_access, open_store, s3_builder, ObjectStoreConfig};
pub use upload::{
    gc_orphans, part_channel, upload_segment, upload_streamed, PartSink, PartStream, RetryPolicy,
    UploadOptions,
};
pub use write_once::{LockMode, ObjectLockSettings, WriteOnce};
