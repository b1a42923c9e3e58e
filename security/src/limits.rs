//! Connection-level resource bounds of a listener: how many connections it holds (in all and
//! per source address), how long a connection may stay silent or idle, and how refusals are
//! reported.
//!
//! Why at accept: a connection costs a file descriptor and, on a TLS listener, a handshake.
//! Refusing the excess right after `accept` (before any handshake) keeps the accept loop
//! turning and the descriptors free, so one noisy source cannot lock every client out, and a
//! flood never pushes the node into `EMFILE` where its own segment files could not be opened.
//! The budgets are per listener, so a flood of clients never locks nodes out of each other.
//!
//! Refusals are counted (the gateway turns [`ConnObserver`] events into metrics) and logged
//! through a [`Throttle`]: one line per interval with the number suppressed, never one per
//! connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The `[server]` section of a node's config: bounds on connections and requests, the same for
/// both listeners (each listener has budgets of its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Connections one listener holds at once; the excess is closed right after `accept`.
    /// Lowered at start to a quarter of the open-file limit (`ulimit -n`), so the two
    /// listeners together never take more than half of the node's file descriptors.
    pub max_connections: usize,
    /// Connections one source IP address holds at once on one listener.
    pub max_connections_per_address: usize,
    /// A connection that has not completed its TLS handshake and sent the HTTP/2 preface this
    /// long after `accept` is closed.
    #[serde(with = "humantime_serde")]
    pub first_bytes_timeout: Duration,
    /// A connection with no open stream and no request (HTTP/2 HEADERS or DATA frames; pings
    /// do not count) for this long is closed. Long-polls and streams keep it open.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The server pings a connection after this long without traffic, and closes it when the
    /// ping is not answered within `keepalive_timeout` (a peer gone without a FIN).
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Streams (calls) open at once on one HTTP/2 connection, announced in its SETTINGS.
    pub max_concurrent_streams: u32,
    /// A request message must arrive whole within this time once it has started (for a call
    /// with one request message: from the call's start to the end of its request). A
    /// half-sent message is answered `DEADLINE_EXCEEDED` (`TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub request_message_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 4096,
            max_connections_per_address: 128,
            first_bytes_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 256,
            request_message_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerLimits {
    /// Checks the bounds; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |m: &str| Err(format!("server.{m}"));
        if self.max_connections == 0 {
            return bad("max_connections must be positive");
        }
        if self.max_connections_per_address == 0
            || self.max_connections_per_address > self.max_connections
        {
            return bad("max_connections_per_address must be 1..=max_connections");
        }
        if self.max_concurrent_streams == 0 {
            return bad("max_concurrent_streams must be positive");
        }
        for (name, d) in [
            ("first_bytes_timeout", self.first_bytes_timeout),
            ("idle_timeout", self.idle_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
            ("request_message_timeout", self.request_message_timeout),
        ] {
            if d < Duration::from_millis(10) {
                return bad(&format!("{name} must be at least 10ms"));
            }
        }
        Ok(())
    }

    /// `max_connections`, lowered to a quarter of the process's open-file limit.
    pub fn effective_max_connections(&self) -> usize {
        let fd_budget = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| usize::try_from(soft / 4).unwrap_or(usize::MAX))
            .unwrap_or(usize::MAX)
            .max(1);
        self.max_connections.min(fd_budget)
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds `max_connections`.
    ListenerFull,
    /// The source address holds `max_connections_per_address`.
    AddressFull,
}

impl Refusal {
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::ListenerFull => "max_connections",
            Refusal::AddressFull => "max_connections_per_address",
        }
    }
}

/// Why the server closed an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No TLS handshake and HTTP/2 preface within `first_bytes_timeout`.
    FirstBytesTimeout,
    /// No stream and no request for `idle_timeout`.
    Idle,
    /// The TLS handshake failed or timed out.
    HandshakeFailed,
}

impl Closed {
    pub const fn as_str(self) -> &'static str {
        match self {
            Closed::FirstBytesTimeout => "first_bytes_timeout",
            Closed::Idle => "idle_timeout",
            Closed::HandshakeFailed => "handshake_failed",
        }
    }
}

/// Receives a listener's connection events (the gateway counts them as metrics).
pub trait ConnObserver: Send + Sync + std::fmt::Debug {
    fn refused(&self, listener: &'static str, why: Refusal);
    fn closed(&self, listener: &'static str, why: Closed);
    /// The number of connections the listener holds changed.
    fn open(&self, listener: &'static str, count: usize);
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl ConnObserver for NoObserver {
    fn refused(&self, _: &'static str, _: Refusal) {}
    fn closed(&self, _: &'static str, _: Closed) {}
    fn open(&self, _: &'static str, _: usize) {}
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The connections a listener holds, by source address.
#[derive(Debug)]
pub struct ConnTracker {
    name: &'static str,
    max: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
    observer: Arc<dyn ConnObserver>,
}

impl ConnTracker {
    pub fn new(
        name: &'static str,
        max: usize,
        max_per_address: usize,
        observer: Arc<dyn ConnObserver>,
    ) -> Arc<ConnTracker> {
        Arc::new(ConnTracker {
            name,
            max: max.max(1),
            max_per_address: max_per_address.max(1),
            counts: Mutex::new(Counts::default()),
            observer,
        })
    }

    /// Takes a slot for a connection from `ip`, or says why not. The slot is given back when
    /// the returned [`ConnSlot`] is dropped (the connection closed).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refusal> {
        let total = {
            let mut c = self.counts.lock();
            if c.total >= self.max {
                return Err(Refusal::ListenerFull);
            }
            let n = c.per_address.entry(ip).or_insert(0);
            if *n >= self.max_per_address {
                return Err(Refusal::AddressFull);
            }
            *n += 1;
            c.total += 1;
            c.total
        };
        self.observer.open(self.name, total);
        Ok(ConnSlot {
            tracker: self.clone(),
            ip,
        })
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.counts.lock().total
    }

    pub fn observer(&self) -> &Arc<dyn ConnObserver> {
        &self.observer
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// One admitted connection's place in its listener's budgets.
#[derive(Debug)]
pub struct ConnSlot {
    tracker: Arc<ConnTracker>,
    ip: IpAddr,
}

impl ConnSlot {
    /// Reports that the server closed this connection, and why.
    pub fn closed(&self, why: Closed) {
        self.tracker.observer.closed(self.tracker.name, why);
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let total = {
            let mut c = self.tracker.counts.lock();
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_address.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_address.remove(&self.ip);
                }
            }
            c.total
        };
        self.tracker.observer.open(self.tracker.name, total);
    }
}

/// At most one log line per `every`: [`Throttle::allow`] answers how many events were
/// suppressed since the last line, or `None` while the line would be too soon.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Records one event; `Some(suppressed)` when it may be logged.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut s = self.state.lock();
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => {
                s.1 += 1;
                None
            }
            _ => {
                let suppressed = s.1;
                *s = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn an_address_over_its_budget_is_refused_and_others_still_get_in() {
        let t = ConnTracker::new("test", 10, 2, Arc::new(NoObserver));
        let a1 = t.admit(ip(2)).expect("first");
        let _a2 = t.admit(ip(2)).expect("second");
        assert_eq!(t.admit(ip(2)).err(), Some(Refusal::AddressFull));
        let _b = t.admit(ip(3)).expect("another address");
        drop(a1);
        assert!(
            t.admit(ip(2)).is_ok(),
            "a closed connection gives its slot back"
        );
    }

    #[test]
    fn a_full_listener_refuses_everyone_until_a_slot_frees() {
        let t = ConnTracker::new("test", 3, 3, Arc::new(NoObserver));
        let slots: Vec<_> = (1..=3).map(|i| t.admit(ip(i)).expect("room")).collect();
        assert_eq!(t.admit(ip(9)).err(), Some(Refusal::ListenerFull));
        assert_eq!(t.open(), 3);
        drop(slots);
        assert_eq!(t.open(), 0);
        assert!(t.admit(ip(9)).is_ok());
    }

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        ServerLimits::default().validate().expect("defaults");
        let bad = ServerLimits {
            max_connections_per_address: 5000,
            ..ServerLimits::default()
        };
        assert!(bad.validate().is_err());
        let bad = ServerLimits {
            idle_timeout: Duration::ZERO,
            ..ServerLimits::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn the_throttle_logs_once_per_interval_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_millis(200));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.allow(), Some(2));
    }
}
