//! Write-once storage for Pyralog's archive: S3 Object Lock through `aws-sdk-s3`.
//!
//! `object_store` cannot set Object Lock retention, so this crate is the one place that
//! speaks S3's own API (`aws-sdk-s3`, kept out of every other crate). It implements the cold
//! tier's [`WriteOnce`] step: [`S3ObjectLock::lock`] sends `PutObjectRetention` (mode and
//! `retain-until = now + retain`) for the version of an object the node just stored, unless
//! `HeadObject` says that version is already retained into the future.
//! The cold tier calls it for every segment object before the manifest naming it commits, and
//! for every manifest version right after its PUT (the order is in
//! `pyralog_cold_tier::write_once`).
//!
//! The client is built by hand from the cold tier's own [`ObjectStoreConfig`], through the
//! same `object_store` S3 builder ([`pyralog_cold_tier::s3_builder`]): same bucket, endpoint,
//! region, path style, timeouts, and the very credential provider the object store uses
//! (static keys, environment, web identity, instance metadata), so the lock is set by the
//! same principal that wrote the object, without `aws-config`. HTTP goes through the smithy
//! hyper client on rustls with aws-lc-rs, the TLS stack the workspace already builds.
//!
//! [`S3ObjectLock::check_bucket`] is the startup check: a bucket without Object Lock enabled
//! (`GetObjectLockConfiguration`) refuses the start, since `PutObjectRetention` can only
//! work on such a bucket (Object Lock can be enabled only with versioning, usually at bucket
//! creation).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::provider::{error::CredentialsError, future};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, IdentityCache, ProvideCredentials, Region,
    SharedCredentialsProvider,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockRetention, ObjectLockRetentionMode};
use object_store::aws::{AmazonS3ConfigKey, AwsCredentialProvider};
use object_store::path::Path;
use pyralog_cold_tier::{ColdError, LockMode, ObjectLockSettings, ObjectStoreConfig, WriteOnce};
use pyralog_types::clock::Clock;

/// The SDK, for tools and tests that need S3 calls `object_store` does not offer (creating a
/// bucket with Object Lock, versioned deletes), through the client [`S3ObjectLock::client`]
/// builds: one copy of `aws-sdk-s3` in the workspace, in this crate.
pub use aws_sdk_s3;

/// Puts archived objects and manifests under S3 Object Lock retention.
#[derive(Debug, Clone)]
pub struct S3ObjectLock {
    client: aws_sdk_s3::Client,
    bucket: String,
    settings: ObjectLockSettings,
    clock: Arc<dyn Clock>,
}

impl S3ObjectLock {
    /// A lock for the bucket of `store` (an `s3://` store). Does no I/O; see
    /// [`S3ObjectLock::check_bucket`].
    pub fn new(store: &ObjectStoreConfig, settings: ObjectLockSettings) -> Result<Self, ColdError> {
        settings.validate(store).map_err(ColdError::Config)?;
        let (client, bucket) = client(store)?;
        Ok(S3ObjectLock {
            client,
            bucket,
            settings,
            clock: pyralog_types::clock::system(),
        })
    }

    /// Takes the retain-until dates from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn settings(&self) -> &ObjectLockSettings {
        &self.settings
    }

    /// Refuses a bucket that does not have Object Lock enabled, with a message that says so
    /// and how to get one.
    pub async fn check_bucket(&self) -> Result<(), ColdError> {
        let bucket = &self.bucket;
        let not_enabled = || {
            ColdError::Config(format!(
                "object_lock: bucket {bucket:?} does not have S3 Object Lock enabled; \
                 PutObjectRetention works only on a bucket created with Object Lock \
                 (ObjectLockEnabledForBucket, which also turns versioning on). Use such a \
                 bucket, or remove [cold_tier] object_lock"
            ))
        };
        match self
            .client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => {
                let enabled = out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled());
                if enabled == Some(&ObjectLockEnabled::Enabled) {
                    Ok(())
                } else {
                    Err(not_enabled())
                }
            }
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => {
                Err(not_enabled())
            }
            Err(e) => Err(ColdError::Config(format!(
                "object_lock: reading the Object Lock configuration of bucket {bucket:?} \
                 (GetObjectLockConfiguration, which needs s3:GetBucketObjectLockConfiguration) \
                 failed: {}",
                DisplayErrorContext(&e)
            ))),
        }
    }

    /// The retain-until date the object version already has, if any, from `HeadObject`
    /// (which reports it to a principal with `s3:GetObjectRetention`; `GetObjectRetention`
    /// itself is not served by every S3-compatible server). A version that is not there is
    /// `None`, and `PutObjectRetention` then reports it.
    async fn retained_until(
        &self,
        key: &Path,
        version: Option<&str>,
    ) -> Result<Option<aws_sdk_s3::primitives::DateTime>, SdkError<HeadObjectError, HttpResponse>>
    {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_ref())
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
        {
            Ok(out) => Ok(out.object_lock_retain_until_date().copied()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn retain_until(&self) -> aws_sdk_s3::primitives::DateTime {
        let now_us = self.clock.now_micros();
        let retain_us = i64::try_from(self.settings.retain.as_micros()).unwrap_or(i64::MAX);
        let until_us = now_us.saturating_add(retain_us);
        let secs = until_us.div_euclid(1_000_000);
        // In 0..1_000_000 by `rem_euclid`, so the nanoseconds fit a u32.
        let nanos = u32::try_from(until_us.rem_euclid(1_000_000) * 1_000).unwrap_or(0);
        aws_sdk_s3::primitives::DateTime::from_secs_and_nanos(secs, nanos)
    }
}

#[async_trait]
impl WriteOnce for S3ObjectLock {
    async fn lock(&self, key: &Path, version: Option<&str>) -> Result<(), ColdError> {
        let failed = |call: &str, retriable: bool, e: String| ColdError::Lock {
            path: key.to_string(),
            retriable,
            detail: format!(
                "{call} ({}) on bucket {:?}{}: {e}",
                self.describe(),
                self.bucket,
                version.map_or_else(String::new, |v| format!(", version {v}"))
            ),
        };
        if let Some(until) = self.retained_until(key, version).await.map_err(|e| {
            failed(
                "HeadObject",
                is_transient(&e),
                DisplayErrorContext(&e).to_string(),
            )
        })? {
            if until.secs() > self.clock.now_micros().div_euclid(1_000_000) {
                tracing::debug!(%key, until = %until, "object already retained");
                return Ok(());
            }
        }
        let mode = match self.settings.mode {
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
            LockMode::Governance => ObjectLockRetentionMode::Governance,
        };
        let retention = ObjectLockRetention::builder()
            .mode(mode)
            .retain_until_date(self.retain_until())
            .build();
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key.as_ref())
            .set_version_id(version.map(str::to_owned))
            .retention(retention)
            .send()
            .await
            .map_err(|e| {
                failed(
                    "PutObjectRetention",
                    is_transient(&e),
                    DisplayErrorContext(&e).to_string(),
                )
            })?;
        tracing::debug!(%key, mode = %self.settings.mode, "object locked");
        Ok(())
    }

    fn describe(&self) -> String {
        format!("S3 Object Lock ({})", self.settings.describe())
    }
}

/// Whether an SDK failure may pass by itself: no answer (timeout, connection), or a 5xx or
/// throttling answer. A 4xx (access denied, no such key, invalid request) needs a human.
fn is_transient<E>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => e.raw_response().is_some_and(|r| {
            let status = r.status().as_u16();
            status >= 500 || status == 429
        }),
        _ => false,
    }
}

/// An `aws-sdk-s3` client for the bucket of `store` (an `s3://` store), built like the cold
/// tier's own S3 client, with its credentials; and the bucket's name.
pub fn client(store: &ObjectStoreConfig) -> Result<(aws_sdk_s3::Client, String), ColdError> {
    let builder = pyralog_cold_tier::s3_builder(store)?;
    // `s3_builder` checked the URL: an s3:// URL whose host is the bucket.
    let bucket = url::Url::parse(&store.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ColdError::Config(format!("{:?} names no bucket", store.url)))?;
    let region = builder
        .get_config_value(&AmazonS3ConfigKey::Region)
        .unwrap_or_else(|| "us-east-1".to_owned());
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    if let Some(e) = &endpoint {
        if e.starts_with("http://") && !store.allow_http {
            return Err(ColdError::Config(format!(
                "object store endpoint {e} is plain http: set allow_http (local servers only)"
            )));
        }
    }
    let s3 = builder
        .build()
        .map_err(|e| ColdError::Config(format!("s3: {e}")))?;
    let credentials = StoreCredentials(s3.credentials().clone());
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https();
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(store.connect_timeout)
        .operation_attempt_timeout(store.request_timeout)
        .build();
    let attempts = u32::try_from(store.max_retries.saturating_add(1)).unwrap_or(u32::MAX);
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .force_path_style(!store.virtual_hosted_style)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        // The object store's provider caches and refreshes its own credentials.
        .identity_cache(IdentityCache::no_cache())
        .http_client(http)
        .timeout_config(timeouts)
        .retry_config(
            aws_sdk_s3::config::retry::RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(100)),
        );
    if let Some(e) = endpoint {
        config = config.endpoint_url(e);
    }
    Ok((aws_sdk_s3::Client::from_conf(config.build()), bucket))
}

/// The object store's credential provider, as the SDK's.
#[derive(Debug)]
struct StoreCredentials(AwsCredentialProvider);

impl ProvideCredentials for StoreCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let c = self
                .0
                .get_credential()
                .await
                .map_err(CredentialsError::provider_error)?;
            Ok(Credentials::new(
                c.key_id.clone(),
                c.secret_key.clone(),
                c.token.clone(),
                None,
                "pyralog-object-store",
            ))
        })
    }
}
