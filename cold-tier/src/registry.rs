//! The bucket's copy of which logs exist and how they are configured.
//!
//! Manifests say which records a partition has archived; they do not say what the log *is*
//! (partition count, retention, compaction). A node started with an empty disk against a
//! bucket that already holds archived logs reads this registry to recreate them, so every
//! archived record is readable again without any other state. One small JSON object per log,
//! `{prefix}/_pyralog/logs/{log}.json`, written when a log is created and deleted with it.
//! The registry is generic over the stored value so this crate does not own the config type.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pyralog_types::LogId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ColdError;
use crate::layout::Layout;

/// Reads and writes the per-log registry objects.
#[derive(Debug, Clone)]
pub struct LogRegistry {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
}

impl LogRegistry {
    pub fn new(store: Arc<dyn ObjectStore>, layout: Layout) -> Self {
        LogRegistry { store, layout }
    }

    /// Records (or replaces) the description of `log`.
    pub async fn put<T: Serialize>(&self, log: &LogId, value: &T) -> Result<(), ColdError> {
        let key = self.layout.registry_key(log);
        let body = serde_json::to_vec_pretty(value)
            .map_err(|e| ColdError::InvalidInput(format!("registry entry for {log}: {e}")))?;
        self.store
            .put(&key, PutPayload::from(body))
            .await
            .map_err(|e| ColdError::store("put", &key, e))?;
        Ok(())
    }

    /// Every registered log. An entry that does not parse is corrupt data, reported as such.
    pub async fn list<T: DeserializeOwned>(&self) -> Result<Vec<(LogId, T)>, ColdError> {
        let dir = self.layout.registry_dir();
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| ColdError::store("list", &dir, e))?;
        let mut out = Vec::with_capacity(listed.len());
        for obj in listed {
            let Some(name) = obj
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
            else {
                continue;
            };
            let log = LogId::new(name).map_err(|e| ColdError::corrupt(&obj.location, e))?;
            let bytes = self
                .store
                .get(&obj.location)
                .await
                .map_err(|e| ColdError::store("get", &obj.location, e))?
                .bytes()
                .await
                .map_err(|e| ColdError::store("get", &obj.location, e))?;
            let value =
                serde_json::from_slice(&bytes).map_err(|e| ColdError::corrupt(&obj.location, e))?;
            out.push((log, value));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Forgets `log` (a missing entry is fine).
    pub async fn delete(&self, log: &LogId) -> Result<(), ColdError> {
        let key = self.layout.registry_key(log);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ColdError::store("delete", &key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn entries_round_trip_and_deletes_are_idempotent() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let reg = LogRegistry::new(store, Layout::new("p").expect("layout"));
        let a = LogId::new("alpha").expect("id");
        let b = LogId::new("beta").expect("id");
        reg.put(&b, &2u32).await.expect("put");
        reg.put(&a, &1u32).await.expect("put");
        let all: Vec<(LogId, u32)> = reg.list().await.expect("list");
        assert_eq!(all, vec![(a.clone(), 1), (b.clone(), 2)]);
        reg.delete(&a).await.expect("delete");
        reg.delete(&a).await.expect("delete twice");
        let all: Vec<(LogId, u32)> = reg.list().await.expect("list");
        assert_eq!(all, vec![(b, 2)]);
    }
}
