//! The server side of TLS: a listener's rustls configuration (reloaded when its files
//! change), and the stream of accepted connections handed to tonic.
//!
//! Why not tonic's own TLS: it cannot reload certificates, and it fails a handshake on a bad
//! client certificate, so the client only sees a broken connection. Here the handshake
//! accepts any client certificate whose key the client proves it holds, the chain is checked
//! against the CA right after, and the outcome travels with the connection ([`ConnInfo`]):
//! the authentication layer then answers every call on it with `UNAUTHENTICATED` and the exact
//! reason (expired, unknown CA, …). A plaintext HTTP/2 client on a TLS port is served the same
//! way ("this port speaks TLS") instead of a reset.
//!
//! Handshakes run in their own tasks with a timeout and a bound on how many run at once, so
//! slow or silent connections never hold up the accept loop. Before any handshake, each
//! connection takes a slot of the listener's budgets ([`crate::limits`]); the excess is closed
//! at once, and every accepted connection carries a watchdog ([`crate::activity`]) that closes
//! it when it stays silent or idle.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::activity::{ConnActivity, Watchdog};
use crate::error::SecurityError;
use crate::identity::certificate_names;
use crate::limits::{Closed, ConnObserver, ConnSlot, ConnTracker, ServerLimits, Throttle};
use crate::pem::{load_certs, load_key, load_roots};
use crate::reload::Reloading;

/// The crypto every Pyralog TLS config uses (aws-lc-rs, which the object-store clients
/// already build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What a listener's TLS is made of.
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA of client certificates; absent = no client certificates asked for.
    pub client_ca: Option<PathBuf>,
}

/// One generation of a listener's TLS: the rustls config and the verifier its client
/// certificates are checked with after the handshake.
pub struct TlsState {
    config: Arc<ServerConfig>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("client_certificates", &self.verifier.is_some())
            .finish_non_exhaustive()
    }
}

/// A listener's TLS, following its files.
pub type ServerTls = Reloading<TlsState>;

/// Loads a listener's TLS (fails on a missing or unreadable file) and keeps it current.
pub fn server_tls(files: ServerTlsFiles) -> Result<Arc<ServerTls>, SecurityError> {
    let mut watched = vec![files.cert.clone(), files.key.clone()];
    watched.extend(files.client_ca.clone());
    Reloading::new("listener TLS", watched, move || build_state(&files))
}

fn build_state(files: &ServerTlsFiles) -> Result<TlsState, SecurityError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityError::Tls(e.to_string()))?;
    let (builder, verifier) = match &files.client_ca {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let inner = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| SecurityError::Tls(format!("client CA {}: {e}", ca.display())))?;
            let deferred = Arc::new(DeferredClientVerifier {
                inner: inner.clone(),
            });
            (builder.with_client_cert_verifier(deferred), Some(inner))
        }
        None => (builder.with_no_client_auth(), None),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| SecurityError::Tls(format!("{}: {e}", files.cert.display())))?;
    // gRPC over TLS is HTTP/2, negotiated by ALPN (clients in other languages insist on it).
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsState {
        config: Arc::new(config),
        verifier,
    })
}

/// Asks for a client certificate and checks that the client holds its key, but leaves the
/// chain check to after the handshake (see the module doc).
#[derive(Debug)]
struct DeferredClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What the connection's peer proved with a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCert {
    /// No certificate (or no TLS).
    None,
    /// A certificate of the configured CA, with its identity names.
    Verified(Vec<String>),
    /// A certificate that failed the check, and why.
    Rejected(String),
}

/// Facts about a connection, attached by tonic to every request on it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// The connection is TLS.
    pub tls: bool,
    /// A plaintext client on a TLS listener: every call is refused.
    pub plaintext_on_tls: bool,
    pub peer: PeerCert,
    /// The connection's open streams and last request, kept by the gateway's stream layer
    /// and read by the connection's watchdog.
    pub activity: Arc<ConnActivity>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection: TCP or TLS over TCP, with its [`ConnInfo`].
pub struct Conn {
    stream: Stream,
    info: ConnInfo,
    watch: Option<Watch>,
}

/// The limits side of an accepted connection: its budget slot and its watchdog.
struct Watch {
    dog: Watchdog,
    slot: ConnSlot,
    /// Set once the watchdog closed the connection: every later read is end-of-file.
    expired: bool,
}

impl Conn {
    fn new(stream: Stream, info: ConnInfo) -> Conn {
        Conn {
            stream,
            info,
            watch: None,
        }
    }

    /// Puts the connection under its slot and watchdog (timeouts: first bytes, idle).
    fn watched(
        mut self,
        slot: ConnSlot,
        accepted: tokio::time::Instant,
        (first_bytes, idle): (Duration, Duration),
    ) -> Conn {
        self.watch = Some(Watch {
            dog: Watchdog::new(self.info.activity.clone(), accepted, first_bytes, idle),
            slot,
            expired: false,
        });
        self
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("info", &self.info).finish()
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.watch.as_ref().is_some_and(|w| w.expired) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let Some(watch) = this.watch.as_mut() else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) => {
                watch.dog.on_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match watch.dog.poll_expired(cx) {
                Poll::Ready(why) => {
                    watch.expired = true;
                    watch.slot.closed(why);
                    tracing::debug!(remote = ?this.info.remote, reason = why.as_str(),
                        "connection closed by the server");
                    // End-of-file: hyper closes the connection.
                    Poll::Ready(Ok(()))
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// How a listener accepts connections.
#[derive(Debug, Clone)]
pub struct AcceptOptions {
    /// TLS, or plaintext when absent.
    pub tls: Option<Arc<ServerTls>>,
    /// A handshake not done in this time closes the connection.
    pub handshake_timeout: Duration,
    /// At most this many handshakes at once; more connections wait in the kernel backlog.
    pub max_handshakes: usize,
    /// What the listener is called in log lines and metrics.
    pub name: &'static str,
    /// Connection budgets and timeouts.
    pub limits: ServerLimits,
    /// Told about refused and closed connections.
    pub observer: Arc<dyn ConnObserver>,
}

/// How often a listener may log a refused connection or a failed handshake.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The accepted connections of `listener`, ready for
/// `tonic::transport::Server::serve_with_incoming_shutdown`. The accept loop ends when the
/// stream is dropped.
pub fn incoming(
    listener: TcpListener,
    options: AcceptOptions,
) -> impl futures::Stream<Item = io::Result<Conn>> {
    let (tx, rx) = mpsc::channel::<io::Result<Conn>>(64);
    let handshakes = Arc::new(Semaphore::new(options.max_handshakes.max(1)));
    let limits = options.limits.clone();
    let max_connections = limits.effective_max_connections();
    if max_connections < limits.max_connections {
        tracing::info!(
            listener = options.name,
            max_connections,
            configured = limits.max_connections,
            "server.max_connections lowered to a quarter of the open-file limit"
        );
    }
    let tracker = ConnTracker::new(
        options.name,
        max_connections,
        limits.max_connections_per_address,
        options.observer.clone(),
    );
    let refusals = Throttle::new(LOG_EVERY);
    let failures = Arc::new(Throttle::new(LOG_EVERY));
    let handshake_timeout = options.handshake_timeout.min(limits.first_bytes_timeout);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    if let Some(suppressed) = failures.allow() {
                        tracing::warn!(listener = options.name, error = %e, suppressed,
                            "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let accepted_at = tokio::time::Instant::now();
            let slot = match tracker.admit(remote.ip()) {
                Ok(slot) => slot,
                Err(why) => {
                    // Closed before any handshake: the descriptor is free again at once.
                    drop(tcp);
                    tracker.observer().refused(options.name, why);
                    if let Some(suppressed) = refusals.allow() {
                        tracing::warn!(listener = options.name, %remote, limit = why.as_str(),
                            open = tracker.open(), suppressed,
                            "connection refused: limit reached ({suppressed} more refused \
                             since the last such line)");
                    }
                    continue;
                }
            };
            // Responses are written in small pieces (headers, data, trailers): without
            // TCP_NODELAY one in two waited for the peer's delayed ACK.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
            }
            let timeouts = (limits.first_bytes_timeout, limits.idle_timeout);
            let Some(tls) = options.tls.clone() else {
                let info = ConnInfo {
                    remote: Some(remote),
                    tls: false,
                    plaintext_on_tls: false,
                    peer: PeerCert::None,
                    activity: ConnActivity::new(),
                };
                let conn = Conn::new(Stream::Plain(tcp), info).watched(slot, accepted_at, timeouts);
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
                continue;
            };
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let tx = tx.clone();
            let name = options.name;
            let failures = failures.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let outcome =
                    tokio::time::timeout(handshake_timeout, handshake(tcp, remote, &tls)).await;
                let error = match outcome {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn.watched(slot, accepted_at, timeouts))).await;
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("not finished within {handshake_timeout:?}"),
                };
                slot.closed(Closed::HandshakeFailed);
                if let Some(suppressed) = failures.allow() {
                    tracing::warn!(listener = name, %remote, %error, suppressed,
                        "TLS handshake failed; connection closed");
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The first bytes of an HTTP/2 connection without TLS.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

async fn handshake(tcp: TcpStream, remote: SocketAddr, tls: &ServerTls) -> io::Result<Conn> {
    let mut first = [0u8; 14];
    let n = tcp.peek(&mut first).await?;
    if n > 0 && first[0] != 0x16 {
        // Not a TLS record. A plaintext gRPC client gets a clear refusal per call.
        if H2_PREFACE.starts_with(&first[..n]) || first[..n].starts_with(H2_PREFACE) {
            return Ok(Conn::new(
                Stream::Plain(tcp),
                ConnInfo {
                    remote: Some(remote),
                    tls: false,
                    plaintext_on_tls: true,
                    peer: PeerCert::None,
                    activity: ConnActivity::new(),
                },
            ));
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "neither TLS nor HTTP/2 on a TLS port",
        ));
    }
    let state = tls.get();
    let acceptor = tokio_rustls::TlsAcceptor::from(state.config.clone());
    let stream = acceptor.accept(tcp).await?;
    let peer = match (&state.verifier, stream.get_ref().1.peer_certificates()) {
        (Some(verifier), Some(chain)) if !chain.is_empty() => {
            match verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()) {
                Ok(_) => match certificate_names(&chain[0]) {
                    Ok(names) => PeerCert::Verified(names),
                    Err(e) => PeerCert::Rejected(e),
                },
                Err(e) => PeerCert::Rejected(e.to_string()),
            }
        }
        _ => PeerCert::None,
    };
    if let PeerCert::Rejected(why) = &peer {
        tracing::warn!(%remote, reason = %why, "client certificate rejected");
    }
    Ok(Conn::new(
        Stream::Tls(Box::new(stream)),
        ConnInfo {
            remote: Some(remote),
            tls: true,
            plaintext_on_tls: false,
            peer,
            activity: ConnActivity::new(),
        },
    ))
}
