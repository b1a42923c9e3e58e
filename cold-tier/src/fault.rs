//! An object store that fails on purpose.
//!
//! The cold tier's promises (uploads are retried and idempotent, reads return a retriable
//! error rather than wrong data) are about failure paths, so tests need failures on demand.
//! [`FaultyStore`] wraps any store; a shared [`FaultPlan`] says which of the next calls of a
//! kind fail and how: an error, a timeout, a slow call, or the nastiest one, a PUT that is
//! performed and *then* reported as failed. It also counts calls and bytes read, which is how
//! the reader tests prove that a late-offset fetch does not download the whole file.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;

/// A kind of object-store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `put_opts`, `put_multipart_opts`, `copy_opts`.
    Put,
    /// `get_opts` (also HEAD and ranged reads), `get_ranges`.
    Get,
    /// `list`, `list_with_delimiter`.
    List,
    /// `delete_stream` (one fault per deleted path).
    Delete,
}

/// What happens to an affected call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails at once with a transient (generic) error.
    Error,
    /// Waits, then fails as a timed-out request would.
    Timeout(Duration),
    /// Waits, then performs the call normally.
    Delay(Duration),
    /// PUT only: performs the write, then reports failure, like a response lost in transit.
    /// On other kinds it acts as [`Fault::Error`].
    FailAfterPut,
}

/// Counters of calls that reached the wrapper.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub puts: u64,
    pub gets: u64,
    /// Payload bytes returned by GETs (the size of the requested ranges).
    pub get_bytes: u64,
    pub lists: u64,
    pub deletes: u64,
    /// Calls that a rule affected.
    pub injected: u64,
}

#[derive(Debug)]
struct Rule {
    kind: OpKind,
    fault: Fault,
    remaining: u32,
    path_contains: Option<String>,
}

/// The shared, changeable plan of a [`FaultyStore`].
#[derive(Debug, Default)]
pub struct FaultPlan {
    rules: Mutex<Vec<Rule>>,
    stats: Mutex<FaultStats>,
}

impl FaultPlan {
    pub fn new() -> Arc<Self> {
        Arc::new(FaultPlan::default())
    }

    /// Applies `fault` to the next `times` calls of `kind`.
    pub fn inject(&self, kind: OpKind, fault: Fault, times: u32) {
        self.push(kind, fault, times, None);
    }

    /// Like [`FaultPlan::inject`], only for paths containing `path_contains`.
    pub fn inject_matching(&self, kind: OpKind, fault: Fault, times: u32, path_contains: &str) {
        self.push(kind, fault, times, Some(path_contains.to_owned()));
    }

    fn push(&self, kind: OpKind, fault: Fault, times: u32, path_contains: Option<String>) {
        self.rules.lock().push(Rule {
            kind,
            fault,
            remaining: times,
            path_contains,
        });
    }

    /// Removes every pending rule.
    pub fn clear(&self) {
        self.rules.lock().clear();
    }

    pub fn stats(&self) -> FaultStats {
        *self.stats.lock()
    }

    pub fn reset_stats(&self) {
        *self.stats.lock() = FaultStats::default();
    }

    fn take(&self, kind: OpKind, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock();
        let hit = rules.iter_mut().find(|r| {
            r.kind == kind
                && r.remaining > 0
                && r.path_contains.as_deref().is_none_or(|p| path.contains(p))
        })?;
        hit.remaining -= 1;
        let fault = hit.fault;
        rules.retain(|r| r.remaining > 0);
        drop(rules);
        self.stats.lock().injected += 1;
        Some(fault)
    }

    fn count(&self, f: impl FnOnce(&mut FaultStats)) {
        f(&mut self.stats.lock());
    }
}

/// The wrapper. Cheap to clone; clones share the plan.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    plan: Arc<FaultPlan>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            plan: FaultPlan::new(),
        }
    }

    pub fn with_plan(inner: Arc<dyn ObjectStore>, plan: Arc<FaultPlan>) -> Self {
        FaultyStore { inner, plan }
    }

    pub fn plan(&self) -> &Arc<FaultPlan> {
        &self.plan
    }

    /// Runs the pre-call part of a fault; `Err` if the call must fail without running.
    async fn before(&self, kind: OpKind, path: &str) -> Result<Option<Fault>, object_store::Error> {
        match self.plan.take(kind, path) {
            None => Ok(None),
            Some(Fault::Error) => Err(injected(kind, path, "error")),
            Some(Fault::FailAfterPut) if kind != OpKind::Put => Err(injected(kind, path, "error")),
            Some(Fault::Timeout(d)) => {
                tokio::time::sleep(d).await;
                Err(injected(kind, path, "timeout"))
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            Some(f @ Fault::FailAfterPut) => Ok(Some(f)),
        }
    }
}

fn injected(kind: OpKind, path: &str, what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected {what} on {kind:?} of {path}").into(),
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.plan.count(|s| s.puts += 1);
        let after = self.before(OpKind::Put, location.as_ref()).await?;
        let res = self.inner.put_opts(location, payload, opts).await?;
        match after {
            Some(Fault::FailAfterPut) => Err(injected(
                OpKind::Put,
                location.as_ref(),
                "failure after a successful put",
            )),
            _ => Ok(res),
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.plan.count(|s| s.puts += 1);
        if self.before(OpKind::Put, location.as_ref()).await?.is_some() {
            return Err(injected(OpKind::Put, location.as_ref(), "error"));
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.plan.count(|s| s.gets += 1);
        self.before(OpKind::Get, location.as_ref()).await?;
        let head = options.head;
        let res = self.inner.get_opts(location, options).await?;
        if !head {
            let n = res.range.end.saturating_sub(res.range.start);
            self.plan.count(|s| s.get_bytes += n);
        }
        Ok(res)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.plan.count(|s| s.gets += 1);
        self.before(OpKind::Get, location.as_ref()).await?;
        let res = self.inner.get_ranges(location, ranges).await?;
        let n: u64 = res.iter().map(|b| b.len() as u64).sum();
        self.plan.count(|s| s.get_bytes += n);
        Ok(res)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let this = self.clone();
        let inner = Arc::clone(&self.inner);
        locations
            .then(move |loc| {
                let this = this.clone();
                let inner = Arc::clone(&inner);
                async move {
                    let loc = loc?;
                    this.plan.count(|s| s.deletes += 1);
                    this.before(OpKind::Delete, loc.as_ref()).await?;
                    let mut out = inner.delete_stream(stream::once(async move { Ok(loc) }).boxed());
                    match out.next().await {
                        Some(r) => r,
                        None => Err(injected(OpKind::Delete, "", "empty delete answer")),
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.plan.count(|s| s.lists += 1);
        let path = prefix.map(|p| p.to_string()).unwrap_or_default();
        match self.plan.take(OpKind::List, &path) {
            None | Some(Fault::Delay(_)) => self.inner.list(prefix),
            Some(_) => {
                stream::once(async move { Err(injected(OpKind::List, &path, "error")) }).boxed()
            }
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.plan.count(|s| s.lists += 1);
        let path = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.before(OpKind::List, &path).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.plan.count(|s| s.puts += 1);
        if self.before(OpKind::Put, to.as_ref()).await?.is_some() {
            self.inner.copy_opts(from, to, options).await?;
            return Err(injected(
                OpKind::Put,
                to.as_ref(),
                "failure after a successful copy",
            ));
        }
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn faults_fire_the_planned_number_of_times() {
        let store = FaultyStore::new(Arc::new(InMemory::new()));
        let p = Path::from("a/b");
        store.plan().inject(OpKind::Put, Fault::Error, 1);
        assert!(store.put(&p, PutPayload::from_static(b"x")).await.is_err());
        store
            .put(&p, PutPayload::from_static(b"x"))
            .await
            .expect("second put works");

        store.plan().inject(OpKind::Put, Fault::FailAfterPut, 1);
        let q = Path::from("a/c");
        assert!(store.put(&q, PutPayload::from_static(b"yy")).await.is_err());
        let got = store
            .get(&q)
            .await
            .expect("written anyway")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got.as_ref(), b"yy");

        store.plan().inject_matching(
            OpKind::Get,
            Fault::Timeout(Duration::from_millis(5)),
            1,
            "a/b",
        );
        assert!(store.get(&q).await.is_ok(), "other paths unaffected");
        assert!(store.get(&p).await.is_err());

        store.plan().inject(OpKind::Delete, Fault::Error, 1);
        assert!(store.delete(&p).await.is_err());
        store.delete(&p).await.expect("delete works after");

        store.plan().inject(OpKind::List, Fault::Error, 1);
        let listed: Vec<_> = store.list(None).collect().await;
        assert!(listed.iter().any(Result::is_err));

        let s = store.plan().stats();
        assert_eq!(s.injected, 5);
        assert!(s.get_bytes >= 4);
        assert_eq!(s.puts, 3);
    }
}
