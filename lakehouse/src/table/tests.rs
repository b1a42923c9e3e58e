//! The table as a specification: what each archive change becomes in Iceberg terms.

use std::collections::BTreeSet;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use pyralog_cold_tier::{encode_records, ColdSegment, EncodeOptions};
use pyralog_types::{Epoch, LogOffset, Record};

use super::*;

/// 2026-12-03T00:00:00Z in µs.
const DAY0: i64 = 1_796_256_000_000_000;

struct Archive {
    _dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    base: String,
}

fn archive() -> Archive {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("local store"));
    let base = format!("file://{}", dir.path().display());
    Archive {
        _dir: dir,
        store,
        layout: Layout::new("").expect("layout"),
        base,
    }
}

impl Archive {
    fn tables(&self) -> IcebergTables {
        IcebergTables::new(
            self.store.clone(),
            self.layout.clone(),
            self.base.clone(),
            TableSettings::default(),
        )
    }

    /// Uploads records `base..=last` (timestamps from `ts` on, 1 s apart) as a segment of
    /// `generation`, keeping only offsets `keep` says.
    async fn segment(
        &self,
        partition: u32,
        (base, last): (u64, u64),
        ts: i64,
        generation: u64,
        keep: impl Fn(u64) -> bool,
    ) -> ColdSegment {
        let records: Vec<Record> = (base..=last)
            .filter(|&o| keep(o))
            .map(|o| Record {
                offset: LogOffset(o),
                epoch: Epoch(1),
                timestamp: ts + (o - base) as i64 * 1_000_000,
                key: Some(Bytes::from(format!("k{}", o % 3))),
                value: Some(Bytes::from(format!("{{\"n\":{o}}}"))),
                headers: Vec::new(),
            })
            .collect();
        let enc = encode_records(&records, &EncodeOptions::default()).expect("encode");
        let key = self.layout.segment_key(
            &log(),
            partition,
            LogOffset(base),
            LogOffset(last),
            generation,
        );
        let size = enc.bytes.len() as u64;
        self.store
            .put(&key, PutPayload::from(enc.bytes))
            .await
            .expect("upload");
        let mut s = ColdSegment::uploaded(&enc.meta, key.to_string(), size, generation);
        s.base_offset = LogOffset(base);
        s.last_offset = LogOffset(last);
        s
    }
}

fn log() -> LogId {
    LogId::new("orders").expect("log id")
}

fn manifest(partition: u32, version: u64, segments: Vec<ColdSegment>) -> Manifest {
    let mut m = Manifest::new(log(), partition);
    m.version = version;
    m.segments = segments;
    m
}

async fn live_files(tables: &IcebergTables, snapshot: &Snapshot) -> BTreeSet<(String, Status)> {
    let mut out = BTreeSet::new();
    for mf in tables
        .manifest_list(&snapshot.manifest_list)
        .await
        .expect("list")
        .iter()
    {
        for e in tables.manifest(mf).await.expect("manifest").iter() {
            let name = e
                .file
                .path
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            out.insert((name, e.status));
        }
    }
    out
}

fn names(v: &[(&str, Status)]) -> BTreeSet<(String, Status)> {
    v.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
}

const A: &str = "00000000000000000000-00000000000000000099.parquet";
const B: &str = "00000000000000000100-00000000000000000199.parquet";
const A1: &str = "00000000000000000000-00000000000000000099-g1.parquet";

#[tokio::test]
async fn archive_commits_become_append_then_overwrite_snapshots_of_the_live_objects() {
    let ar = archive();
    let tables = ar.tables();
    let a = ar.segment(0, (0, 99), DAY0, 0, |_| true).await;
    let b = ar
        .segment(0, (100, 199), DAY0 + 3_600_000_000, 0, |_| true)
        .await;

    let first = tables
        .publish(&log(), &[manifest(0, 1, vec![a.clone()])], 1_000)
        .await
        .expect("publish v1");
    assert!(first.is_some());
    tables
        .publish(&log(), &[manifest(0, 2, vec![a.clone(), b.clone()])], 2_000)
        .await
        .expect("publish v2");
    let t = tables.load(&log()).await.expect("load").expect("a table");
    assert_eq!(t.version, 2);
    let s2 = t.metadata.current_snapshot().expect("current").clone();
    assert_eq!(s2.summary["operation"], "append");
    assert_eq!(s2.summary["total-records"], "200");
    assert_eq!(s2.sequence_number, 2);
    assert_eq!(
        live_files(&tables, &s2).await,
        names(&[(A, Status::Existing), (B, Status::Added)])
    );

    // Key-based compaction rewrites A as generation 1 (a third of the keys survive).
    let a1 = ar.segment(0, (0, 99), DAY0, 1, |o| o >= 97).await;
    tables
        .publish(
            &log(),
            &[manifest(0, 3, vec![a1.clone(), b.clone()])],
            3_000,
        )
        .await
        .expect("publish v3");
    let t = tables.load(&log()).await.expect("load").expect("a table");
    let s3 = t.metadata.current_snapshot().expect("current").clone();
    assert_eq!(s3.summary["operation"], "overwrite");
    assert_eq!(s3.summary["deleted-records"], "100");
    assert_eq!(s3.summary["total-records"], "103");
    assert_eq!(
        live_files(&tables, &s3).await,
        names(&[
            (A1, Status::Added),
            (B, Status::Existing),
            (A, Status::Deleted)
        ])
    );
    // The snapshot before still reads the replaced object, so orphan collection keeps it.
    let kept = tables.referenced_keys(&log(), 0).await.expect("referenced");
    for s in [&a, &a1, &b] {
        assert!(kept.contains(&s.key), "{} kept", s.key);
    }
    assert!(tables
        .referenced_keys(&log(), 1)
        .await
        .expect("p1")
        .is_empty());

    // Publishing what the table already reflects changes nothing.
    let again = tables
        .publish(&log(), &[manifest(0, 3, vec![a1, b])], 4_000)
        .await
        .expect("republish");
    assert_eq!(again, None);
    assert_eq!(
        tables.load(&log()).await.expect("load").map(|t| t.version),
        Some(3)
    );
    let hint = ar
        .store
        .get(&tables.metadata_dir(&log()).join(VERSION_HINT))
        .await
        .expect("hint")
        .bytes()
        .await
        .expect("hint bytes");
    assert_eq!(hint.as_ref(), b"3");
}

#[tokio::test]
async fn retention_removing_every_object_leaves_an_empty_delete_snapshot() {
    let ar = archive();
    let tables = ar.tables();
    let a = ar.segment(0, (0, 99), DAY0, 0, |_| true).await;
    tables
        .publish(&log(), &[manifest(0, 1, vec![a])], 1_000)
        .await
        .expect("publish");
    tables
        .publish(&log(), &[manifest(0, 2, vec![])], 2_000)
        .await
        .expect("publish the removal");
    let t = tables.load(&log()).await.expect("load").expect("table");
    let s = t.metadata.current_snapshot().expect("current").clone();
    assert_eq!(s.summary["operation"], "delete");
    assert_eq!(s.summary["total-records"], "0");
    assert_eq!(
        live_files(&tables, &s).await,
        names(&[(A, Status::Deleted)])
    );
}

#[tokio::test]
async fn partitions_published_by_different_nodes_at_once_all_land() {
    let ar = archive();
    let (one, two) = (ar.tables(), ar.tables());
    let mut segs = Vec::new();
    for p in 0..4 {
        segs.push(ar.segment(p, (0, 9), DAY0, 0, |_| true).await);
    }
    let (r1, r2) = tokio::join!(
        async {
            for p in [0, 2] {
                one.publish(&log(), &[manifest(p, 1, vec![segs[p as usize].clone()])], 1)
                    .await
                    .expect("node one");
            }
        },
        async {
            for p in [1, 3] {
                two.publish(&log(), &[manifest(p, 1, vec![segs[p as usize].clone()])], 1)
                    .await
                    .expect("node two");
            }
        }
    );
    let ((), ()) = (r1, r2);
    let t = one.load(&log()).await.expect("load").expect("table");
    assert_eq!(t.version, 4, "one version per publication, none lost");
    let s = t.metadata.current_snapshot().expect("current");
    assert_eq!(s.manifest_versions().len(), 4);
    assert_eq!(s.summary["total-records"], "40");
    let listed = one.manifest_list(&s.manifest_list).await.expect("list");
    let parts: BTreeSet<i32> = listed.iter().map(|mf| mf.partition).collect();
    assert_eq!(parts, BTreeSet::from([0, 1, 2, 3]));
}

#[tokio::test]
async fn files_spanning_midnight_go_under_the_partition_only_spec() {
    let ar = archive();
    let tables = ar.tables();
    // 100 records 1 s apart, starting 10 s before midnight.
    let a = ar.segment(0, (0, 99), DAY0 - 10_000_000, 0, |_| true).await;
    let b = ar
        .segment(0, (100, 199), DAY0 + 1_000_000, 0, |_| true)
        .await;
    tables
        .publish(&log(), &[manifest(0, 1, vec![a, b])], 1)
        .await
        .expect("publish");
    let t = tables.load(&log()).await.expect("load").expect("table");
    let s = t.metadata.current_snapshot().expect("current");
    let listed = tables.manifest_list(&s.manifest_list).await.expect("list");
    let specs: Vec<(Spec, Option<(i32, i32)>)> =
        listed.iter().map(|mf| (mf.spec, mf.days)).collect();
    assert_eq!(
        specs,
        [
            (Spec::ByPartition, None),
            (Spec::ByPartitionAndDay, Some((20_790, 20_790)))
        ]
    );
}

#[tokio::test]
async fn expired_snapshots_lose_their_lists_and_manifests_but_never_data() {
    let ar = archive();
    let tables = IcebergTables::new(
        ar.store.clone(),
        ar.layout.clone(),
        ar.base.clone(),
        TableSettings {
            enabled: true,
            max_snapshot_age: std::time::Duration::from_secs(1),
            max_snapshots: 2,
            max_metadata_files: 1,
        },
    );
    let mut segs = Vec::new();
    for i in 0..5u64 {
        segs.push(ar.segment(0, (i * 10, i * 10 + 9), DAY0, 0, |_| true).await);
        tables
            .publish(
                &log(),
                &[manifest(0, i + 1, segs.clone())],
                (i as i64 + 1) * 100,
            )
            .await
            .expect("publish");
    }
    let t = tables.load(&log()).await.expect("load").expect("table");
    assert_eq!(t.metadata.snapshots.len(), 2);
    let listed: Vec<_> = ar
        .store
        .list(Some(&tables.metadata_dir(&log())))
        .try_collect()
        .await
        .expect("list");
    let count = |suffix: &str| {
        listed
            .iter()
            .filter(|o| o.location.as_ref().ends_with(suffix))
            .count()
    };
    assert_eq!(
        count(".metadata.json"),
        2,
        "the current one and one previous"
    );
    assert_eq!(
        listed
            .iter()
            .filter(|o| o
                .location
                .filename()
                .is_some_and(|n| n.starts_with("snap-")))
            .count(),
        2,
        "a manifest list per kept snapshot"
    );
    assert_eq!(
        count(".avro"),
        4,
        "two lists and the two kept snapshots' manifests"
    );
    for s in &segs {
        ar.store.head(&s.path()).await.expect("data files stay");
    }
}

#[tokio::test]
async fn aged_out_snapshots_expire_without_a_new_archive_commit_and_free_their_objects() {
    let ar = archive();
    let tables = IcebergTables::new(
        ar.store.clone(),
        ar.layout.clone(),
        ar.base.clone(),
        TableSettings {
            max_snapshot_age: std::time::Duration::from_secs(60),
            ..TableSettings::default()
        },
    );
    let a = ar.segment(0, (0, 99), DAY0, 0, |_| true).await;
    let a1 = ar.segment(0, (0, 99), DAY0, 1, |o| o >= 97).await;
    let publish = |m: Manifest, now_ms: i64| {
        let tables = &tables;
        async move { tables.publish(&log(), &[m], now_ms).await.expect("publish") }
    };
    publish(manifest(0, 1, vec![a.clone()]), 1_000).await;
    publish(manifest(0, 2, vec![a1.clone()]), 2_000).await;
    let kept = tables.referenced_keys(&log(), 0).await.expect("referenced");
    assert!(
        kept.contains(&a.key),
        "the first snapshot still lists the replaced object"
    );

    // Nothing new to publish, but a minute later the first snapshot has aged out.
    assert_eq!(
        publish(manifest(0, 2, vec![a1.clone()]), 30_000).await,
        None
    );
    assert_eq!(
        tables.load(&log()).await.expect("load").map(|t| t.version),
        Some(2)
    );
    assert_eq!(
        publish(manifest(0, 2, vec![a1.clone()]), 70_000).await,
        None
    );
    let t = tables.load(&log()).await.expect("load").expect("table");
    assert_eq!(t.version, 3, "an expire-only commit");
    assert_eq!(t.metadata.snapshots.len(), 1);
    let kept = tables.referenced_keys(&log(), 0).await.expect("referenced");
    assert_eq!(kept, std::collections::HashSet::from([a1.key.clone()]));
    // And only once: nothing more to expire is no commit.
    assert_eq!(publish(manifest(0, 2, vec![a1]), 80_000).await, None);
    assert_eq!(
        tables.load(&log()).await.expect("load").map(|t| t.version),
        Some(3)
    );
}

#[tokio::test]
async fn a_metadata_put_that_landed_but_reported_failure_leaves_a_readable_table() {
    use pyralog_cold_tier::{Fault, FaultyStore, OpKind};
    let ar = archive();
    let faulty = Arc::new(FaultyStore::new(ar.store.clone()));
    let plan = faulty.plan().clone();
    let tables = IcebergTables::new(
        faulty,
        ar.layout.clone(),
        ar.base.clone(),
        TableSettings::default(),
    );
    let a = ar.segment(0, (0, 99), DAY0, 0, |_| true).await;
    plan.inject_matching(OpKind::Put, Fault::FailAfterPut, 1, ".metadata.json");
    let first = tables
        .publish(&log(), &[manifest(0, 1, vec![a.clone()])], 1_000)
        .await;
    assert!(first.is_err(), "the caller sees the failure: {first:?}");
    // The version was created: the table names the object, its files are all there, and
    // publishing the same manifest again is a no-op.
    let again = tables
        .publish(&log(), &[manifest(0, 1, vec![a.clone()])], 2_000)
        .await
        .expect("republish");
    assert_eq!(again, None);
    let kept = tables.referenced_keys(&log(), 0).await.expect("readable");
    assert_eq!(kept, std::collections::HashSet::from([a.key.clone()]));
}
