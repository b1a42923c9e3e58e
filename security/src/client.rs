//! The client side: gRPC channels over plain TCP or TLS (with an optional client
//! certificate), for the Rust client, the CLI, and node-to-node calls.
//!
//! Channels take a connector of ours rather than tonic's TLS so that a node's own
//! certificate can be reloaded (every new connection uses the current files) and so that a
//! node can require the *identity* of the peer it meant to reach (`node-2`), whatever address
//! it dialled.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use crate::error::SecurityError;
use crate::pem::{load_certs, load_key, load_roots};
use crate::reload::Reloading;
use crate::server::provider;

/// What a client's TLS is made of.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsFiles {
    /// CA bundle that signed the server's certificate; absent = the system's roots are not
    /// consulted either (Pyralog clusters use their own CA), so TLS then needs it.
    pub ca: Option<PathBuf>,
    /// A client certificate and key, for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A client's TLS, following its files.
pub type ClientTls = Reloading<Arc<ClientConfig>>;

/// Loads a client TLS config and keeps it current.
pub fn client_tls(files: ClientTlsFiles) -> Result<Arc<ClientTls>, SecurityError> {
    let watched: Vec<PathBuf> = [&files.ca, &files.cert, &files.key]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    Reloading::new("client TLS", watched, move || build_client(&files))
}

fn build_client(files: &ClientTlsFiles) -> Result<Arc<ClientConfig>, SecurityError> {
    let Some(ca) = &files.ca else {
        return Err(SecurityError::Config(
            "TLS needs the CA that signed the server's certificate (--tls-ca)".into(),
        ));
    };
    let roots = load_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| SecurityError::Tls(format!("{}: {e}", cert.display())))?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(SecurityError::Config(
                "a client certificate needs both its certificate and its key".into(),
            ))
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Opens connections for a tonic channel: TCP, then TLS when configured.
#[derive(Debug, Clone)]
pub struct Connector {
    tls: Option<Arc<ClientTls>>,
    /// The name the server's certificate must carry; default: the host dialled.
    server_name: Option<String>,
}

impl Connector {
    pub fn plain() -> Connector {
        Connector {
            tls: None,
            server_name: None,
        }
    }

    pub fn tls(tls: Arc<ClientTls>, server_name: Option<String>) -> Connector {
        Connector {
            tls: Some(tls),
            server_name,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// A connection opened by [`Connector`].
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientStream::Plain(_) => "ClientStream::Plain",
            ClientStream::Tls(_) => "ClientStream::Tls",
        })
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TokioIo<ClientStream>>> + Send>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<ClientStream>;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> ConnectFuture {
        let tls = self.tls.clone();
        let name = self.server_name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in URI"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if tls.is_some() { 443 } else { 80 });
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let Some(tls) = tls else {
                return Ok(TokioIo::new(ClientStream::Plain(tcp)));
            };
            let server_name = ServerName::try_from(name.unwrap_or(host))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let connector = tokio_rustls::TlsConnector::from(tls.get().as_ref().clone());
            let stream = connector.connect(server_name, tcp).await?;
            Ok(TokioIo::new(ClientStream::Tls(Box::new(stream))))
        })
    }
}

/// Settings of a channel beyond its connector.
#[derive(Debug, Clone, Copy)]
pub struct ChannelOptions {
    pub connect_timeout: Duration,
    /// HTTP/2 flow-control windows (large for replication and big fetches).
    pub stream_window: u32,
    pub connection_window: u32,
    /// HTTP/2 keep-alive pings, to notice a dead peer on an idle connection.
    pub keep_alive: Option<Duration>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: Duration::from_secs(5),
            stream_window: 16 * 1024 * 1024,
            connection_window: 64 * 1024 * 1024,
            keep_alive: None,
        }
    }
}

/// A lazily connected channel to `address` (`host:port`, or a URL whose scheme is ignored:
/// the connector decides between TCP and TLS).
pub fn lazy_channel(
    address: &str,
    connector: Connector,
    options: ChannelOptions,
) -> Result<Channel, SecurityError> {
    let authority = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address)
        .trim_end_matches('/');
    let scheme = if connector.is_tls() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
        .map_err(|e| SecurityError::Config(format!("address {address:?}: {e}")))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(options.stream_window)
        .initial_connection_window_size(options.connection_window);
    if let Some(every) = options.keep_alive {
        endpoint = endpoint
            .http2_keep_alive_interval(every)
            .keep_alive_timeout(every);
    }
    Ok(endpoint.connect_with_connector_lazy(connector))
}
