//! Time as an injected component.
//!
//! Components never call `SystemTime::now()` directly (clippy's `disallowed-methods` enforces
//! it outside this module): they take an `Arc<dyn Clock>`, so tests can move time by hand
//! (segment rolls by age, retention by time) without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::ids::TimestampMicros;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock time in microseconds since the Unix epoch.
    fn now_micros(&self) -> TimestampMicros;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now_micros(&self) -> TimestampMicros {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: TimestampMicros) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(start)))
    }
    pub fn set(&self, t: TimestampMicros) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, d: std::time::Duration) {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> TimestampMicros {
        self.0.load(Ordering::SeqCst)
    }
}

/// The clock used when none is injected.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
