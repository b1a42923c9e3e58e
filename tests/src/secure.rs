//! Certificates and settings for secure test clusters: one CA; per node a certificate with
//! its identity (`node-{id}`) for both listeners; client certificates for `admin` (the
//! superuser), `alice` and `bob`; a tokens file; and node configs that turn on TLS, mutual
//! TLS between nodes, and authentication with ACLs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pyralog_security::certs::{init_cert_set, Authority, CertSet, LeafSpec, Validity};
use pyralog_security::client::{
    client_tls, lazy_channel, ChannelOptions, ClientTlsFiles, Connector,
};
use pyralog_security::tokens::hash_token;

/// The clients every secure test cluster has certificates for.
pub const CLIENTS: [&str; 3] = ["admin", "alice", "bob"];

/// Static tokens every secure test cluster accepts: (principal, token).
pub const TOKENS: [(&str, &str); 2] = [
    ("carol", "pyt_test-token-of-carol-0123456789abcdef"),
    ("dave", "pyt_test-token-of-dave-0123456789abcdef"),
];

/// A secure cluster's certificates (removed with it).
#[derive(Debug)]
pub struct Secure {
    pub set: CertSet,
    pub tokens_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// Now, by the wall clock (what certificates are checked against).
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default()
}

impl Secure {
    /// Certificates for nodes `1..=nodes` and the [`CLIENTS`], tokens for [`TOKENS`].
    pub fn new(nodes: u64) -> Secure {
        let dir = tempfile::tempdir().expect("tempdir");
        let clients: Vec<String> = CLIENTS.iter().map(|c| (*c).to_owned()).collect();
        let set = init_cert_set(
            dir.path(),
            nodes,
            "node-{id}",
            &clients,
            &[std::net::IpAddr::from([127, 0, 0, 1])],
            Validity::days_from(now(), 2),
        )
        .expect("certificates");
        let tokens_file = dir.path().join("tokens.json");
        let tokens: Vec<serde_json::Value> = TOKENS
            .iter()
            .map(|(p, t)| serde_json::json!({"principal": p, "sha256": hash_token(t)}))
            .collect();
        std::fs::write(
            &tokens_file,
            serde_json::json!({ "tokens": tokens }).to_string(),
        )
        .expect("tokens file");
        Secure {
            set,
            tokens_file,
            _dir: dir,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.set.dir
    }

    /// The `[security]` section of node `id`.
    pub fn node_config(&self, id: u64) -> String {
        let (cert, key) = self.set.node_cert(id);
        let ca = &self.set.ca;
        format!(
            "[security]\nclient_ca = {ca:?}\nreload_interval = \"1s\"\n\
             [security.tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [security.cluster_tls]\ncert = {cert:?}\nkey = {key:?}\nca = {ca:?}\n\
             [security.auth]\nenabled = true\nsuperusers = [\"admin\"]\ntokens_file = {tokens:?}\n",
            tokens = self.tokens_file
        )
    }

    /// Client files of `principal` (one of [`CLIENTS`]).
    pub fn client_files(&self, principal: &str) -> ClientTlsFiles {
        let (cert, key) = self.set.client_cert(principal);
        ClientTlsFiles {
            ca: Some(self.set.ca.clone()),
            cert: Some(cert),
            key: Some(key),
        }
    }

    pub fn admin_files(&self) -> ClientTlsFiles {
        self.client_files("admin")
    }

    /// Client options of `principal`'s certificate.
    pub fn options_of(&self, principal: &str) -> pyralog_client::ClientOptions {
        let f = self.client_files(principal);
        pyralog_client::ClientOptions {
            tls_ca: f.ca,
            tls_cert: f.cert,
            tls_key: f.key,
            token: None,
        }
    }

    /// The superuser's client options.
    pub fn admin_options(&self) -> pyralog_client::ClientOptions {
        self.options_of("admin")
    }

    /// TLS without a client certificate (credentials, if any, by token).
    pub fn token_options(&self, token: Option<&str>) -> pyralog_client::ClientOptions {
        pyralog_client::ClientOptions {
            tls_ca: Some(self.set.ca.clone()),
            token: token.map(str::to_owned),
            ..Default::default()
        }
    }

    /// Node `id`'s own certificate as client files (to act as that node).
    pub fn node_files(&self, id: u64) -> ClientTlsFiles {
        let (cert, key) = self.set.node_cert(id);
        ClientTlsFiles {
            ca: Some(self.set.ca.clone()),
            cert: Some(cert),
            key: Some(key),
        }
    }

    /// A certificate of this cluster's CA for `names`, valid from `from` for `valid`
    /// (expired ones, odd names), saved in `dir` as `stem`.
    pub fn issue(
        &self,
        names: &[&str],
        from: SystemTime,
        valid: Duration,
        stem: &str,
    ) -> ClientTlsFiles {
        let ca = Authority::load(self.dir(), "Pyralog CA").expect("load CA");
        let issued = ca
            .issue(&LeafSpec {
                names: names.iter().map(|n| (*n).to_owned()).collect(),
                ips: vec![std::net::IpAddr::from([127, 0, 0, 1])],
                validity: Validity {
                    not_before: from,
                    not_after: from + valid,
                },
                server: true,
                client: true,
            })
            .expect("issue");
        let (cert, key) = issued.save(self.dir(), stem).expect("save");
        ClientTlsFiles {
            ca: Some(self.set.ca.clone()),
            cert: Some(cert),
            key: Some(key),
        }
    }
}

/// A lazily connected channel to `address` (`host:port`): TLS with `files` (client
/// certificate optional), or plaintext without; `server_name` overrides the name checked in
/// the server's certificate.
pub fn channel(
    address: &str,
    files: Option<ClientTlsFiles>,
    server_name: Option<&str>,
) -> tonic::transport::Channel {
    let connector = match files {
        Some(f) => Connector::tls(
            client_tls(f).expect("client TLS"),
            server_name.map(str::to_owned),
        ),
        None => Connector::plain(),
    };
    lazy_channel(address, connector, ChannelOptions::default()).expect("channel")
}
