//! The object stores the cold-tier end-to-end tests run against, each a real server on
//! loopback started by `scripts/test.sh` (or a local folder):
//!
//! - S3: `localstack/s3-server.sh` (MinIO or moto), `PYRALOG_S3_ENDPOINT`, `PYRALOG_S3_BUCKET`;
//! - Azure Blob: `localstack/azure-server.sh` (Azurite), `PYRALOG_AZURE_ENDPOINT`,
//!   `PYRALOG_AZURE_CONTAINER`, `PYRALOG_AZURE_ACCOUNT`, `PYRALOG_AZURE_KEY`;
//! - a local folder under the temp dir.
//!
//! A test for a store whose server is not configured panics with the command that starts it:
//! the suite never passes by skipping.

use std::path::PathBuf;

use pyralog_cold_tier::ObjectStoreConfig;

/// One object store of the suite; `prefix` (see [`crate::unique`]) keeps tests apart inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColdStore {
    S3,
    Azure,
    LocalFolder,
}

fn required(name: &str, starter: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/test.sh, or eval \"$({starter} start)\" first")
    })
}

impl ColdStore {
    /// The store's settings, as the node and the compactor read them.
    pub fn config(self, prefix: &str) -> ObjectStoreConfig {
        match self {
            ColdStore::S3 => {
                let endpoint = required("PYRALOG_S3_ENDPOINT", "localstack/s3-server.sh");
                let bucket = crate::env_or("PYRALOG_S3_BUCKET", "pyralog");
                ObjectStoreConfig {
                    endpoint: Some(endpoint),
                    allow_http: true,
                    region: Some("us-east-1".into()),
                    // Explicit credentials: never fall back to the instance-metadata chain.
                    access_key_id: Some(crate::env_or("AWS_ACCESS_KEY_ID", "pyralog")),
                    secret_access_key: Some(crate::env_or(
                        "AWS_SECRET_ACCESS_KEY",
                        "pyralog-secret",
                    )),
                    ..ObjectStoreConfig::for_url(format!("s3://{bucket}/{prefix}"))
                }
            }
            ColdStore::Azure => {
                let starter = "localstack/azure-server.sh";
                let container = crate::env_or("PYRALOG_AZURE_CONTAINER", "pyralog");
                ObjectStoreConfig {
                    endpoint: Some(required("PYRALOG_AZURE_ENDPOINT", starter)),
                    allow_http: true,
                    access_key_id: Some(required("PYRALOG_AZURE_ACCOUNT", starter)),
                    secret_access_key: Some(required("PYRALOG_AZURE_KEY", starter)),
                    ..ObjectStoreConfig::for_url(format!("az://{container}/{prefix}"))
                }
            }
            ColdStore::LocalFolder => {
                let dir = local_root().join(prefix);
                ObjectStoreConfig::for_url(format!("file://{}", dir.display()))
            }
        }
    }

    /// Environment for a node archiving to this store (every 200 ms, retention checked every
    /// second, so tests do not wait for the defaults).
    pub fn node_env(self, prefix: &str) -> Vec<(String, String)> {
        let c = self.config(prefix);
        let mut env = vec![("PYRALOG_COLD_TIER__STORE__URL".to_string(), c.url.clone())];
        let mut set = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                env.push((format!("PYRALOG_COLD_TIER__STORE__{key}"), v));
            }
        };
        set("ENDPOINT", c.endpoint.clone());
        set("ALLOW_HTTP", c.allow_http.then(|| "true".into()));
        set("REGION", c.region.clone());
        set("ACCESS_KEY_ID", c.access_key_id.clone());
        set("SECRET_ACCESS_KEY", c.secret_access_key.clone());
        env.push(("PYRALOG_COLD_TIER__ARCHIVE_INTERVAL".into(), "200ms".into()));
        env.push(("PYRALOG_RETENTION_CHECK_INTERVAL".into(), "1s".into()));
        env
    }

    /// The `[store]` section of a standalone compactor's config for this store.
    pub fn toml(self, prefix: &str) -> String {
        let c = self.config(prefix);
        let mut out = format!("[store]\nurl = {:?}\n", c.url);
        let mut line = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                out.push_str(&format!("{key} = {v:?}\n"));
            }
        };
        line("endpoint", &c.endpoint);
        line("region", &c.region);
        line("access_key_id", &c.access_key_id);
        line("secret_access_key", &c.secret_access_key);
        if c.allow_http {
            out.push_str("allow_http = true\n");
        }
        out
    }
}

/// Where local-folder stores of this test run live.
fn local_root() -> PathBuf {
    std::env::temp_dir().join("pyralog-e2e-objects")
}

/// The S3 server's node environment (`ColdStore::S3.node_env`).
pub fn s3_env(prefix: &str) -> Vec<(String, String)> {
    ColdStore::S3.node_env(prefix)
}
