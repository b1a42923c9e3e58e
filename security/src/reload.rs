//! Values built from files (TLS configs, token tables, JWKS) that follow the files: a
//! watcher re-reads them when a file's modification time or size changes, and swaps the new
//! value in. A file that fails to load keeps the previous value (and says so in the log), so
//! a half-written certificate never takes a listener down.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use crate::error::SecurityError;

type Builder<T> = Box<dyn Fn() -> Result<T, SecurityError> + Send + Sync>;

/// A value rebuilt whenever one of its files changes.
pub struct Reloading<T> {
    what: &'static str,
    files: Vec<PathBuf>,
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
    value: RwLock<Arc<T>>,
    build: Builder<T>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the value once; an error here is fatal for the caller (a node does not start
    /// with a broken certificate).
    pub fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, SecurityError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, SecurityError> {
        let stamps = files.iter().map(stamp).collect();
        let value = build()?;
        Ok(Arc::new(Reloading {
            what,
            files,
            stamps: Mutex::new(stamps),
            value: RwLock::new(Arc::new(value)),
            build: Box::new(build),
        }))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.value.read().clone()
    }

    /// Re-reads the files if any changed; returns whether a new value was swapped in.
    pub fn check(&self) -> bool {
        let now: Vec<_> = self.files.iter().map(stamp).collect();
        {
            let mut stamps = self.stamps.lock();
            if *stamps == now {
                return false;
            }
            *stamps = now;
        }
        match (self.build)() {
            Ok(v) => {
                *self.value.write() = Arc::new(v);
                tracing::info!(what = self.what, files = ?self.files, "reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(what = self.what, error = %e, "reload failed; keeping the previous version");
                false
            }
        }
    }
}

/// Anything a watcher can re-check.
pub trait Reload: Send + Sync {
    fn check_files(&self) -> bool;
}

impl<T: Send + Sync + 'static> Reload for Reloading<T> {
    fn check_files(&self) -> bool {
        self.check()
    }
}

/// Checks every item each `interval` until `cancel`; the task owns nothing else.
pub fn spawn_watcher(
    items: Vec<Arc<dyn Reload>>,
    interval: Duration,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let items = items.clone();
            // File reads and certificate parsing are blocking work.
            let _ = tokio::task::spawn_blocking(move || {
                for item in &items {
                    item.check_files();
                }
            })
            .await;
        }
    })
}
