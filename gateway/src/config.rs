//! Node settings: plain data, read from TOML / `PYRALOG_*` environment / flags by the CLI and
//! validated once at start (see `config/pyralog.toml` for the commented reference).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pyralog_cold_tier::{CacheSettings, ObjectLockSettings, ObjectStoreConfig};
use pyralog_security::{SecuritySettings, ServerLimits};
use pyralog_types::LogConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id in the cluster (1 for a single node).
    pub node_id: u64,
    /// Where segments and metadata live.
    pub data_dir: PathBuf,
    /// The client listener (Producer, Consumer, Admin, Groups, health, reflection).
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address; absent = no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// The read-only Iceberg REST catalog's listen address (plain HTTP; needs a cold tier);
    /// absent = no catalog.
    pub catalog_listen: Option<SocketAddr>,
    /// Defaults for every field a `CreateLog` request leaves unset.
    pub log_defaults: LogConfig,
    pub fetch: FetchSettings,
    pub produce: ProduceSettings,
    /// How often segment age (`segment_ms`) and interval fsyncs are checked.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// How often retention is applied.
    #[serde(with = "humantime_serde")]
    pub retention_check_interval: Duration,
    /// Segment files the hot tier keeps open at most, over all partitions: idle ones are
    /// closed (fsynced first if needed) and reopened on use; index files hold no descriptor.
    /// 0 (the default) = half of the process's open-file limit (soft `RLIMIT_NOFILE`) at
    /// start, at least 64, leaving the rest for connections and metadata.
    pub max_open_files: usize,
    /// The object store closed segments are archived to; absent = hot tier only (total
    /// retention then applies to local segments).
    pub cold_tier: Option<ColdTierSettings>,
    pub compaction: CompactionSettings,
    /// Cluster mode: a Raft controller and replicated partitions. Absent = a single node
    /// with its metadata in a local file.
    pub cluster: Option<ClusterSettings>,
    /// TLS on both listeners, client authentication and ACLs, the metrics token.
    pub security: SecuritySettings,
    /// Connection and request bounds of both listeners (README "Limits").
    pub server: ServerLimits,
}

/// Cluster membership and replication timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The cluster listener: Raft, Controller and Replication, for other nodes only (never
    /// served on the client listener). Other nodes reach it at this node's `voters` entry.
    pub listen: SocketAddr,
    /// The address clients reach this node's client listener at; defaults to `listen` of
    /// the node (the top-level one).
    pub advertise: Option<String>,
    /// The controller's voters as `id=host:port` pairs of their *cluster* listeners,
    /// comma-separated (1, 3 or 5 of them; this node among them if it has the controller
    /// role): `"1=10.0.0.1:7412,2=10.0.0.2:7412,3=10.0.0.3:7412"`.
    pub voters: String,
    /// What this node does: `["controller", "broker"]` (the default: a voter that hosts
    /// partitions), `["controller"]` (a voter only, no partitions) or `["broker"]` (hosts
    /// partitions and follows the controller as a Raft learner, never voting). A list, or
    /// the same comma-separated (`PYRALOG_CLUSTER__ROLES=broker`).
    #[serde(deserialize_with = "roles_list")]
    pub roles: Vec<NodeRole>,
    /// Where other nodes reach this node's cluster listener; default: its `voters` entry,
    /// or `listen` (the cluster one) for a broker-only node.
    pub advertise_cluster: Option<String>,
    /// This node's failure domain (a rack, an availability zone): the controller places a
    /// partition's replicas on distinct racks first. Unset = no rack.
    pub rack: Option<String>,
    /// A follower that has not caught up for this long leaves the ISR.
    #[serde(with = "humantime_serde")]
    pub replica_lag_max: Duration,
    /// How long a caught-up follower's fetch waits for new data at the leader.
    #[serde(with = "humantime_serde")]
    pub replica_fetch_wait: Duration,
    pub replica_fetch_max_bytes: u32,
    /// The copy throttle of partition moves: as leader, this node serves the replicas that
    /// catch up for a reassignment or a decommission (not yet in sync) at most this many
    /// bytes per second, all of them together; in-sync followers and replicas catching up
    /// after a restart are never throttled. `0` = no limit.
    pub move_copy_rate: u64,
    /// A node not heard from for this long is fenced: it loses its leaderships.
    #[serde(with = "humantime_serde")]
    pub node_lease: Duration,
    /// How often a node tells the controller it is alive.
    #[serde(with = "humantime_serde")]
    pub node_heartbeat: Duration,
    /// Raft timing of the controller.
    #[serde(with = "humantime_serde")]
    pub raft_heartbeat: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Controlled shutdown: on SIGTERM the node first hands its leaderships and ISR places to
    /// the other in-sync replicas through the controller, waiting at most this long, then
    /// stops. `0s` stops at once (its partitions then wait for `node_lease`).
    #[serde(with = "humantime_serde")]
    pub controlled_shutdown_timeout: Duration,
    /// How often the controller leader gives partitions back to their preferred replica (the
    /// first one) once it is live and in sync again, e.g. after a restart; `0s` never does.
    #[serde(with = "humantime_serde")]
    pub leader_balance_interval: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 7412)),
            advertise: None,
            voters: String::new(),
            roles: vec![NodeRole::Controller, NodeRole::Broker],
            advertise_cluster: None,
            rack: None,
            replica_lag_max: Duration::from_secs(10),
            replica_fetch_wait: Duration::from_millis(500),
            replica_fetch_max_bytes: 8 << 20,
            move_copy_rate: 100 << 20,
            node_lease: Duration::from_secs(3),
            node_heartbeat: Duration::from_millis(500),
            raft_heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(800),
            controlled_shutdown_timeout: Duration::from_secs(10),
            leader_balance_interval: Duration::from_secs(60),
        }
    }
}

/// One of a node's `cluster.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// A controller voter.
    Controller,
    /// Hosts partitions.
    Broker,
}

/// `roles` as a list or a comma-separated string (what an environment variable holds).
fn roles_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<NodeRole>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Roles {
        List(Vec<NodeRole>),
        Text(String),
    }
    match Roles::deserialize(d)? {
        Roles::List(l) => Ok(l),
        Roles::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| match r {
                "controller" => Ok(NodeRole::Controller),
                "broker" => Ok(NodeRole::Broker),
                other => Err(serde::de::Error::custom(format!(
                    "unknown role {other:?}: expected \"controller\" or \"broker\""
                ))),
            })
            .collect(),
    }
}

impl ClusterSettings {
    /// Whether this node votes in the controller.
    pub fn is_controller(&self) -> bool {
        self.roles.contains(&NodeRole::Controller)
    }

    /// Whether this node hosts partitions.
    pub fn is_broker(&self) -> bool {
        self.roles.contains(&NodeRole::Broker)
    }

    /// The parsed `voters` list.
    pub fn voter_map(&self) -> Result<std::collections::BTreeMap<u64, String>, NodeConfigError> {
        let mut out = std::collections::BTreeMap::new();
        for part in self
            .voters
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (id, addr) = part.split_once('=').ok_or_else(|| {
                NodeConfigError(format!("cluster.voters: {part:?} is not `id=host:port`"))
            })?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| NodeConfigError(format!("cluster.voters: {id:?} is not a node id")))?;
            let addr = addr.trim();
            if addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(NodeConfigError(format!(
                    "cluster.voters: {addr:?} is not host:port"
                )));
            }
            if out.insert(id, addr.to_owned()).is_some() {
                return Err(NodeConfigError(format!("cluster.voters: node {id} twice")));
            }
        }
        if ![1, 3, 5].contains(&out.len()) {
            return Err(NodeConfigError(format!(
                "cluster.voters lists {} voter(s); a controller has 1, 3 or 5",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// The node's compactor tasks (for the partitions it leads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionSettings {
    /// Run each log's compaction every `compaction_interval`. Off when a standalone
    /// `pyralog compactor` does the cold-tier work (`pyralog compaction run` still works).
    pub enabled: bool,
    /// How often the node looks for logs whose compaction is due.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for CompactionSettings {
    fn default() -> Self {
        CompactionSettings {
            enabled: true,
            check_interval: Duration::from_secs(1),
        }
    }
}

/// The cold tier: where archives live, how often to archive, the read cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColdTierSettings {
    pub store: ObjectStoreConfig,
    /// How often closed segments are looked for and archived.
    #[serde(with = "humantime_serde")]
    pub archive_interval: Duration,
    /// Unreferenced objects younger than this are never deleted (in-flight uploads, readers
    /// of an older manifest).
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
    pub cache: CacheSettings,
    /// Threads that may decode archived data at once (Parquet decode, rebuilding batches,
    /// decode-ahead): the share of the cores cold reads can take from the produce path.
    /// 0 = half the cores, at least one.
    pub decode_threads: usize,
    /// Each archived log's Iceberg table (`[cold_tier.iceberg]`).
    pub iceberg: pyralog_lakehouse::TableSettings,
    /// The Ed25519 key that signs ledger checkpoints (a file holding its 32-byte seed as 64
    /// hex characters). Default: `{data_dir}/ledger-signing.key`, created on first start.
    /// Give every node of a cluster the same file so one public key verifies every
    /// checkpoint; `pyralog ledger keygen` makes one.
    pub ledger_signing_key: Option<std::path::PathBuf>,
    /// Write-once storage: every archived object and every committed manifest is put under
    /// S3 Object Lock retention (`{ mode = "compliance" | "governance", retain = "7years" }`).
    /// Needs an `s3://` store whose bucket has Object Lock enabled (checked at start). Absent
    /// (the default): no lock. With it, retention and compaction of archived data are refused
    /// and orphaned objects are kept.
    pub object_lock: Option<ObjectLockSettings>,
}

/// Upper bound on `[cold_tier] decode_threads`: more than the blocking pool would ever run
/// usefully, small enough that a typo does not spawn thousands of threads.
pub const MAX_DECODE_THREADS: usize = 256;

impl ColdTierSettings {
    /// `decode_threads`, with 0 resolved against this machine's cores.
    pub fn decode_threads(&self) -> usize {
        match self.decode_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        }
    }
}

impl Default for ColdTierSettings {
    fn default() -> Self {
        ColdTierSettings {
            store: ObjectStoreConfig::default(),
            archive_interval: Duration::from_secs(10),
            orphan_grace: Duration::from_secs(3600),
            cache: CacheSettings::default(),
            decode_threads: 0,
            iceberg: pyralog_lakehouse::TableSettings::default(),
            ledger_signing_key: None,
            object_lock: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchSettings {
    /// Used when a fetch request leaves `max_bytes` (stored bytes read) at 0.
    pub default_max_bytes: u32,
    /// Upper bound on `max_bytes`.
    pub max_bytes: u32,
    /// Upper bound on a long-poll `wait_ms`.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Used when a fetch request leaves `max_response_bytes` (the encoded response) unset:
    /// under the 4 MiB that stock gRPC clients accept.
    pub default_max_response_bytes: u32,
    /// Upper bound on `max_response_bytes` (at most the server's gRPC message limit).
    pub max_response_bytes: u32,
    /// Bytes all fetches of the node may hold at once (read from storage and kept for their
    /// responses); fetches beyond it wait for their share. At least `max_bytes`.
    pub max_in_flight_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProduceSettings {
    /// Used when a produce request leaves `timeout_ms` at 0.
    #[serde(with = "humantime_serde")]
    pub default_timeout: Duration,
    /// Requests of one `ProduceStream` appended and waiting for their acknowledgement at
    /// once; the server reads no more of the stream meanwhile. Bounds a stream's memory to
    /// this many batches.
    pub max_in_flight_per_stream: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: 1,
            data_dir: PathBuf::from("./pyralog-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7410)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7411))),
            catalog_listen: None,
            log_defaults: LogConfig::default(),
            fetch: FetchSettings::default(),
            produce: ProduceSettings::default(),
            maintenance_interval: Duration::from_secs(1),
            retention_check_interval: Duration::from_secs(300),
            max_open_files: 0,
            cold_tier: None,
            compaction: CompactionSettings::default(),
            cluster: None,
            security: SecuritySettings::default(),
            server: ServerLimits::default(),
        }
    }
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            default_max_bytes: 4 * 1024 * 1024,
            max_bytes: 32 * 1024 * 1024,
            max_wait: Duration::from_secs(30),
            default_max_response_bytes: 3 * 1024 * 1024,
            max_response_bytes: crate::server::MAX_MESSAGE_BYTES as u32,
            max_in_flight_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Default for ProduceSettings {
    fn default() -> Self {
        ProduceSettings {
            default_timeout: Duration::from_secs(30),
            max_in_flight_per_stream: 8,
        }
    }
}

/// Largest `produce.max_in_flight_per_stream`.
pub const MAX_IN_FLIGHT_PER_STREAM: u32 = 64;

/// Smallest response bound: room for a response's own fields and a few small records.
const MIN_RESPONSE_BYTES: u32 = 4096;

impl NodeConfig {
    /// The open-file budget of the hot tier: `max_open_files`, or derived from the soft
    /// `RLIMIT_NOFILE` when it is 0.
    pub fn open_files_budget(&self) -> usize {
        if self.max_open_files != 0 {
            return self.max_open_files;
        }
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _hard)| soft);
        usize::try_from(soft / 2).unwrap_or(usize::MAX).max(64)
    }
}

/// Why a node configuration is rejected at start.
#[derive(Debug, thiserror::Error)]
#[error("invalid node config: {0}")]
pub struct NodeConfigError(pub String);

impl NodeConfig {
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        self.security
            .validate()
            .map_err(|e| NodeConfigError(e.to_string()))?;
        self.server.validate().map_err(NodeConfigError)?;
        if self.catalog_listen.is_some()
            && !self.cold_tier.as_ref().is_some_and(|c| c.iceberg.enabled)
        {
            return Err(NodeConfigError(
                "catalog_listen serves the archive's Iceberg tables: it needs a [cold_tier] with [cold_tier.iceberg] enabled".into(),
            ));
        }
        if self.security.cluster_tls.is_some() && self.cluster.is_none() {
            return Err(NodeConfigError(
                "security.cluster_tls needs a [cluster] section (a single node has no cluster listener)".into(),
            ));
        }
        self.log_defaults
            .validate()
            .map_err(|e| NodeConfigError(format!("log_defaults: {e}")))?;
        if self.fetch.default_max_bytes == 0 || self.fetch.default_max_bytes > self.fetch.max_bytes
        {
            return Err(NodeConfigError(
                "fetch.default_max_bytes must be 1..=fetch.max_bytes".into(),
            ));
        }
        let message_limit = crate::server::MAX_MESSAGE_BYTES as u64;
        let f = &self.fetch;
        if f.max_response_bytes < MIN_RESPONSE_BYTES
            || u64::from(f.max_response_bytes) > message_limit
            || f.default_max_response_bytes < MIN_RESPONSE_BYTES
            || f.default_max_response_bytes > f.max_response_bytes
        {
            return Err(NodeConfigError(format!(
                "need {MIN_RESPONSE_BYTES} <= fetch.default_max_response_bytes <= \
                 fetch.max_response_bytes <= {message_limit} (the gRPC message limit)"
            )));
        }
        if f.max_in_flight_bytes < u64::from(f.max_bytes.max(f.max_response_bytes)) {
            return Err(NodeConfigError(
                "fetch.max_in_flight_bytes must be at least fetch.max_bytes and \
                 fetch.max_response_bytes (one fetch must fit)"
                    .into(),
            ));
        }
        if !(1..=MAX_IN_FLIGHT_PER_STREAM).contains(&self.produce.max_in_flight_per_stream) {
            return Err(NodeConfigError(format!(
                "produce.max_in_flight_per_stream must be 1..={MAX_IN_FLIGHT_PER_STREAM}"
            )));
        }
        if self.maintenance_interval.is_zero() || self.retention_check_interval.is_zero() {
            return Err(NodeConfigError(
                "maintenance_interval and retention_check_interval must be positive".into(),
            ));
        }
        if self.max_open_files != 0 && self.max_open_files < pyralog_hot_tier::MIN_MAX_OPEN_FILES {
            return Err(NodeConfigError(format!(
                "max_open_files must be 0 (derived from the open-file limit) or at least {}",
                pyralog_hot_tier::MIN_MAX_OPEN_FILES
            )));
        }
        if let Some(c) = &self.cluster {
            let voters = c.voter_map()?;
            if c.roles.is_empty() {
                return Err(NodeConfigError(
                    "cluster.roles is empty: a node is a \"controller\", a \"broker\" or both"
                        .into(),
                ));
            }
            match (c.is_controller(), voters.contains_key(&self.node_id)) {
                (true, false) => {
                    return Err(NodeConfigError(format!(
                        "node_id {} has the controller role but is not among cluster.voters",
                        self.node_id
                    )))
                }
                (false, true) => {
                    return Err(NodeConfigError(format!(
                    "node_id {} is among cluster.voters but cluster.roles has no \"controller\"",
                    self.node_id
                )))
                }
                _ => {}
            }
            if !c.is_controller() && c.advertise_cluster.is_none() && c.listen.ip().is_unspecified()
            {
                return Err(NodeConfigError(format!(
                    "cluster.listen is {}: a broker-only node needs cluster.advertise_cluster, \
                     the address the controller leader reaches it at",
                    c.listen
                )));
            }
            if c.listen == self.listen && c.listen.port() != 0 {
                return Err(NodeConfigError(format!(
                    "cluster.listen and listen are both {}: the cluster listener is a port of its own",
                    c.listen
                )));
            }
            let max = pyralog_types::config::limits::MAX_BATCH_BYTES;
            if c.replica_fetch_max_bytes == 0 || c.replica_fetch_max_bytes > max {
                return Err(NodeConfigError(format!(
                    "cluster.replica_fetch_max_bytes must be 1..={max} (a gRPC message holds at most that)"
                )));
            }
            if c.election_timeout_min >= c.election_timeout_max
                || c.raft_heartbeat >= c.election_timeout_min
                || c.node_heartbeat >= c.node_lease
                || c.replica_lag_max.is_zero()
            {
                return Err(NodeConfigError(
                    "cluster timing: need raft_heartbeat < election_timeout_min < \
                     election_timeout_max, node_heartbeat < node_lease, replica_lag_max > 0"
                        .into(),
                ));
            }
        }
        if let Some(c) = &self.cold_tier {
            if c.archive_interval.is_zero() {
                return Err(NodeConfigError(
                    "cold_tier.archive_interval must be positive".into(),
                ));
            }
            if let Some(lock) = &c.object_lock {
                lock.validate(&c.store)
                    .map_err(|e| NodeConfigError(format!("cold_tier.{e}")))?;
            }
            if c.decode_threads > MAX_DECODE_THREADS {
                return Err(NodeConfigError(format!(
                    "cold_tier.decode_threads must be 0 (half the cores) or 1..={MAX_DECODE_THREADS}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_reference_config_parses_and_matches_defaults() {
        let text = include_str!("../../config/pyralog.toml");
        let parsed: NodeConfig = toml::from_str(text).expect("config/pyralog.toml parses");
        parsed.validate().expect("valid");
        assert_eq!(parsed, NodeConfig::default());
    }

    #[test]
    fn the_catalog_needs_a_cold_tier_that_publishes_tables() {
        let alone: NodeConfig =
            toml::from_str("catalog_listen = \"127.0.0.1:7413\"").expect("parses");
        let err = alone.validate().expect_err("no cold tier");
        assert!(err.to_string().contains("catalog_listen"), "{err}");
        let off: NodeConfig = toml::from_str(
            "catalog_listen = \"127.0.0.1:7413\"\n[cold_tier.iceberg]\nenabled = false\n\
             [cold_tier.store]\nurl = \"file:///tmp/x\"",
        )
        .expect("parses");
        assert!(off.validate().is_err(), "tables turned off");
        let on: NodeConfig = toml::from_str(
            "catalog_listen = \"127.0.0.1:7413\"\n[cold_tier.store]\nurl = \"file:///tmp/x\"",
        )
        .expect("parses");
        on.validate().expect("a cold tier with tables");
    }

    #[test]
    fn object_lock_is_off_by_default_parses_and_needs_s3() {
        let cold: NodeConfig =
            toml::from_str("[cold_tier.store]\nurl = \"s3://b/p\"").expect("parses");
        assert_eq!(cold.cold_tier.as_ref().and_then(|c| c.object_lock), None);
        let locked: NodeConfig = toml::from_str(
            "[cold_tier]\nobject_lock = { mode = \"compliance\", retain = \"7years\" }\n\
             [cold_tier.store]\nurl = \"s3://b/p\"",
        )
        .expect("parses");
        locked.validate().expect("valid on s3");
        let lock = locked
            .cold_tier
            .as_ref()
            .and_then(|c| c.object_lock)
            .expect("set");
        assert_eq!(lock.mode, pyralog_cold_tier::LockMode::Compliance);
        assert_eq!(lock.retain, Duration::from_secs(7 * 31_557_600));
        let governance: NodeConfig = toml::from_str(
            "[cold_tier.object_lock]\nmode = \"governance\"\nretain = \"30days\"\n\
             [cold_tier.store]\nurl = \"s3a://b\"",
        )
        .expect("parses");
        governance.validate().expect("valid");

        let local: NodeConfig = toml::from_str(
            "[cold_tier]\nobject_lock = { mode = \"compliance\", retain = \"1day\" }\n\
             [cold_tier.store]\nurl = \"file:///tmp/x\"",
        )
        .expect("parses");
        let err = local
            .validate()
            .expect_err("a local folder has no Object Lock");
        assert!(err.to_string().contains("cold_tier.object_lock"), "{err}");
        assert!(err.to_string().contains("S3 Object Lock"), "{err}");
        let zero: NodeConfig = toml::from_str(
            "[cold_tier]\nobject_lock = { mode = \"compliance\", retain = \"0s\" }\n\
             [cold_tier.store]\nurl = \"s3://b\"",
        )
        .expect("parses");
        assert!(zero.validate().is_err(), "a zero period");
        for bad in [
            "object_lock = { mode = \"worm\", retain = \"1day\" }",
            "object_lock = { mode = \"compliance\", retain = \"forever\" }",
            "object_lock = { mode = \"compliance\" }",
            "object_lock = { mode = \"compliance\", retain = \"1day\", legal_hold = true }",
            "object_lock = \"compliance\"",
        ] {
            let text = format!("[cold_tier]\n{bad}\n[cold_tier.store]\nurl = \"s3://b\"");
            assert!(toml::from_str::<NodeConfig>(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_decide_voter_learner_or_both_and_must_match_the_voter_list() {
        let node = |id: u64, roles: &str, extra: &str| -> Result<NodeConfig, String> {
            let text = format!(
                "node_id = {id}\nlisten = \"127.0.0.1:7410\"\n[cluster]\nlisten = \"127.0.0.1:7412\"\n\
                 voters = \"1=127.0.0.1:7412,2=127.0.0.1:7422,3=127.0.0.1:7432\"\n{roles}\n{extra}"
            );
            let c: NodeConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
            c.validate().map(|()| c).map_err(|e| e.to_string())
        };
        // Default: both roles.
        let both = node(1, "", "").expect("a voter and broker");
        let c = both.cluster.as_ref().expect("cluster");
        assert!(c.is_controller() && c.is_broker());
        // A list or the comma-separated text of an environment variable.
        let voter = node(2, "roles = [\"controller\"]", "").expect("voter only");
        assert!(!voter
            .cluster
            .as_ref()
            .is_some_and(ClusterSettings::is_broker));
        let broker = node(7, "roles = \"broker\"", "").expect("broker only");
        assert!(!broker
            .cluster
            .as_ref()
            .is_some_and(ClusterSettings::is_controller));
        // The voter list and the controller role agree.
        let e = node(7, "roles = [\"controller\", \"broker\"]", "").expect_err("not a voter");
        assert!(e.contains("not among cluster.voters"), "{e}");
        let e = node(1, "roles = [\"broker\"]", "").expect_err("a voter without the role");
        assert!(e.contains("has no \"controller\""), "{e}");
        let e = node(7, "roles = []", "").expect_err("no role");
        assert!(e.contains("roles is empty"), "{e}");
        let e = node(7, "roles = \"broker,chef\"", "").expect_err("unknown role");
        assert!(e.contains("chef"), "{e}");
        // A broker-only node on a wildcard address says where it is reached.
        let text =
            "node_id = 7\nlisten = \"127.0.0.1:7410\"\n[cluster]\nlisten = \"0.0.0.0:7412\"\n\
                    voters = \"1=127.0.0.1:7412\"\nroles = \"broker\"\n";
        let wild: NodeConfig = toml::from_str(text).expect("parses");
        let e = wild.validate().expect_err("no advertised cluster address");
        assert!(e.to_string().contains("advertise_cluster"), "{e}");
        let reached: NodeConfig =
            toml::from_str(&format!("{text}advertise_cluster = \"broker-7:7412\"\n"))
                .expect("parses");
        reached.validate().expect("valid");
    }

    #[test]
    fn typo_is_rejected() {
        assert!(toml::from_str::<NodeConfig>("lisen = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn open_file_budget_is_explicit_or_derived_from_the_limit() {
        let set: NodeConfig = toml::from_str("max_open_files = 300").expect("parses");
        set.validate().expect("valid");
        assert_eq!(set.open_files_budget(), 300);
        let tiny: NodeConfig = toml::from_str("max_open_files = 3").expect("parses");
        assert!(tiny.validate().is_err(), "below the minimum");
        let derived = NodeConfig::default().open_files_budget();
        assert!(derived >= 64, "{derived}");
    }

    #[test]
    fn decode_threads_default_to_half_the_cores_and_are_bounded() {
        let cold: NodeConfig =
            toml::from_str("[cold_tier.store]\nurl = \"file:///tmp/x\"").expect("parses");
        cold.validate().expect("valid");
        let n = cold
            .cold_tier
            .as_ref()
            .map(ColdTierSettings::decode_threads);
        assert!(n.is_some_and(|n| n >= 1), "{n:?}");
        let huge: NodeConfig = toml::from_str(
            "[cold_tier]\ndecode_threads = 100000\n[cold_tier.store]\nurl = \"file:///tmp/x\"",
        )
        .expect("parses");
        let err = huge.validate().expect_err("too many threads");
        assert!(err.to_string().contains("decode_threads"), "{err}");
    }
}
