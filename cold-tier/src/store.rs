//! Opening the object store from plain configuration, and checking it works.
//!
//! [`ObjectStoreConfig`] is serde plain data (TOML file, `PYRALOG_*` env), turned into a
//! component by [`open_store`]. One URL names the backend and the prefix inside it:
//! `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` (also `azure://`,
//! `abfs://`), `file:///abs/dir`, `memory://` (tests). Credentials come from the config when
//! given, otherwise from the standard chain of each cloud (environment variables, profile
//! files, instance/workload identity). S3-compatible servers (MinIO, moto, Ceph) need
//! `endpoint` and usually path-style requests, which is the default here.
//!
//! [`check_access`] is the startup probe: a server that cannot write its bucket should refuse
//! to start with a message that names the problem, not fail its first upload hours later.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{AccessProblem, ColdError};
use crate::layout::Layout;

/// Where the cold tier lives and how to reach it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// `s3://bucket/prefix`, `gs://…`, `az://container/prefix`, `file:///dir`, `memory://`.
    pub url: String,
    /// Custom endpoint for S3-compatible servers or emulators, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (local servers only).
    pub allow_http: bool,
    /// `false` (default): path-style requests (`endpoint/bucket/key`), which every
    /// S3-compatible server supports; `true`: `bucket.endpoint/key`.
    pub virtual_hosted_style: bool,
    /// Static credentials; when absent the standard environment/instance chain is used.
    /// On Azure (`az://`), the storage account's name and its access key; `endpoint` is then
    /// the account's blob URL (default `https://{account}.blob.core.windows.net`).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Connection-establishment timeout of each request.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries of a failed request inside the client, before the caller sees the error.
    pub max_retries: usize,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig {
            url: "memory://".into(),
            endpoint: None,
            region: None,
            allow_http: false,
            virtual_hosted_style: false,
            access_key_id: None,
            secret_access_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
        }
    }
}

impl std::fmt::Debug for ObjectStoreConfig {
    /// Secrets are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "<set>"),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl ObjectStoreConfig {
    /// A config for `url` with every other setting at its default.
    pub fn for_url(url: impl Into<String>) -> Self {
        ObjectStoreConfig {
            url: url.into(),
            ..Self::default()
        }
    }

    fn parsed(&self) -> Result<Url, ColdError> {
        Url::parse(&self.url)
            .map_err(|e| ColdError::Config(format!("object store url {:?}: {e}", self.url)))
    }

    /// The key prefix inside the bucket that the URL names (`s3://b/a/b` -> `a/b`). Local
    /// folders are opened at the URL's directory, so their prefix is empty.
    pub fn prefix(&self) -> Result<String, ColdError> {
        let url = self.parsed()?;
        Ok(match url.scheme() {
            "file" => String::new(),
            _ => url.path().trim_matches('/').to_owned(),
        })
    }

    /// The [`Layout`] of this store's prefix.
    pub fn layout(&self) -> Result<Layout, ColdError> {
        Layout::new(&self.prefix()?)
    }
}

/// Opens the store named by `cfg.url`. Does no I/O for cloud stores (see [`check_access`]);
/// a local folder is created if missing.
pub fn open_store(cfg: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>, ColdError> {
    let url = cfg.parsed()?;
    let bad = |e: object_store::Error| ColdError::Config(format!("{}: {e}", url.scheme()));
    let (client, retry) = client_options(cfg);
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(s3_builder(cfg)?.build().map_err(bad)?),
        "gs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(bucket_url(cfg, &url)?)
                .with_client_options(client)
                .with_retry(retry)
                .build()
                .map_err(bad)?,
        ),
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(bucket_url(cfg, &url)?)
                .with_allow_http(cfg.allow_http)
                .with_client_options(client)
                .with_retry(retry);
            if let Some(e) = &cfg.endpoint {
                b = b.with_endpoint(e.clone());
            }
            if let Some(account) = &cfg.access_key_id {
                b = b.with_account(account);
            }
            if let Some(key) = &cfg.secret_access_key {
                b = b.with_access_key(key);
            }
            Arc::new(b.build().map_err(bad)?)
        }
        "file" => {
            let dir = url.to_file_path().map_err(|()| {
                ColdError::Config(format!("{:?} is not an absolute file path", cfg.url))
            })?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| ColdError::Config(format!("cannot create {}: {e}", dir.display())))?;
            Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(bad)?)
        }
        "memory" => Arc::new(InMemory::new()),
        other => {
            return Err(ColdError::Config(format!(
                "unsupported object store scheme {other:?} (use s3, gs, az, file or memory)"
            )))
        }
    };
    Ok(store)
}

/// The builder of an `s3://` store, configured as [`open_store`] configures it: bucket,
/// endpoint, region, path style, credentials (the config's, else the environment's and the
/// instance's chain), timeouts and retries. Other S3 clients of the same bucket (S3 Object
/// Lock, in `pyralog-object-lock`) start from it so they reach the same bucket as the same
/// principal.
pub fn s3_builder(cfg: &ObjectStoreConfig) -> Result<AmazonS3Builder, ColdError> {
    let url = cfg.parsed()?;
    if !matches!(url.scheme(), "s3" | "s3a") {
        return Err(ColdError::Config(format!(
            "object store url {:?} is not an s3:// url",
            cfg.url
        )));
    }
    let (client, retry) = client_options(cfg);
    let mut b = AmazonS3Builder::from_env()
        .with_url(bucket_url(cfg, &url)?)
        .with_allow_http(cfg.allow_http)
        .with_virtual_hosted_style_request(cfg.virtual_hosted_style)
        .with_client_options(client)
        .with_retry(retry);
    if let Some(e) = &cfg.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &cfg.region {
        b = b.with_region(r);
    }
    if let (Some(k), Some(s)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        b = b.with_access_key_id(k).with_secret_access_key(s);
    }
    Ok(b)
}

fn client_options(cfg: &ObjectStoreConfig) -> (ClientOptions, RetryConfig) {
    let client = ClientOptions::new()
        .with_connect_timeout(cfg.connect_timeout)
        .with_timeout(cfg.request_timeout)
        .with_allow_http(cfg.allow_http);
    let retry = RetryConfig {
        max_retries: cfg.max_retries,
        retry_timeout: cfg.request_timeout.saturating_mul(2),
        ..RetryConfig::default()
    };
    (client, retry)
}

/// `scheme://bucket` of a store URL; an URL without a bucket is a configuration error.
fn bucket_url(cfg: &ObjectStoreConfig, url: &Url) -> Result<String, ColdError> {
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
        ColdError::Config(format!("object store url {:?} names no bucket", cfg.url))
    })?;
    Ok(format!("{}://{host}", url.scheme()))
}

/// Writes, reads back and deletes a small object under `{prefix}/_pyralog/`. The error names
/// the problem: bucket missing, credentials rejected, permission denied, endpoint unreachable.
pub async fn check_access(store: &dyn ObjectStore, layout: &Layout) -> Result<(), ColdError> {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let key = layout.probe_key(&nonce);
    let body = format!("pyralog access probe {nonce}");
    store
        .put(&key, PutPayload::from(body.clone().into_bytes()))
        .await
        .map_err(|e| access_error("write", &e))?;
    let got = match store.get(&key).await {
        Ok(r) => r.bytes().await.map_err(|e| access_error("read", &e))?,
        Err(e) => return Err(access_error("read", &e)),
    };
    if got.as_ref() != body.as_bytes() {
        return Err(ColdError::Access {
            problem: AccessProblem::Inconsistent,
            detail: format!("probe {key} read back {} bytes", got.len()),
        });
    }
    store
        .delete(&key)
        .await
        .map_err(|e| access_error("delete", &e))
}

fn access_error(op: &str, e: &object_store::Error) -> ColdError {
    use object_store::Error as E;
    let text = error_chain(e);
    let lower = text.to_ascii_lowercase();
    let problem = match e {
        E::Unauthenticated { .. } => AccessProblem::CredentialsRejected,
        E::PermissionDenied { .. }
            if [
                "invalidaccesskeyid",
                "signaturedoesnotmatch",
                "expiredtoken",
                "invalidtoken",
                // Azure: a wrong account key (the message is the same on Azurite).
                "authenticationfailed",
                "failed to authenticate the request",
            ]
            .iter()
            .any(|s| lower.contains(s)) =>
        {
            AccessProblem::CredentialsRejected
        }
        E::PermissionDenied { .. } => AccessProblem::PermissionDenied,
        E::NotFound { .. } if op == "write" || lower.contains("nosuchbucket") => {
            AccessProblem::BucketMissing
        }
        _ if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") => {
            AccessProblem::BucketMissing
        }
        _ if lower.contains("invalidaccesskeyid") || lower.contains("signaturedoesnotmatch") => {
            AccessProblem::CredentialsRejected
        }
        _ if [
            "connect",
            "dns",
            "timed out",
            "timeout",
            "unreachable",
            "refused",
        ]
        .iter()
        .any(|s| lower.contains(s)) =>
        {
            AccessProblem::EndpointUnreachable
        }
        _ => AccessProblem::Other,
    };
    ColdError::Access {
        problem,
        detail: format!("probe {op}: {text}"),
    }
}

/// The error and all its sources on one line (the useful part of an HTTP failure is deep).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_hides_secrets() {
        let cfg: ObjectStoreConfig = serde_json::from_str(
            r#"{"url":"s3://bkt/a/b/","endpoint":"http://127.0.0.1:9000","allow_http":true,
                "access_key_id":"AK","secret_access_key":"SECRET","connect_timeout":"2s"}"#,
        )
        .expect("config");
        assert_eq!(cfg.prefix().expect("prefix"), "a/b");
        assert_eq!(cfg.connect_timeout, Duration::from_secs(2));
        assert!(!cfg.virtual_hosted_style);
        assert!(!format!("{cfg:?}").contains("SECRET"));
        assert!(open_store(&cfg).is_ok());
    }

    #[test]
    fn unknown_scheme_and_missing_bucket_are_config_errors() {
        for url in ["ftp://x/y", "s3:///nobucket", "not a url"] {
            let err = open_store(&ObjectStoreConfig::for_url(url)).expect_err(url);
            assert!(matches!(err, ColdError::Config(_)), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn probe_passes_on_memory_and_local_folder() {
        let store = open_store(&ObjectStoreConfig::for_url("memory://")).expect("memory");
        check_access(store.as_ref(), &Layout::new("p").expect("layout"))
            .await
            .expect("memory ok");

        let dir = tempfile::tempdir().expect("tempdir");
        let url = Url::from_directory_path(dir.path().join("nested")).expect("url");
        let cfg = ObjectStoreConfig::for_url(url.as_str());
        let store = open_store(&cfg).expect("file");
        check_access(store.as_ref(), &cfg.layout().expect("layout"))
            .await
            .expect("file ok");
    }

    #[tokio::test]
    async fn probe_names_an_unreachable_endpoint() {
        // Port 9 (discard) on loopback: nothing listens there in the test environment.
        let cfg = ObjectStoreConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            allow_http: true,
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            region: Some("us-east-1".into()),
            max_retries: 0,
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            ..ObjectStoreConfig::for_url("s3://bucket")
        };
        let store = open_store(&cfg).expect("open");
        let err = check_access(store.as_ref(), &cfg.layout().expect("layout"))
            .await
            .expect_err("unreachable");
        assert!(
            matches!(
                err,
                ColdError::Access {
                    problem: AccessProblem::EndpointUnreachable,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("endpoint unreachable"));
    }
}
