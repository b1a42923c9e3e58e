//! Every archived log as an Iceberg v2 table in the bucket.
//!
//! The archive (Parquet objects plus per-partition manifests, `pyralog-cold-tier`) is the
//! source of truth; this crate derives from it an Iceberg table per log, at the log's folder
//! `{prefix}/log={log}`, with its metadata in `metadata/`: a snapshot after each manifest
//! commit (archive uploads append, compaction overwrites, retention deletes), so engines that
//! read Iceberg (pyiceberg, DuckDB, Spark, Trino) see exactly the live records, with snapshot
//! isolation, while replaced objects still sit in the bucket.
//!
//! - [`spec`]: schema, partition specs, name mapping, bound encoding;
//! - [`avro`]: manifests and manifest lists;
//! - [`metadata`]: the metadata JSON and snapshot expiry;
//! - [`table`]: the commit (optimistic, create-only PUT of the next version) and the set of
//!   objects kept snapshots reference (for orphan collection);
//! - [`publisher`]: the node's background task between manifest commits and table commits;
//! - [`catalog`]: the read-only Iceberg REST catalog's routes and bodies (the node serves it).
//!
//! Why not the `iceberg` crate: its 0.10 line builds on arrow/parquet 58 and opendal while the
//! workspace is on arrow/parquet 60, so it would compile a second Arrow and Parquet; the files
//! Pyralog writes (data files only, two fixed partition specs, one schema) are a small part of
//! the spec, written here with `apache-avro` and serde.

pub mod avro;
pub mod catalog;
pub mod error;
pub mod metadata;
pub mod publisher;
pub mod spec;
pub mod table;

pub use error::LakehouseError;
pub use metadata::{TableMetadata, TableSettings};
pub use publisher::Publisher;
pub use table::{base_uri, IcebergTables, LoadedTable};
