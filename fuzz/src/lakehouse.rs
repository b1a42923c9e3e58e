//! The lakehouse's decoders: an Iceberg table's manifest lists and manifests (Avro) and its
//! metadata file (JSON), which every publisher and every orphan collection reads back from
//! the bucket.
//!
//! Contract: no panic and no allocation beyond the limit; a manifest list or manifest that
//! decodes re-encodes, and from then on encoding and decoding are a fixed point; metadata
//! that parses survives a JSON round trip and answers its current snapshot and manifest
//! versions.

use pyralog_lakehouse::avro::{
    read_manifest, read_manifest_list, write_manifest, write_manifest_list, DataFile,
    ManifestEntry, ManifestFile, ManifestHeader, Status,
};
use pyralog_lakehouse::metadata::{Snapshot, TableMetadata, MANIFEST_VERSIONS};
use pyralog_lakehouse::spec::{long_bound, schema_json, Spec};

use crate::damage::{apply, plan};

fn listed(spec: Spec) -> ManifestFile {
    ManifestFile {
        path: "s3://b/log=orders/metadata/m.avro".into(),
        length: 1,
        spec,
        sequence_number: 7,
        min_sequence_number: 3,
        added_snapshot_id: 42,
        added_files: 1,
        existing_files: 1,
        deleted_files: 1,
        added_rows: 10,
        existing_rows: 20,
        deleted_rows: 30,
        partition: 2,
        days: (spec == Spec::ByPartitionAndDay).then_some((20_790, 20_791)),
    }
}

fn header(spec: Spec) -> ManifestHeader {
    ManifestHeader {
        schema_json: schema_json().to_string(),
        spec,
    }
}

/// A manifest of three entries (added, existing, deleted) under the day spec.
pub fn manifest_seed() -> Vec<u8> {
    let entries: Vec<ManifestEntry> = [Status::Added, Status::Existing, Status::Deleted]
        .into_iter()
        .enumerate()
        .map(|(i, status)| ManifestEntry {
            status,
            snapshot_id: 42 + i as i64,
            sequence_number: 3 + i as i64,
            file_sequence_number: 3 + i as i64,
            file: DataFile {
                path: format!("s3://b/log=orders/partition=2/{i:020}.parquet"),
                spec: Spec::ByPartitionAndDay,
                partition: 2,
                day: Some(20_790 + i as i32),
                record_count: 100,
                size_bytes: 4096,
                value_counts: vec![(1, 100), (3, 100)],
                null_value_counts: vec![(1, 0), (3, 0)],
                lower_bounds: vec![(1, long_bound(0)), (3, long_bound(1))],
                upper_bounds: vec![(1, long_bound(99)), (3, long_bound(2))],
            },
        })
        .collect();
    write_manifest(&header(Spec::ByPartitionAndDay), &entries).expect("manifest encodes")
}

/// A manifest list naming one manifest per spec.
pub fn manifest_list_seed() -> Vec<u8> {
    let files = [listed(Spec::ByPartition), listed(Spec::ByPartitionAndDay)];
    write_manifest_list(42, Some(41), 7, &files).expect("manifest list encodes")
}

/// Table metadata with one snapshot.
pub fn metadata_seed() -> Vec<u8> {
    let mut m = TableMetadata::new("u".into(), "s3://b/log=orders".into(), "orders", 5);
    m.add_snapshot(
        Snapshot {
            snapshot_id: 42,
            parent_snapshot_id: None,
            sequence_number: 1,
            timestamp_ms: 6,
            manifest_list: "s3://b/log=orders/metadata/snap-42.avro".into(),
            summary: [(MANIFEST_VERSIONS.to_owned(), r#"{"0":3}"#.to_owned())].into(),
            schema_id: 0,
        },
        None,
    );
    serde_json::to_vec(&m).expect("metadata serializes")
}

pub fn target(input: &[u8]) {
    check(input);
    let (plan, program) = plan(input);
    if !plan.replace {
        let mut file = match plan.selector % 3 {
            0 => manifest_list_seed(),
            1 => manifest_seed(),
            _ => metadata_seed(),
        };
        apply(&mut file, program);
        check(&file);
    }
}

fn check(bytes: &[u8]) {
    check_list(bytes);
    for spec in [Spec::ByPartition, Spec::ByPartitionAndDay] {
        check_manifest(bytes, spec);
    }
    check_metadata(bytes);
}

fn check_list(bytes: &[u8]) {
    let Ok(first) = read_manifest_list(bytes, "fuzz") else {
        return;
    };
    let round = |files: &[ManifestFile]| {
        let b = write_manifest_list(1, None, 1, files).expect("a decoded list re-encodes");
        read_manifest_list(&b, "again").expect("a re-encoded list decodes")
    };
    let second = round(&first);
    assert_eq!(round(&second), second, "manifest list is not a fixed point");
}

fn check_manifest(bytes: &[u8], spec: Spec) {
    let Ok(first) = read_manifest(bytes, &listed(spec)) else {
        return;
    };
    let Some(file_spec) = first.first().map(|e| e.file.spec) else {
        return;
    };
    if first.iter().any(|e| e.file.spec != file_spec) {
        return;
    }
    let round = |entries: &[ManifestEntry]| {
        let b = write_manifest(&header(file_spec), entries).expect("a decoded manifest re-encodes");
        read_manifest(&b, &listed(file_spec)).expect("a re-encoded manifest decodes")
    };
    let second = round(&first);
    assert_eq!(round(&second), second, "manifest is not a fixed point");
}

fn check_metadata(bytes: &[u8]) {
    let Ok(m) = serde_json::from_slice::<TableMetadata>(bytes) else {
        return;
    };
    let _ = m.current_snapshot().map(Snapshot::manifest_versions);
    let again: TableMetadata =
        serde_json::from_slice(&serde_json::to_vec(&m).expect("serializes")).expect("round trip");
    assert_eq!(again, m, "metadata changed in a JSON round trip");
}
