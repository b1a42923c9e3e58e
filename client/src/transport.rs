//! How the client reaches nodes: TCP or TLS (with an optional client certificate) and a
//! bearer token on every call.

use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pyralog_security::client::{
    client_tls, lazy_channel, ChannelOptions, ClientTls, ClientTlsFiles, Connector,
};
use tonic::body::Body;
use tonic::transport::Channel;

use crate::error::ClientError;

/// Security options of a client: TLS files and a bearer token. The default is plaintext
/// without credentials (a development node on loopback).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// CA bundle (PEM) that signed the nodes' certificates; set = TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for mutual TLS authentication.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Bearer token (static token or JWT) sent on every call.
    pub token: Option<String>,
}

/// The loaded form of [`ClientOptions`], shared by every channel of a client.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    tls: Option<Arc<ClientTls>>,
    token: Option<http::HeaderValue>,
}

impl Transport {
    pub(crate) fn new(url: &str, options: &ClientOptions) -> Result<Transport, ClientError> {
        let err = |detail: String| ClientError::Connect {
            url: url.to_owned(),
            detail,
        };
        let tls = match (&options.tls_ca, url.starts_with("https://")) {
            (Some(ca), _) => Some(
                client_tls(ClientTlsFiles {
                    ca: Some(ca.clone()),
                    cert: options.tls_cert.clone(),
                    key: options.tls_key.clone(),
                })
                .map_err(|e| err(e.to_string()))?,
            ),
            (None, true) => {
                return Err(err(
                    "an https:// server needs the CA that signed its certificate (--tls-ca / PYRALOG_TLS_CA)".into(),
                ))
            }
            (None, false) if options.tls_cert.is_some() => {
                return Err(err("a client certificate needs TLS: give --tls-ca too".into()))
            }
            (None, false) => None,
        };
        let token = match &options.token {
            Some(t) => {
                let mut v = http::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                    .map_err(|_| err("the token has characters a header cannot carry".into()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Transport { tls, token })
    }

    fn connector(&self) -> Connector {
        match &self.tls {
            Some(tls) => Connector::tls(tls.clone(), None),
            None => Connector::plain(),
        }
    }

    /// A lazily connected channel to `address` (`host:port` or a URL).
    pub(crate) fn channel(&self, address: &str) -> Result<Rpc, ClientError> {
        let channel = lazy_channel(
            address,
            self.connector(),
            ChannelOptions {
                connect_timeout: Duration::from_secs(5),
                ..ChannelOptions::default()
            },
        )
        .map_err(|e| ClientError::Connect {
            url: address.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Rpc {
            channel,
            token: self.token.clone(),
        })
    }
}

/// A channel that adds the bearer token to every call.
#[derive(Debug, Clone)]
pub(crate) struct Rpc {
    channel: Channel,
    token: Option<http::HeaderValue>,
}

impl tower_service::Service<http::Request<Body>> for Rpc {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = <Channel as tower_service::Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::poll_ready(&mut self.channel, cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if let Some(t) = &self.token {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, t.clone());
        }
        tower_service::Service::call(&mut self.channel, req)
    }
}
