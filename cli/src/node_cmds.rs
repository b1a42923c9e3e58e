//! `pyralog serve` and `pyralog dev`.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use pyralog_gateway::catalog::serve_catalog;
use pyralog_gateway::metrics::serve_metrics;
use pyralog_gateway::ObjectStoreConfig;
use pyralog_gateway::{ClusterSettings, ColdTierSettings, Node, NodeComponents, NodeConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::args::{DevArgs, LogFormat, NodeFlags, ServeArgs};
use crate::error::{CliError, CliResult};

/// Top-level config keys that `PYRALOG_*` variables may set (others, like
/// `PYRALOG_SERVER` for client commands, are not node settings).
const ENV_KEYS: &[&str] = &[
    "node_id",
    "data_dir",
    "listen",
    "metrics_listen",
    "catalog_listen",
    "log_defaults",
    "fetch",
    "produce",
    "maintenance_interval",
    "retention_check_interval",
    "max_open_files",
    "cold_tier",
    "compaction",
    "cluster",
    "server",
    "security",
];

pub(crate) fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Defaults ← file ← PYRALOG_* environment ← flags.
/// A `file://` object store in `dir`.
fn local_folder_store(dir: &Path) -> ObjectStoreConfig {
    ObjectStoreConfig::for_url(format!("file://{}", dir.display()))
}

pub(crate) fn load_config(
    file: Option<&Path>,
    flags: &NodeFlags,
    dev: bool,
) -> Result<NodeConfig, CliError> {
    let mut fig = Figment::from(Serialized::defaults(NodeConfig::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(CliError::usage(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        fig = fig.merge(Toml::file_exact(path));
    }
    fig = fig.merge(Env::prefixed("PYRALOG_").split("__").filter(|k| {
        // Keys keep the variable's case here (COLD_TIER__STORE__URL).
        let k = k.as_str().to_ascii_lowercase();
        // A known key, or a nested key under it: PYRALOG_CLUSTER__VOTERS is a node setting,
        // PYRALOG_CLUSTER_STATE (a script's variable) is not.
        ENV_KEYS.iter().any(|known| {
            k.strip_prefix(known).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with("__") || rest.starts_with('.')
            })
        })
    }));
    if let Some(d) = &flags.data_dir {
        fig = fig.merge(Serialized::default("data_dir", d));
    }
    if let Some(l) = &flags.listen {
        fig = fig.merge(Serialized::default("listen", l.to_string()));
    }
    if let Some(l) = &flags.metrics_listen {
        fig = fig.merge(Serialized::default("metrics_listen", l.to_string()));
    }
    if let Some(l) = &flags.cluster_listen {
        fig = fig.merge(Serialized::default("cluster.listen", l.to_string()));
    }
    if let Some(url) = &flags.object_store {
        fig = fig.merge(Serialized::default("cold_tier.store.url", url));
    }
    let mut config: NodeConfig = fig
        .extract()
        .map_err(|e| CliError::usage(format!("invalid configuration: {e}")))?;
    if dev {
        // The embedded default: a local folder as the object store, unless one is named.
        let dir = std::path::absolute(config.data_dir.join("objects"))?;
        let cold = config
            .cold_tier
            .get_or_insert_with(ColdTierSettings::default);
        if cold.store.url == ObjectStoreConfig::default().url {
            cold.store = local_folder_store(&dir);
        }
    }
    config
        .validate()
        .map_err(|e| CliError::usage(e.to_string()))?;
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}

/// Raises the soft open-file limit to the hard one, as Go's runtime and many servers do: the
/// soft default (often 1024) is a leftover of `select(2)`, and a node with many partitions and
/// connections needs more. Logged; a failure only leaves the limit as it was (the hot tier's
/// open-file budget keeps the node within whatever limit it has).
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit"),
        },
        Ok((soft, _)) => tracing::info!(limit = soft, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
}

async fn run(
    mut config: NodeConfig,
    banner: &str,
    one_voter: bool,
    hint: Option<String>,
) -> CliResult {
    raise_open_file_limit();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| CliError::usage(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::runtime(e.to_string()))?;
    if one_voter && config.cluster.is_none() {
        config.cluster = Some(ClusterSettings {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ClusterSettings::default()
        });
    }
    // The cluster listener, bound before the node starts: its address is this voter's.
    let cluster_listener = match &config.cluster {
        Some(c) => {
            let l = tokio::net::TcpListener::bind(c.listen).await.map_err(|e| {
                CliError::usage(format!("cannot listen on {} (cluster): {e}", c.listen))
            })?;
            Some(l)
        }
        None => None,
    };
    let cluster_addr = match &cluster_listener {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| CliError::runtime(e.to_string()))?,
        ),
        None => None,
    };
    if let (Some(c), Some(bound)) = (config.cluster.as_mut(), cluster_addr) {
        if c.advertise.is_none() {
            c.advertise = Some(addr.to_string());
        }
        if one_voter && c.voters.is_empty() {
            // `pyralog dev`: a one-voter controller at the address actually bound (port 0
            // picks one), the same code path as a cluster, with nothing to configure.
            c.voters = format!("{}={bound}", config.node_id);
        }
        config
            .validate()
            .map_err(|e| CliError::usage(e.to_string()))?;
    }
    let metrics_listener = match config.metrics_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| CliError::usage(format!("cannot listen on {a} for metrics: {e}")))?,
        ),
        None => None,
    };
    let catalog_listener = match config.catalog_listen {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
            CliError::usage(format!("cannot listen on {a} for the Iceberg catalog: {e}"))
        })?),
        None => None,
    };
    let data_dir = config.data_dir.clone();
    let scheme = if config.security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let node = Node::open(config, NodeComponents::default())
        .await
        .map_err(|e| CliError::usage(format!("cannot start node: {e}")))?;
    let stop = CancellationToken::new();
    let metrics_addr = match metrics_listener {
        Some(l) => {
            let addr = l.local_addr().ok();
            let metrics = node.metrics().clone();
            let security = node.security().clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let shutdown = async move { stop.cancelled().await };
                if let Err(e) = serve_metrics(metrics, security, l, shutdown).await {
                    tracing::warn!(error = %e, "metrics endpoint stopped");
                }
            });
            addr.map(|a| format!(", metrics on http://{a}/metrics"))
        }
        None => None,
    };
    let catalog_addr = match catalog_listener {
        Some(l) => {
            let addr = l.local_addr().ok();
            let node = node.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let shutdown = async move { stop.cancelled().await };
                if let Err(e) = serve_catalog(node, l, shutdown).await {
                    tracing::warn!(error = %e, "Iceberg catalog stopped");
                }
            });
            addr.map(|a| format!(", iceberg catalog on http://{a}"))
        }
        None => None,
    };
    // The first stdout line is machine-readable: tests and scripts read the address from it.
    println!(
        "{banner} listening on {scheme}://{addr} (data dir {}{}{}{})",
        data_dir.display(),
        cluster_addr
            .map(|a| format!(", cluster listener {a}"))
            .unwrap_or_default(),
        metrics_addr.unwrap_or_default(),
        catalog_addr.unwrap_or_default()
    );
    if let Some(hint) = hint {
        eprintln!(
            "{}",
            hint.replace("{server}", &format!("{scheme}://{addr}"))
        );
    }
    let listeners = pyralog_gateway::Listeners {
        client: listener,
        cluster: cluster_listener,
    };
    let result = pyralog_gateway::serve(node, listeners, shutdown_signal())
        .await
        .map_err(|e| CliError::runtime(e.to_string()));
    stop.cancel();
    result
}

pub(crate) async fn serve(args: ServeArgs, format: LogFormat) -> CliResult {
    init_tracing(format);
    let config = load_config(args.config.as_deref(), &args.node, false)?;
    run(config, "pyralog node", false, None).await
}

pub(crate) async fn dev(args: DevArgs, format: LogFormat) -> CliResult {
    init_tracing(format);
    let mut config = load_config(None, &args.node, true)?;
    let hint = if args.secure {
        Some(secure_dev(&mut config)?)
    } else {
        None
    };
    run(config, "pyralog dev", true, hint).await
}

/// `pyralog dev --secure`: a throwaway CA with a node certificate and an `admin` client
/// certificate in `<data-dir>/secure`, TLS on the client listener, client certificates and
/// tokens accepted, ACLs on with `admin` as superuser.
fn secure_dev(config: &mut NodeConfig) -> Result<String, CliError> {
    use pyralog_gateway::security::certs::{init_cert_set, Validity};
    use pyralog_gateway::security::settings::{ClusterTls, TlsFiles};
    use pyralog_gateway::security::tokens::{hash_token, new_token};

    let dir = std::path::absolute(config.data_dir.join("secure"))?;
    let now = std::time::SystemTime::UNIX_EPOCH + crate::security_cmds::since_epoch();
    let ips = [std::net::IpAddr::from([127, 0, 0, 1])];
    let set = init_cert_set(
        &dir,
        1,
        "node-{id}",
        &["admin".to_owned()],
        &ips,
        Validity::days_from(now, 30),
    )
    .map_err(|e| CliError::runtime(e.to_string()))?;
    let token = new_token().map_err(|e| CliError::runtime(e.to_string()))?;
    let tokens = dir.join("tokens.json");
    let entry =
        serde_json::json!({"tokens": [{"principal": "admin", "sha256": hash_token(&token)}]});
    std::fs::write(&tokens, entry.to_string())?;
    let (cert, key) = set.node_cert(config.node_id.max(1));
    let (cert, key) = if config.node_id == 1 {
        (cert, key)
    } else {
        return Err(CliError::usage("dev --secure runs node 1"));
    };
    let s = &mut config.security;
    s.tls = Some(TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
    });
    s.client_ca = Some(set.ca.clone());
    s.cluster_tls = Some(ClusterTls {
        cert,
        key,
        ca: set.ca.clone(),
        node_identity: "node-{id}".to_owned(),
    });
    s.auth.enabled = true;
    s.auth.superusers = vec!["admin".to_owned()];
    s.auth.tokens_file = Some(tokens);
    let (ccert, ckey) = set.client_cert("admin");
    Ok(format!(
        "pyralog dev --secure: TLS with a throwaway CA in {dir}\n  connect as the superuser `admin` with its certificate:\n    pyralog --server {{server}} --tls-ca {ca} --tls-cert {ccert} --tls-key {ckey} auth whoami\n  or with its token:\n    PYRALOG_TOKEN={token} pyralog --server {{server}} --tls-ca {ca} auth whoami",
        dir = dir.display(),
        ca = set.ca.display(),
        ccert = ccert.display(),
        ckey = ckey.display(),
    ))
}
