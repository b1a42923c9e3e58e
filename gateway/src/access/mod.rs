//! Who may talk to a node, and what they may do (design §11).
//!
//! Two listeners, each with one layer in front of every RPC:
//! - the **client listener** ([`authn::AuthLayer`] for [`authn::Listener::Client`]): TLS when configured; every call is
//!   authenticated (client certificate or bearer token, anonymous when auth is off) and must
//!   be an RPC of the access table ([`authz::CLIENT_RPCS`]); handlers then check the ACLs for
//!   the resources the request names ([`authz::Guard`]);
//! - the **cluster listener** (the same layer for [`authn::Listener::Cluster`]): mutual TLS when configured; a peer
//!   must present a certificate of the cluster CA whose identity is a configured node, and the
//!   controller and replication services refuse requests that claim another node's id.
//!
//! [`NodeSecurity`] holds the loaded material (TLS configs, tokens, the node identities) and
//! keeps it current as its files change.

pub(crate) mod authn;
pub mod authz;

use std::sync::Arc;
use std::time::Duration;

use pyralog_controller::PeerChannels;
use pyralog_security::client::{
    client_tls, lazy_channel, ChannelOptions, ClientTls, ClientTlsFiles, Connector,
};
use pyralog_security::reload::{spawn_watcher, Reload, Reloading};
use pyralog_security::server::{server_tls, ServerTls, ServerTlsFiles};
use pyralog_security::settings::ClusterTls;
use pyralog_security::tokens::{hash_token, TokenAuthenticator};
use pyralog_security::{SecurityError, SecuritySettings};
use pyralog_types::NodeId;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::config::NodeConfig;
use crate::server::{CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES};

/// A node's security material, loaded once at start and reloaded as files change.
pub struct NodeSecurity {
    pub(crate) settings: SecuritySettings,
    pub(crate) client_tls: Option<Arc<ServerTls>>,
    pub(crate) cluster_tls: Option<Arc<ServerTls>>,
    /// This node's certificate as a client of other nodes.
    peer_tls: Option<Arc<ClientTls>>,
    cluster: Option<ClusterTls>,
    pub(crate) tokens: Option<TokenAuthenticator>,
    /// SHA-256 (hex) of the metrics token.
    metrics_token: Option<Arc<Reloading<String>>>,
    reload: CancellationToken,
}

impl std::fmt::Debug for NodeSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSecurity")
            .field("client_tls", &self.client_tls.is_some())
            .field("cluster_tls", &self.cluster_tls.is_some())
            .field("auth", &self.settings.auth.enabled)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl Drop for NodeSecurity {
    fn drop(&mut self) {
        self.reload.cancel();
    }
}

impl NodeSecurity {
    /// Loads every file the settings name (a missing or broken file stops the node here) and,
    /// inside a runtime, starts the reload watcher.
    pub fn new(config: &NodeConfig) -> Result<Arc<NodeSecurity>, SecurityError> {
        let s = &config.security;
        let client_listener_tls = match &s.tls {
            Some(files) => Some(server_tls(ServerTlsFiles {
                cert: files.cert.clone(),
                key: files.key.clone(),
                client_ca: s.client_ca.clone(),
            })?),
            None => None,
        };
        let (cluster_tls, peer_tls) = match &s.cluster_tls {
            Some(c) => (
                Some(server_tls(ServerTlsFiles {
                    cert: c.cert.clone(),
                    key: c.key.clone(),
                    client_ca: Some(c.ca.clone()),
                })?),
                Some(client_tls(ClientTlsFiles {
                    ca: Some(c.ca.clone()),
                    cert: Some(c.cert.clone()),
                    key: Some(c.key.clone()),
                })?),
            ),
            None => (None, None),
        };
        let tokens = if s.auth.enabled {
            Some(TokenAuthenticator::new(&s.auth)?)
        } else {
            None
        };
        let metrics_token = match &s.metrics_token_file {
            Some(path) => {
                let p = path.clone();
                Some(Reloading::new(
                    "metrics token",
                    vec![path.clone()],
                    move || {
                        let text =
                            std::fs::read_to_string(&p).map_err(|e| SecurityError::File {
                                path: p.clone(),
                                detail: e.to_string(),
                            })?;
                        let token = text.trim();
                        if token.is_empty() {
                            return Err(SecurityError::Config(format!(
                                "{}: the metrics token is empty",
                                p.display()
                            )));
                        }
                        Ok(hash_token(token))
                    },
                )?)
            }
            None => None,
        };
        let security = Arc::new(NodeSecurity {
            settings: s.clone(),
            client_tls: client_listener_tls,
            cluster_tls,
            peer_tls,
            cluster: s.cluster_tls.clone(),
            tokens,
            metrics_token,
            reload: CancellationToken::new(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let mut items: Vec<Arc<dyn Reload>> = Vec::new();
            for tls in [&security.client_tls, &security.cluster_tls]
                .into_iter()
                .flatten()
            {
                items.push(tls.clone());
            }
            if let Some(t) = &security.peer_tls {
                items.push(t.clone());
            }
            if let Some(t) = &security.metrics_token {
                items.push(t.clone());
            }
            if let Some(t) = &security.tokens {
                items.extend(t.reloadables());
            }
            if !items.is_empty() {
                spawn_watcher(items, s.reload_interval, security.reload.clone());
            }
        }
        Ok(security)
    }

    /// Whether client calls must be authenticated and authorized.
    pub fn auth_enabled(&self) -> bool {
        self.settings.auth.enabled
    }

    pub fn is_superuser(&self, principal: &str) -> bool {
        self.settings.auth.superusers.iter().any(|s| s == principal)
    }

    /// The node a verified certificate identity belongs to.
    pub(crate) fn node_of(&self, names: &[String]) -> Option<NodeId> {
        let cluster = self.cluster.as_ref()?;
        names.iter().find_map(|n| cluster.id_of(n))
    }

    /// Whether the cluster listener requires mutual TLS.
    pub fn cluster_is_secure(&self) -> bool {
        self.cluster_tls.is_some()
    }

    /// Whether a `GET /metrics` with this `authorization` header may read the metrics.
    pub fn metrics_authorized(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = &self.metrics_token else {
            return true;
        };
        authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| hash_token(t.trim()) == *expected.get())
    }

    /// Channels to other nodes' cluster listeners: mutual TLS checking the peer's identity
    /// when configured, plaintext otherwise.
    pub fn peer_channels(self: &Arc<Self>) -> Arc<dyn PeerChannels> {
        Arc::new(NodeChannels {
            security: self.clone(),
        })
    }
}

/// [`PeerChannels`] of a node (see [`NodeSecurity::peer_channels`]).
#[derive(Debug)]
struct NodeChannels {
    security: Arc<NodeSecurity>,
}

impl PeerChannels for NodeChannels {
    fn channel(&self, node: NodeId, address: &str) -> Result<Channel, String> {
        let connector = match (&self.security.peer_tls, &self.security.cluster) {
            (Some(tls), Some(c)) => {
                if node == 0 {
                    return Err(format!("{address} is not the address of a known node"));
                }
                Connector::tls(tls.clone(), Some(c.identity_of(node)))
            }
            _ => Connector::plain(),
        };
        lazy_channel(
            address,
            connector,
            ChannelOptions {
                connect_timeout: Duration::from_secs(2),
                stream_window: STREAM_WINDOW_BYTES,
                connection_window: CONNECTION_WINDOW_BYTES,
                keep_alive: Some(Duration::from_secs(5)),
            },
        )
        .map_err(|e| e.to_string())
    }
}
