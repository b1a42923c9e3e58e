//! What an accepted connection is doing, and the watchdog that closes it when it does
//! nothing.
//!
//! A connection is closed by the server when it has not completed the HTTP/2 preface within
//! `first_bytes_timeout` of `accept` (silent sockets, slowloris), or when it has had no open
//! stream and no request frame for `idle_timeout`. "Request frame" means HEADERS, DATA or
//! CONTINUATION: PING, SETTINGS and WINDOW_UPDATE frames do not count, so neither the server's
//! own keepalive pings (answered by every client) nor a client that only pings keep an idle
//! connection alive. Streams are counted by the gateway's stream layer through
//! [`ConnActivity::stream_started`] (the activity travels in the connection's `ConnInfo`); an
//! open stream (a long-poll, a replication stream) keeps its connection whatever the clock.
//!
//! The watchdog lives in the connection's read path: hyper always has a read pending on an
//! HTTP/2 connection, so when the read finds no bytes the watchdog checks its deadlines and
//! arms one timer; an expired connection reads as end-of-file and hyper closes it. The scan
//! of frame headers is a few comparisons per frame, over the bytes after TLS.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::limits::Closed;

/// The streams open on a connection and when it last did something.
#[derive(Debug)]
pub struct ConnActivity {
    open_streams: AtomicUsize,
    /// Milliseconds after `origin` of the last request frame or stream end.
    last_active_ms: AtomicU64,
    origin: Instant,
}

impl ConnActivity {
    pub fn new() -> Arc<ConnActivity> {
        Arc::new(ConnActivity {
            open_streams: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            origin: Instant::now(),
        })
    }

    /// Counts a stream as open until the guard is dropped.
    pub fn stream_started(self: &Arc<Self>) -> StreamGuard {
        self.open_streams.fetch_add(1, Ordering::AcqRel);
        self.touch();
        StreamGuard(self.clone())
    }

    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::Acquire)
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.fetch_max(ms, Ordering::AcqRel);
    }

    fn last_active(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_active_ms.load(Ordering::Acquire))
    }
}

/// An open stream of a connection (see [`ConnActivity::stream_started`]).
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnActivity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open_streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;

/// Follows HTTP/2 frame boundaries in the bytes a client sends, without keeping them.
#[derive(Debug)]
enum FrameScan {
    Preface {
        seen: usize,
    },
    Header {
        buf: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    Payload {
        left: usize,
    },
}

impl FrameScan {
    /// Consumes `bytes`; true when a request frame header was among them.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut request = false;
        while !bytes.is_empty() {
            match self {
                FrameScan::Preface { seen } => {
                    let n = (PREFACE_LEN - *seen).min(bytes.len());
                    *seen += n;
                    bytes = &bytes[n..];
                    if *seen == PREFACE_LEN {
                        *self = FrameScan::Header {
                            buf: [0; FRAME_HEADER_LEN],
                            have: 0,
                        };
                    }
                }
                FrameScan::Header { buf, have } => {
                    let n = (FRAME_HEADER_LEN - *have).min(bytes.len());
                    buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == FRAME_HEADER_LEN {
                        let len = (usize::from(buf[0]) << 16)
                            | (usize::from(buf[1]) << 8)
                            | usize::from(buf[2]);
                        request |=
                            matches!(buf[3], FRAME_DATA | FRAME_HEADERS | FRAME_CONTINUATION);
                        *self = FrameScan::Payload { left: len };
                    }
                }
                FrameScan::Payload { left } => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                }
            }
            if let FrameScan::Payload { left: 0 } = self {
                *self = FrameScan::Header {
                    buf: [0; FRAME_HEADER_LEN],
                    have: 0,
                };
            }
        }
        request
    }

    fn preface_done(&self) -> bool {
        !matches!(self, FrameScan::Preface { .. })
    }
}

/// Closes a connection that stays silent or idle (see the module doc).
#[derive(Debug)]
pub(crate) struct Watchdog {
    activity: Arc<ConnActivity>,
    accepted: Instant,
    first_bytes_timeout: Duration,
    idle_timeout: Duration,
    scan: FrameScan,
    timer: Pin<Box<Sleep>>,
    armed: Instant,
}

impl Watchdog {
    pub(crate) fn new(
        activity: Arc<ConnActivity>,
        accepted: Instant,
        first_bytes_timeout: Duration,
        idle_timeout: Duration,
    ) -> Watchdog {
        let armed = accepted + first_bytes_timeout.min(idle_timeout);
        Watchdog {
            activity,
            accepted,
            first_bytes_timeout,
            idle_timeout,
            scan: FrameScan::Preface { seen: 0 },
            timer: Box::pin(tokio::time::sleep_until(armed)),
            armed,
        }
    }

    /// Notes bytes the client sent.
    pub(crate) fn on_read(&mut self, bytes: &[u8]) {
        if self.scan.feed(bytes) {
            self.activity.touch();
        }
    }

    /// `Ready(why)` when the connection must be closed; otherwise arms the timer that wakes
    /// the reader at the next deadline.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Closed> {
        loop {
            let now = Instant::now();
            let first =
                (!self.scan.preface_done()).then(|| self.accepted + self.first_bytes_timeout);
            let idle = (self.activity.open_streams() == 0)
                .then(|| self.activity.last_active() + self.idle_timeout);
            if first.is_some_and(|d| now >= d) {
                return Poll::Ready(Closed::FirstBytesTimeout);
            }
            if idle.is_some_and(|d| now >= d) {
                return Poll::Ready(Closed::Idle);
            }
            // With streams open, look again after a while (they may all end by then).
            let next = match (first, idle) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => now + self.idle_timeout,
            };
            if next != self.armed {
                self.armed = next;
                self.timer.as_mut().reset(next);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn pings_and_settings_are_not_requests_but_headers_and_data_are() {
        let mut scan = FrameScan::Preface { seen: 0 };
        assert!(!scan.feed(&PREFACE[..10]));
        assert!(!scan.preface_done());
        assert!(!scan.feed(&PREFACE[10..]));
        assert!(scan.preface_done());
        assert!(!scan.feed(&frame(0x4, &[0; 12])), "SETTINGS");
        assert!(!scan.feed(&frame(0x6, &[0; 8])), "PING");
        assert!(!scan.feed(&frame(0x8, &[0; 4])), "WINDOW_UPDATE");
        assert!(scan.feed(&frame(FRAME_HEADERS, &[1, 2, 3])), "HEADERS");
        assert!(scan.feed(&frame(FRAME_DATA, &[0; 40])), "DATA");
    }

    #[test]
    fn frames_split_at_any_byte_are_followed() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x6, &[7; 8]));
        bytes.extend(frame(FRAME_DATA, &[9; 300]));
        bytes.extend(frame(0x6, &[7; 8]));
        for cut in 0..bytes.len() {
            let mut scan = FrameScan::Preface { seen: 0 };
            let a = scan.feed(&bytes[..cut]);
            let b = scan.feed(&bytes[cut..]);
            assert!(a || b, "the DATA frame is seen when cut at {cut}");
            assert!(
                matches!(scan, FrameScan::Header { have: 0, .. }),
                "cut at {cut}"
            );
        }
    }

    #[tokio::test]
    async fn an_open_stream_holds_the_connection_and_its_end_restarts_the_clock() {
        let activity = ConnActivity::new();
        let mut dog = Watchdog::new(
            activity.clone(),
            Instant::now(),
            Duration::from_millis(50),
            Duration::from_millis(100),
        );
        dog.on_read(PREFACE);
        let guard = activity.stream_started();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(dog.poll_expired(&mut cx).is_pending(), "a stream is open");
        drop(guard);
        assert!(dog.poll_expired(&mut cx).is_pending(), "the clock restarts");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(dog.poll_expired(&mut cx), Poll::Ready(Closed::Idle));
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_first_bytes_timeout() {
        let mut dog = Watchdog::new(
            ConnActivity::new(),
            Instant::now(),
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(dog.poll_expired(&mut cx).is_pending());
        dog.on_read(&PREFACE[..5]);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            dog.poll_expired(&mut cx),
            Poll::Ready(Closed::FirstBytesTimeout)
        );
    }
}
