use std::sync::Arc;

use async_trait::async_trait;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use pyralog_types::LogId;

use super::WriteOnce;
use crate::codec::tests::record;
use crate::codec::{encode_records, EncodeOptions};
use crate::error::ColdError;
use crate::layout::Layout;
use crate::manifest::ManifestStore;
use crate::partition::ColdPartition;
use crate::reader::ColdReader;
use crate::upload::{upload_segment, UploadOptions};

/// Records each lock with what the bucket held at that moment; refuses keys containing
/// `fail` while it is set.
#[derive(Debug)]
struct Recorder {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    log: LogId,
    /// (key, object present, manifest versions committed at the time)
    locks: Mutex<Vec<(String, bool, Vec<u64>)>>,
    fail: Mutex<Option<String>>,
}

#[async_trait]
impl WriteOnce for Recorder {
    async fn lock(&self, key: &Path, _version: Option<&str>) -> Result<(), ColdError> {
        if let Some(f) = self.fail.lock().clone() {
            if key.as_ref().contains(&f) {
                return Err(ColdError::Lock {
                    path: key.to_string(),
                    detail: "refused by the test".into(),
                    retriable: true,
                });
            }
        }
        let present = self.store.head(key).await.is_ok();
        let versions = ManifestStore::new(self.store.clone(), self.layout.clone())
            .versions(&self.log, 0)
            .await
            .expect("versions");
        self.locks.lock().push((key.to_string(), present, versions));
        Ok(())
    }

    fn describe(&self) -> String {
        "recorder".into()
    }
}

#[tokio::test]
async fn objects_lock_before_the_manifest_naming_them_and_manifests_right_after_their_put() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = Layout::new("cold").expect("layout");
    let log = LogId::new("l").expect("log");
    let lock = Arc::new(Recorder {
        store: store.clone(),
        layout: layout.clone(),
        log: log.clone(),
        locks: Mutex::new(Vec::new()),
        fail: Mutex::new(None),
    });
    let manifests = ManifestStore::new(store.clone(), layout.clone()).with_write_once(lock.clone());
    let reader = Arc::new(ColdReader::new(store.clone()));
    let cold = ColdPartition::open(log.clone(), 0, manifests.clone(), reader.clone())
        .await
        .expect("open");
    assert!(cold.write_once().is_some());
    let upload = |base: u64| {
        let store = store.clone();
        let layout = layout.clone();
        let log = log.clone();
        async move {
            let recs: Vec<_> = (base..base + 10)
                .map(|o| record(o, 1, o as i64, b"v"))
                .collect();
            let enc = encode_records(&recs, &EncodeOptions::default()).expect("encode");
            upload_segment(
                store.as_ref(),
                &layout,
                &log,
                0,
                &enc,
                &UploadOptions::default(),
            )
            .await
            .expect("upload")
        }
    };

    let first = upload(0).await;
    cold.append_segment(first.clone()).await.expect("commit");
    let m1 = layout.manifest_key(&log, 0, 1).to_string();
    assert_eq!(
        *lock.locks.lock(),
        vec![
            (first.key.clone(), true, vec![]),
            (m1.clone(), true, vec![1]),
        ],
        "the object is locked while no manifest names it; the manifest right after its PUT"
    );

    // A failed object lock commits nothing.
    let second = upload(10).await;
    *lock.fail.lock() = Some("00000000000000000010-".into());
    let err = cold
        .append_segment(second.clone())
        .await
        .expect_err("an unlocked object is never named");
    assert!(matches!(err, ColdError::Lock { .. }), "{err}");
    assert_eq!(manifests.versions(&log, 0).await.expect("versions"), [1]);

    // A failed manifest lock fails the commit; the version is in the bucket, unlocked, and
    // the load that adopts it (here: the next commit's conflict reload) locks it first.
    *lock.fail.lock() = Some("_manifests".into());
    cold.append_segment(second.clone())
        .await
        .expect_err("the manifest could not be locked");
    assert_eq!(manifests.versions(&log, 0).await.expect("versions"), [1, 2]);
    *lock.fail.lock() = None;
    lock.locks.lock().clear();
    let third = upload(20).await;
    cold.append_segment(third.clone()).await.expect("commit");
    let m2 = layout.manifest_key(&log, 0, 2).to_string();
    let m3 = layout.manifest_key(&log, 0, 3).to_string();
    let seen: Vec<String> = lock.locks.lock().iter().map(|l| l.0.clone()).collect();
    // The first try builds on version 1, conflicts with the stored version 2 and reloads it.
    let at = |k: &str| seen.iter().rposition(|s| s == k);
    assert!(at(&m2).is_some(), "version 2 locked once adopted: {seen:?}");
    assert!(at(&m2) < at(&third.key), "{seen:?}");
    assert!(at(&third.key) < at(&m3), "{seen:?}");
    assert_eq!(seen.last(), Some(&m3), "{seen:?}");
    assert_eq!(cold.manifest().segments.len(), 3);

    // Opening a partition locks the version it adopts (a crash between PUT and lock).
    lock.locks.lock().clear();
    ColdPartition::open(log.clone(), 0, manifests, reader)
        .await
        .expect("open");
    assert_eq!(lock.locks.lock().len(), 1);
    assert_eq!(lock.locks.lock()[0].0, m3);
    // The objects are all there: locking never copies or rewrites.
    for s in cold.manifest().segments {
        store.head(&s.path()).await.expect("object");
    }
}
