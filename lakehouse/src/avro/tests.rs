//! Manifests and manifest lists round-trip, and ADDED entries inherit what the spec says.

use super::*;
use crate::spec::{long_bound, schema_json};

fn file(i: i64, spec: Spec) -> DataFile {
    DataFile {
        path: format!("s3://b/log=x/partition=3/{i:020}.parquet"),
        spec,
        partition: 3,
        day: (spec == Spec::ByPartitionAndDay).then_some(20_790),
        record_count: 10 + i,
        size_bytes: 1000 + i,
        value_counts: vec![(1, 10 + i)],
        null_value_counts: vec![(1, 0)],
        lower_bounds: vec![(1, long_bound(i * 100))],
        upper_bounds: vec![(1, long_bound(i * 100 + 9))],
    }
}

fn listed(spec: Spec) -> ManifestFile {
    ManifestFile {
        path: "s3://b/log=x/metadata/m.avro".into(),
        length: 1,
        spec,
        sequence_number: 9,
        min_sequence_number: 2,
        added_snapshot_id: 77,
        added_files: 1,
        existing_files: 1,
        deleted_files: 0,
        added_rows: 10,
        existing_rows: 11,
        deleted_rows: 0,
        partition: 3,
        days: (spec == Spec::ByPartitionAndDay).then_some((20_790, 20_790)),
    }
}

#[test]
fn a_manifest_round_trips_and_added_entries_inherit_the_lists_sequence_number() {
    for spec in [Spec::ByPartition, Spec::ByPartitionAndDay] {
        let entries = vec![
            ManifestEntry {
                status: Status::Existing,
                snapshot_id: 5,
                sequence_number: 2,
                file_sequence_number: 2,
                file: file(0, spec),
            },
            ManifestEntry {
                status: Status::Added,
                snapshot_id: 77,
                sequence_number: 12345, // not written: readers inherit the list's 9
                file_sequence_number: 12345,
                file: file(1, spec),
            },
        ];
        let header = ManifestHeader {
            schema_json: schema_json().to_string(),
            spec,
        };
        let bytes = write_manifest(&header, &entries).expect("encode");
        let back = read_manifest(&bytes, &listed(spec)).expect("decode");
        assert_eq!(back[0], entries[0]);
        assert_eq!(
            back[1],
            ManifestEntry {
                sequence_number: 9,
                file_sequence_number: 9,
                ..entries[1].clone()
            }
        );
        // The header carries what readers need to interpret the partition tuples.
        let reader = Reader::new(&bytes[..]).expect("reader");
        let meta = reader.user_metadata();
        assert_eq!(meta["format-version"], b"2");
        assert_eq!(meta["content"], b"data");
        assert_eq!(meta["partition-spec-id"], spec.id().to_string().as_bytes());
    }
}

#[test]
fn entries_of_another_spec_are_refused() {
    let header = ManifestHeader {
        schema_json: "{}".into(),
        spec: Spec::ByPartition,
    };
    let entry = ManifestEntry {
        status: Status::Added,
        snapshot_id: 1,
        sequence_number: 1,
        file_sequence_number: 1,
        file: file(0, Spec::ByPartitionAndDay),
    };
    assert!(write_manifest(&header, &[entry]).is_err());
}

#[test]
fn a_manifest_list_round_trips_with_its_partition_summaries() {
    let files = vec![listed(Spec::ByPartition), listed(Spec::ByPartitionAndDay)];
    let bytes = write_manifest_list(77, Some(76), 9, &files).expect("encode");
    let back = read_manifest_list(&bytes, "list").expect("decode");
    assert_eq!(back, files);
    let reader = Reader::new(&bytes[..]).expect("reader");
    assert_eq!(reader.user_metadata()["parent-snapshot-id"], b"76");
}

#[test]
fn damaged_files_are_corrupt_errors() {
    let bytes = write_manifest_list(77, None, 9, &[listed(Spec::ByPartition)]).expect("encode");
    for cut in [0, 3, bytes.len() / 2, bytes.len() - 1] {
        let err = read_manifest_list(&bytes[..cut], "list").expect_err("cut file");
        assert!(matches!(err, LakehouseError::Corrupt { .. }), "{err}");
    }
    // A damaged schema name in the header: apache-avro unwraps on it; we report corruption.
    let mut named = bytes.clone();
    if let Some(at) = named.windows(13).position(|w| w == b"manifest_file") {
        named[at + 11] = b'}';
    }
    let err = read_manifest_list(&named, "list").expect_err("bad schema name");
    assert!(matches!(err, LakehouseError::Corrupt { .. }), "{err}");
}
