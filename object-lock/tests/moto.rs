//! S3 Object Lock against a real S3-compatible server (`localstack/s3-server.sh`: moto, or
//! MinIO), on a bucket created here with Object Lock enabled. Runs when the server's
//! environment is set (`scripts/test.sh` sets it):
//!
//! ```sh
//! eval "$(localstack/s3-server.sh start)"
//! cargo test -p pyralog-object-lock --test moto
//! ```

use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use pyralog_cold_tier::{open_store, LockMode, ObjectLockSettings, ObjectStoreConfig, WriteOnce};
use pyralog_object_lock::aws_sdk_s3::types::ObjectLockMode;
use pyralog_object_lock::{client, S3ObjectLock};

fn s3_config(bucket: &str) -> Option<ObjectStoreConfig> {
    let endpoint = std::env::var("PYRALOG_S3_ENDPOINT").ok()?;
    Some(ObjectStoreConfig {
        endpoint: Some(endpoint),
        allow_http: true,
        region: Some(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())),
        access_key_id: Some(
            std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "pyralog".into()),
        ),
        secret_access_key: Some(
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "pyralog-secret".into()),
        ),
        max_retries: 0,
        ..ObjectStoreConfig::for_url(format!("s3://{bucket}/run"))
    })
}

fn day() -> ObjectLockSettings {
    ObjectLockSettings {
        mode: LockMode::Compliance,
        retain: Duration::from_secs(86_400),
    }
}

fn now_secs() -> i64 {
    pyralog_types::clock::system().now_micros() / 1_000_000
}

#[tokio::test]
async fn locks_objects_on_a_lock_bucket_and_refuses_a_bucket_without_object_lock() {
    let name = format!(
        "pyralog-ol-{:x}",
        pyralog_types::clock::system().now_micros()
    );
    let Some(cfg) = s3_config(&name) else {
        println!("skipped: no S3 endpoint");
        return;
    };
    let (s3, bucket) = client(&cfg).expect("client");
    assert_eq!(bucket, name);
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("create a bucket with Object Lock");

    let lock = S3ObjectLock::new(&cfg, day()).expect("lock");
    lock.check_bucket()
        .await
        .expect("the bucket has Object Lock");
    assert_eq!(lock.describe(), "S3 Object Lock (compliance, retain 1day)");

    // An object stored through object_store, locked through the SDK, as the archiver does.
    let store = open_store(&cfg).expect("store");
    let key = Path::from("run/log=a/partition=0/x.parquet");
    let put = store
        .put(&key, PutPayload::from_static(b"archived bytes"))
        .await
        .expect("put");
    lock.lock(&key, put.version.as_deref()).await.expect("lock");
    // A node restarted with a shorter `retain` adopts what an earlier one locked: the
    // version is retained already, so it is left alone (S3 would refuse a shorter date).
    let hour = ObjectLockSettings {
        retain: Duration::from_secs(3_600),
        ..day()
    };
    S3ObjectLock::new(&cfg, hour)
        .expect("lock")
        .lock(&key, None)
        .await
        .expect("locking a retained version again is a no-op");
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(key.as_ref())
        .send()
        .await
        .expect("head");
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    let until = head
        .object_lock_retain_until_date()
        .expect("retain-until date")
        .secs();
    let want = now_secs() + 86_400;
    assert!(
        (want - 120..=want + 5).contains(&until),
        "{until} vs {want}"
    );

    // The server refuses to delete the locked version.
    let version = put.version.or(head.version_id().map(str::to_owned));
    let version = version.expect("a versioned bucket names the version");
    let refused = s3
        .delete_object()
        .bucket(&bucket)
        .key(key.as_ref())
        .version_id(&version)
        .send()
        .await;
    assert!(refused.is_err(), "deleting a locked version: {refused:?}");
    let body = store
        .get(&key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(body.as_ref(), b"archived bytes");

    // Locking an object that is not there is an error, never a silent success.
    assert!(lock.lock(&Path::from("run/none"), None).await.is_err());

    // The version the PUT created is the one locked, even when another was put over it
    // before the lock.
    let key2 = Path::from("run/log=a/partition=0/_manifests/2.json");
    let ours = store
        .put(&key2, PutPayload::from_static(b"ours"))
        .await
        .expect("put")
        .version
        .expect("a versioned bucket names the version");
    let theirs = store
        .put(&key2, PutPayload::from_static(b"theirs"))
        .await
        .expect("put over")
        .version
        .expect("version");
    lock.lock(&key2, Some(&ours)).await.expect("lock ours");
    let retained = |v: String| {
        let s3 = s3.clone();
        let (bucket, key) = (bucket.clone(), key2.to_string());
        async move {
            s3.head_object()
                .bucket(bucket)
                .key(key)
                .version_id(v)
                .send()
                .await
                .expect("head version")
                .object_lock_retain_until_date()
                .is_some()
        }
    };
    assert!(retained(ours).await, "the stored version is locked");
    assert!(!retained(theirs).await, "the version put over it is not");

    // The suite's ordinary bucket has no Object Lock: refused, naming it.
    let plain = std::env::var("PYRALOG_S3_BUCKET").unwrap_or_else(|_| "pyralog".into());
    let plain_cfg = s3_config(&plain).expect("config");
    let err = S3ObjectLock::new(&plain_cfg, day())
        .expect("lock")
        .check_bucket()
        .await
        .expect_err("no Object Lock on the plain bucket");
    let text = err.to_string();
    assert!(
        text.contains("does not have S3 Object Lock enabled") && text.contains(&plain),
        "{text}"
    );
}

#[test]
fn only_s3_stores_take_object_lock() {
    let err = S3ObjectLock::new(&ObjectStoreConfig::for_url("file:///tmp/x"), day())
        .expect_err("a local folder has no Object Lock");
    assert!(err.to_string().contains("S3 Object Lock"), "{err}");
    let http = ObjectStoreConfig {
        endpoint: Some("http://127.0.0.1:9".into()),
        ..ObjectStoreConfig::for_url("s3://b/p")
    };
    let err = S3ObjectLock::new(&http, day()).expect_err("plain http needs allow_http");
    assert!(err.to_string().contains("allow_http"), "{err}");
}
