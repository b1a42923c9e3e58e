//! Security settings: plain data read from the node's TOML `[security]` section (and
//! `PYRALOG_SECURITY__*`), checked once at start. Files are named, never inlined, so secrets
//! stay out of configs, logs and the controller's state.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SecurityError;

/// Everything a node needs to secure its two listeners and authenticate clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// TLS on the client listener (Producer, Consumer, Admin, Groups, health, reflection).
    /// Absent = plaintext, for loopback and development only.
    pub tls: Option<TlsFiles>,
    /// CA bundle (PEM) that signs client certificates: clients may then authenticate with a
    /// certificate (mutual TLS) instead of a token. Needs `tls`.
    pub client_ca: Option<PathBuf>,
    /// Mutual TLS on the cluster listener (Raft, Controller, Replication). Absent = plaintext,
    /// which is only safe on a private, trusted network.
    pub cluster_tls: Option<ClusterTls>,
    /// Client authentication and ACLs.
    pub auth: AuthSettings,
    /// A bearer token (a file holding it) that `GET /metrics` must present; absent = open
    /// (the metrics listener binds to loopback by default).
    pub metrics_token_file: Option<PathBuf>,
    /// How often certificate, key, CA, token and JWKS files are checked for changes; a
    /// changed file is loaded without a restart (new connections use it).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// A connection that has not finished its TLS handshake in this time is closed.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            tls: None,
            client_ca: None,
            cluster_tls: None,
            auth: AuthSettings::default(),
            metrics_token_file: None,
            reload_interval: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The cluster listener's mutual TLS: this node's certificate, and the CA that signs every
/// node's certificate. A peer is accepted only with a certificate of that CA whose name is
/// a node's identity (`node_identity` with the node's id): the CA decides who is a node, so
/// brokers can be added without changing the other nodes' configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// The DNS name (subject alternative name) in node `{id}`'s certificate.
    #[serde(default = "default_node_identity")]
    pub node_identity: String,
}

pub fn default_node_identity() -> String {
    "node-{id}".to_owned()
}

impl ClusterTls {
    /// The identity node `id` must present.
    pub fn identity_of(&self, id: u64) -> String {
        self.node_identity.replace("{id}", &id.to_string())
    }

    /// The node whose identity `name` is: `node_identity` with a node id (decimal, no
    /// leading zero, not 0) in place of `{id}`. Any node the cluster CA certified is a peer,
    /// voter or broker: brokers join and leave without a config change on the others.
    pub fn id_of(&self, name: &str) -> Option<u64> {
        let (prefix, suffix) = self.node_identity.split_once("{id}")?;
        let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        canonical.then(|| digits.parse().ok()).flatten()
    }
}

/// Client authentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Every client call must carry credentials (a client certificate or a bearer token), and
    /// ACLs decide, denying what they do not allow. Off = anyone reaching the port may do
    /// anything (development).
    pub enabled: bool,
    /// Principals allowed everything, whatever the ACLs say (at least one is needed to
    /// manage ACLs in the first place).
    pub superusers: Vec<String>,
    /// Static bearer tokens: a JSON file of `{"tokens": [{"principal": "...",
    /// "sha256": "<hex of the token's SHA-256>"}]}`; `pyralog auth hash-token` prints a line.
    pub tokens_file: Option<PathBuf>,
    /// JSON Web Tokens signed by a configured issuer.
    pub jwt: Option<JwtSettings>,
}

/// JWT bearer tokens: signature checked against a JWKS file, issuer and expiry always
/// checked, audience when configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: Option<String>,
    /// The issuer's public keys as a JWKS (`{"keys": [...]}`) file.
    pub jwks_file: PathBuf,
    /// The claim that names the principal.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
}

fn default_principal_claim() -> String {
    "sub".to_owned()
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

impl SecuritySettings {
    /// Rejects combinations that cannot work (or would silently be insecure).
    pub fn validate(&self) -> Result<(), SecurityError> {
        let bad = |m: &str| Err(SecurityError::Config(m.to_owned()));
        if self.client_ca.is_some() && self.tls.is_none() {
            return bad(
                "security.client_ca needs security.tls (client certificates are a TLS feature)",
            );
        }
        if self.auth.enabled
            && self.client_ca.is_none()
            && self.auth.tokens_file.is_none()
            && self.auth.jwt.is_none()
        {
            return bad("security.auth.enabled needs a way to authenticate: client_ca, auth.tokens_file or auth.jwt");
        }
        if !self.auth.enabled && (self.auth.tokens_file.is_some() || self.auth.jwt.is_some()) {
            return bad("security.auth.tokens_file / auth.jwt are set but auth.enabled is false");
        }
        if self.auth.enabled && self.tls.is_none() {
            tracing::warn!(
                "security.auth.enabled without security.tls: bearer tokens cross the network in the clear"
            );
        }
        if let Some(c) = &self.cluster_tls {
            if !c.node_identity.contains("{id}") {
                return bad("security.cluster_tls.node_identity must contain {id}");
            }
        }
        if self.reload_interval.is_zero() || self.handshake_timeout.is_zero() {
            return bad("security.reload_interval and handshake_timeout must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn a_node_identity_names_exactly_one_node_id() {
        let tls = ClusterTls {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            ca: PathBuf::new(),
            node_identity: "node-{id}.pyralog".to_owned(),
        };
        assert_eq!(tls.id_of(&tls.identity_of(7)), Some(7));
        assert_eq!(tls.id_of("node-12.pyralog"), Some(12));
        for not_a_node in [
            "node-.pyralog",
            "node-0.pyralog",
            "node-07.pyralog",
            "node-7",
            "node-7.pyralog.evil",
            "xnode-7.pyralog",
            "node-+7.pyralog",
            "node-99999999999999999999999.pyralog",
            "client-admin",
        ] {
            assert_eq!(tls.id_of(not_a_node), None, "{not_a_node}");
        }
    }
}
