//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "pyralog",
    version,
    about = "Pyralog: a partitioned, replicated, tiered-storage log"
)]
pub(crate) struct Cli {
    /// Server address for client commands.
    #[arg(
        long,
        global = true,
        env = "PYRALOG_SERVER",
        default_value = "http://127.0.0.1:7410"
    )]
    pub server: String,
    /// Log output format of `serve` and `dev` (filter with RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// CA bundle (PEM) that signed the nodes' certificates: connect with TLS.
    #[arg(long, global = true, env = "PYRALOG_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS authentication (with --tls-key).
    #[arg(long, global = true, env = "PYRALOG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "PYRALOG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Bearer token (static token or JWT) sent with every call.
    #[arg(long, global = true, env = "PYRALOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a node from a config file (plus PYRALOG_* environment and flags).
    Serve(ServeArgs),
    /// Run a single development node with local defaults; nothing to install.
    Dev(DevArgs),
    /// Create, list, describe, delete logs; roll segments.
    Logs(LogsArgs),
    /// Produce records read from stdin, one per line.
    Produce(ProduceArgs),
    /// Print records of a log.
    Consume(ConsumeArgs),
    /// Show earliest/latest offsets (and the offset for a timestamp) per partition.
    Offsets(OffsetsArgs),
    /// Run or inspect a log's compaction.
    Compaction(CompactionArgs),
    /// Inspect the cluster: nodes, liveness, the controller's leader.
    Cluster(ClusterArgs),
    /// Consumer groups: list, describe (members, assignment, lag), reset offsets, delete.
    Groups(GroupsArgs),
    /// Run the standalone compactor on a bucket: compaction, retention and orphan GC of the
    /// archive, without a node.
    Compactor(CompactorArgs),
    /// Load generator and same-run baselines (see bench/README.md).
    Bench(BenchArgs),
    /// Access control lists: who may do what to which log, group or the cluster.
    Acls(AclsArgs),
    /// Credentials: who am I, new tokens and their hashes.
    Auth(AuthArgs),
    /// Certificates for development and tests: a CA, node and client certificates.
    Certs(CertsArgs),
    /// Ledger logs: verify from the bucket alone, inclusion and consistency proofs, keys.
    Ledger(LedgerArgs),
}

#[derive(Debug, Args)]
pub(crate) struct LedgerArgs {
    #[command(subcommand)]
    pub command: LedgerCommand,
}

/// Where the archive is: no node is needed.
#[derive(Debug, Args)]
pub(crate) struct BucketArgs {
    /// The bucket the nodes archive to, e.g. `s3://bucket/prefix` or `file:///dir`.
    #[arg(long)]
    pub object_store: String,
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// Allow a plain `http://` endpoint.
    #[arg(long)]
    pub allow_http: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Check a ledger log's chain, Merkle roots and signed checkpoints from the bucket alone;
    /// exit 1 naming what broke.
    Verify {
        log: String,
        #[command(flatten)]
        bucket: BucketArgs,
        /// A trusted checkpoint key: hex, or a file holding it (repeatable).
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// Also trust the keys published in the bucket (anyone who can write it can add one).
        #[arg(long)]
        trust_bucket_keys: bool,
        /// A checkpoint kept outside the bucket (a file `pyralog ledger proof` or the bucket
        /// gave you; repeatable): the archive must still extend it.
        #[arg(long = "checkpoint")]
        anchors: Vec<std::path::PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print (or write) the proof that one record is in a signed checkpoint.
    Proof {
        log: String,
        #[arg(long)]
        partition: u32,
        #[arg(long)]
        offset: u64,
        /// The checkpoint (its size in objects); default the newest covering the offset.
        #[arg(long)]
        checkpoint: Option<u64>,
        #[command(flatten)]
        bucket: BucketArgs,
        /// Write the proof to this file instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Print (or write) the proof that a newer checkpoint extends an older one.
    Consistency {
        log: String,
        #[arg(long)]
        partition: u32,
        /// Size (objects) of the older checkpoint.
        #[arg(long)]
        from: u64,
        /// Size (objects) of the newer checkpoint.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        bucket: BucketArgs,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Check an inclusion or consistency proof offline against a trusted key.
    CheckProof {
        /// The proof file (`pyralog ledger proof|consistency --out`).
        file: std::path::PathBuf,
        /// The trusted checkpoint key: hex, or a file holding it.
        #[arg(long)]
        public_key: String,
    },
    /// Create a checkpoint signing key (for `[cold_tier] ledger_signing_key`) and print its
    /// public half.
    Keygen {
        /// Where to write the private key (created owner-only; never overwritten).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AclsArgs {
    #[command(subcommand)]
    pub command: AclsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AclsCommand {
    /// Add entries: one per operation given.
    Add(AclSpec),
    /// Remove entries: one per operation given.
    Remove(AclSpec),
    /// List entries (of one principal and `*`, with --principal).
    List {
        #[arg(long)]
        principal: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("permission").required(true).args(["allow", "deny"])))]
#[command(group(clap::ArgGroup::new("resource").required(true).args(["log", "log_prefix", "group", "group_prefix", "cluster"])))]
pub(crate) struct AclSpec {
    /// The principal (a certificate's name, a token's principal, a JWT subject), or `*`.
    #[arg(long)]
    pub principal: String,
    /// Operations to allow: produce, consume, describe, create, delete, alter, admin (=
    /// create, delete and alter), group, cluster_admin. Repeatable or comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Operations to deny (a deny wins over any allow).
    #[arg(long, value_delimiter = ',')]
    pub deny: Vec<String>,
    /// A log by name (`*` = every log).
    #[arg(long)]
    pub log: Option<String>,
    /// Every log whose name starts with this.
    #[arg(long)]
    pub log_prefix: Option<String>,
    /// A consumer group by name (`*` = every group).
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub group_prefix: Option<String>,
    /// The cluster (for cluster_admin, describe).
    #[arg(long)]
    pub cluster: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuthCommand {
    /// The principal the server authenticates these credentials as.
    Whoami,
    /// A new random token and its line for the tokens file.
    NewToken {
        /// The principal the token stands for.
        #[arg(long)]
        principal: String,
    },
    /// The SHA-256 of a token read from stdin, as the tokens file stores it.
    HashToken,
}

#[derive(Debug, Args)]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// A new CA plus node certificates (`node-1` … `node-N`, valid for localhost and the given
    /// IPs) and client certificates, into DIR.
    Init {
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Client principals (repeatable or comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        clients: Vec<String>,
        /// IP addresses the node certificates are valid for.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
        ips: Vec<std::net::IpAddr>,
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Nodes, their addresses and liveness, and the controller's leader.
    Describe,
    /// Move a partition to a new replica set: the new replicas copy from the leader, and the
    /// set switches once all of it is in sync (`logs describe` shows the move until then).
    Reassign {
        log: String,
        #[arg(long)]
        partition: u32,
        /// The new replicas, comma-separated, the preferred leader first: `2,3`.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<u64>,
    },
    /// Move every replica off a node and place nothing new on it; stop the node once no
    /// partition lists it.
    Decommission { node: u64 },
}

#[derive(Debug, Args)]
pub(crate) struct GroupsArgs {
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// Every group with its member count, generation and strategy.
    List,
    /// Members and their partitions, and per partition the committed offset and lag.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group without members, with its committed offsets.
    Delete { group: String },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset", "to_timestamp"])))]
pub(crate) struct ResetOffsetsArgs {
    pub group: String,
    pub log: String,
    /// Only these partitions (repeatable; default: all).
    #[arg(long)]
    pub partition: Vec<u32>,
    #[arg(long)]
    pub to_earliest: bool,
    #[arg(long)]
    pub to_latest: bool,
    #[arg(long)]
    pub to_offset: Option<u64>,
    /// The first record at or after this time (RFC 3339, or µs since the epoch).
    #[arg(long)]
    pub to_timestamp: Option<String>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum StrategyArg {
    Range,
    RoundRobin,
    Sticky,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub workload: BenchWorkload,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchWorkload {
    /// Raw append+fsync of a directory and loopback TCP: the physical baselines.
    Baseline {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Every workload plus baselines against a running node; writes JSON and Markdown.
    Suite(SuiteArgs),
    /// Tiering and cold catch-up reads against an object store, next to raw GETs of the same
    /// objects (the store's credentials come from the standard environment, e.g. AWS_*).
    Cold(ColdBenchArgs),
    /// RF=3 acks=quorum against RF=1 acks=leader on a running cluster of 3+ nodes: peak
    /// throughput and open-loop latency of both in the same run.
    Replication(ReplicationBenchArgs),
    /// Idempotent vs plain produce (same run), commit throughput, rebalance times.
    Groups(GroupsBenchArgs),
    /// What TLS and authentication cost: produce MB/s and p99, connection set-up time and
    /// server CPU per handshake, against the --server node (plaintext) and a secure node.
    Tls(TlsBenchArgs),
    /// Ledger mode: archive encode with and without the chain, and `ledger verify` MB/s next
    /// to raw GETs of the same objects.
    Ledger(LedgerBenchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct LedgerBenchArgs {
    /// An empty prefix to write to: s3://bucket/prefix, file:///dir, ...
    #[arg(long)]
    pub object_store: String,
    /// Custom endpoint of an S3-compatible server (plain http is allowed).
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    #[arg(long, default_value_t = 100)]
    pub record_bytes: usize,
    /// Records per archived object.
    #[arg(long, default_value_t = 100_000)]
    pub segment_records: u64,
    /// Also W1 produce on a ledger log vs a plain log on the node of `--server`, this many
    /// records per run (0: skip).
    #[arg(long, default_value_t = 0)]
    pub produce_records: u64,
    /// Alternating plain/ledger rounds of the produce comparison.
    #[arg(long, default_value_t = 3)]
    pub produce_rounds: u32,
    /// fsync policy of the produce comparison's logs.
    #[arg(long, default_value = "every_batch")]
    pub produce_fsync: String,
    #[arg(long)]
    pub quiet: bool,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct TlsBenchArgs {
    /// The secure node (https://...), reached with the global --tls-* flags.
    #[arg(long)]
    pub secure_server: String,
    /// Pids of the plaintext and the secure node (for server CPU per handshake).
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long)]
    pub secure_pid: Option<u32>,
    #[arg(long, default_value_t = 300_000)]
    pub records: u64,
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    #[arg(long, default_value_t = 1000)]
    pub connections: u32,
    #[arg(long, default_value_t = 10)]
    pub latency_seconds: u64,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GroupsBenchArgs {
    #[arg(long, default_value_t = 500_000)]
    pub records: u64,
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    #[arg(long, default_value_t = 12)]
    pub partitions: u32,
    #[arg(long, default_value_t = 5)]
    pub commit_seconds: u64,
    #[arg(long, default_value_t = 3000)]
    pub session_timeout_ms: u64,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReplicationBenchArgs {
    #[arg(long, default_value_t = 500_000)]
    pub records: u64,
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Length of each open-loop latency run.
    #[arg(long, default_value_t = 10)]
    pub latency_seconds: u64,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ColdBenchArgs {
    /// An empty prefix to write to: s3://bucket/prefix, file:///dir, ...
    #[arg(long)]
    pub object_store: String,
    /// Custom endpoint of an S3-compatible server (plain http is allowed).
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Records per segment (one Parquet object each); default: segments of the hot tier's
    /// default size (256 MiB), the objects a node archives.
    #[arg(long)]
    pub segment_records: Option<u64>,
    /// Concurrent cold consumers of the many-readers step, one per partition (0 skips it).
    #[arg(long, default_value_t = 32)]
    pub readers: usize,
    /// Where the read cache's disk file goes (default: a temp dir).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SuiteArgs {
    /// The node's data directory (the disk baseline runs there).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The node's pid (for server CPU seconds and peak RSS).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Records per W1 run.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Record sizes for W1; the first also drives W2-W4 and W7.
    #[arg(long, value_delimiter = ',', default_value = "1024,100")]
    pub record_bytes: Vec<usize>,
    /// Size of W4's hot backlog in MB.
    #[arg(long, default_value_t = 2048)]
    pub drain_mb: u64,
    /// The node's cold-tier store, for W5/W6 (run in-process under a fresh prefix of it) and
    /// W7 (through the node). Omit to skip them.
    #[arg(long)]
    pub object_store: Option<String>,
    /// Endpoint of an S3-compatible server (plain http allowed).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Records archived for W5/W6.
    #[arg(long, default_value_t = 2_000_000)]
    pub cold_records: u64,
    /// MB archived through the node for W7's cold reader.
    #[arg(long, default_value_t = 256)]
    pub w7_mb: u64,
    /// JSON figures of a peer run (bench/peer/tansu.sh) to compare with.
    #[arg(long)]
    pub peer: Option<PathBuf>,
    /// Partition counts to run W1 with.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub partitions: Vec<u32>,
    /// Length of the open-loop latency run.
    #[arg(long, default_value_t = 20)]
    pub latency_seconds: u64,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML config file (see config/pyralog.toml for the reference).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeFlags,
}

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    pub node: NodeFlags,
    /// TLS, client certificates and ACLs with a throwaway CA made at start (in
    /// <data-dir>/secure); prints how to connect.
    #[arg(long)]
    pub secure: bool,
}

#[derive(Debug, Args, Default)]
pub(crate) struct NodeFlags {
    /// Data directory (default ./pyralog-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address (default 127.0.0.1:7410; port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Prometheus metrics listen address (default 127.0.0.1:7411).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Cluster listener address (`[cluster] listen`; `dev` default: a free loopback port).
    #[arg(long)]
    pub cluster_listen: Option<SocketAddr>,
    /// Cold tier object store URL: s3://bucket/prefix, gs://..., az://..., file:///dir
    /// (`dev` default: file://<data-dir>/objects; `serve` default: no cold tier). S3-compatible
    /// servers also need PYRALOG_COLD_TIER__STORE__ENDPOINT (and __ALLOW_HTTP=true for http).
    #[arg(long)]
    pub object_store: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    #[command(subcommand)]
    pub command: LogsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LogsCommand {
    /// Create a log.
    Create(Box<CreateArgs>),
    /// List logs.
    List,
    /// Show a log's config and partitions.
    Describe { name: String },
    /// Delete a log and all its data.
    Delete {
        name: String,
        /// Required to delete a ledger log (and only a superuser may): its tamper-evident
        /// history goes with it.
        #[arg(long)]
        break_glass: bool,
    },
    /// Change a log: raise its partition count (never lowered). Consumer groups rebalance;
    /// keyed records hash over the new count from then on (a key may move partitions).
    Alter {
        name: String,
        /// The new partition count (not below the current one).
        #[arg(long)]
        partitions: u32,
    },
    /// Close the active segments now.
    Roll {
        name: String,
        #[arg(long)]
        partition: Vec<u32>,
    },
    /// Restore a replica's damaged batch (CORRUPT_DATA) from a healthy replica: every replica
    /// of the partition checks its copy; a damaged one leaves the ISR, cuts its log at the
    /// damage and fetches the rest from the leader.
    Repair {
        name: String,
        #[arg(long)]
        partition: u32,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    pub name: String,
    #[arg(long, short = 'p')]
    pub partitions: Option<u32>,
    #[arg(long)]
    pub replication_factor: Option<u32>,
    #[arg(long)]
    pub min_in_sync_replicas: Option<u32>,
    /// Total retention by age, e.g. "7days"; "infinite" for none.
    #[arg(long)]
    pub retention: Option<String>,
    /// Total retention by size in bytes.
    #[arg(long)]
    pub retention_bytes: Option<u64>,
    /// Hot-tier (local disk) retention by age for archived segments, e.g. "1day".
    #[arg(long)]
    pub local_retention: Option<String>,
    /// Hot-tier retention by size in bytes for archived segments.
    #[arg(long)]
    pub local_retention_bytes: Option<u64>,
    #[arg(long)]
    pub segment_bytes: Option<u64>,
    /// Roll segments at this age, e.g. "1h".
    #[arg(long)]
    pub segment_age: Option<String>,
    /// "every_batch", "never", or an interval like "100ms".
    #[arg(long)]
    pub fsync: Option<String>,
    #[arg(long)]
    pub max_record_bytes: Option<u32>,
    #[arg(long)]
    pub max_batch_bytes: Option<u32>,
    /// none | delete_markers | key_based | time_series
    #[arg(long)]
    pub compaction: Option<String>,
    /// Leave records younger than this uncompacted, e.g. "1h".
    #[arg(long)]
    pub min_compaction_lag: Option<String>,
    /// How often compaction runs, e.g. "5m".
    #[arg(long)]
    pub compaction_interval: Option<String>,
    /// How long tombstones survive compaction, e.g. "1day".
    #[arg(long)]
    pub delete_retention: Option<String>,
    /// Time series: the JSON field of the record value holding the sample.
    #[arg(long)]
    pub ts_value_field: Option<String>,
    /// Time series: JSON fields naming the series (default: the record key).
    #[arg(long, value_delimiter = ',')]
    pub ts_tags: Vec<String>,
    /// Time series: downsampling tiers as AFTER=BUCKET, youngest first, e.g. "1d=10m,7d=1h".
    #[arg(long, value_delimiter = ',')]
    pub ts_tiers: Vec<String>,
    /// none | ledger (tamper-evident: hash-chained, Merkle-rooted, signed checkpoints;
    /// retention then defaults to infinite and compaction must stay none). Fixed at creation.
    #[arg(long)]
    pub integrity: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CompactionArgs {
    #[command(subcommand)]
    pub command: CompactionCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CompactionCommand {
    /// Run a compaction pass over every partition of a log now and print what it did.
    Run { name: String },
    /// Show what the compactor has done for each partition of a log.
    Status { name: String },
}

#[derive(Debug, Args)]
pub(crate) struct CompactorArgs {
    /// TOML config: `interval`, `orphan_grace`, `logs`, `retention` and a `[store]` section
    /// like `[cold_tier.store]` of the node config (see config/compactor.toml).
    #[arg(long, short)]
    pub config: std::path::PathBuf,
    /// Run one pass and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Acks {
    None,
    Leader,
    Quorum,
    All,
}

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    pub log: String,
    /// Key for every record.
    #[arg(long, conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Header `name=value` added to every record (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Send everything to this partition instead of hashing keys.
    #[arg(long)]
    pub partition: Option<u32>,
    #[arg(long, value_enum, default_value_t = Acks::Leader)]
    pub acks: Acks,
    /// Compress batches with zstd.
    #[arg(long)]
    pub zstd: bool,
    #[arg(long, default_value_t = 1024 * 1024)]
    pub batch_bytes: usize,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Idempotent producer: retries never store a batch twice.
    #[arg(long)]
    pub idempotent: bool,
    /// A stable name for the idempotent producer (a later producer with the same name
    /// fences this one). Implies --idempotent.
    #[arg(long)]
    pub producer_name: Option<String>,
    /// Use each record's key as its dedup id: a record whose key was stored recently (10
    /// minutes) is not stored again, so replaying the same input is harmless.
    #[arg(long, conflicts_with_all = ["idempotent", "producer_name"])]
    pub dedup_by_key: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    /// The value as text.
    Text,
    /// One JSON object per record.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    pub log: String,
    /// Only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Start at this offset.
    #[arg(long, conflicts_with_all = ["timestamp", "from_beginning"])]
    pub offset: Option<u64>,
    /// Start at the first record at or after this time (RFC 3339, or µs since the epoch).
    #[arg(long, conflicts_with = "from_beginning")]
    pub timestamp: Option<String>,
    /// Start at the earliest retained record (default: the end).
    #[arg(long)]
    pub from_beginning: bool,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub max_records: Option<u64>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// In text format, print `partition:offset key<TAB>value`.
    #[arg(long)]
    pub verbose: bool,
    /// Consume as a member of this group: the group's partitions are shared among its
    /// members, and positions are committed after records are printed (at least once).
    #[arg(long, conflicts_with_all = ["partition", "offset", "timestamp"])]
    pub group: Option<String>,
    /// With --group: how partitions are spread over the members.
    #[arg(long, value_enum, default_value_t = StrategyArg::Sticky, requires = "group")]
    pub strategy: StrategyArg,
    /// With --group: commit printed positions this often.
    #[arg(long, default_value_t = 1000, requires = "group")]
    pub commit_interval_ms: u64,
    /// With --group: the member is removed after this long without heartbeats.
    #[arg(long, default_value_t = 10_000, requires = "group")]
    pub session_timeout_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct OffsetsArgs {
    pub log: String,
    /// Also find the first offset at or after this time (RFC 3339, or µs since the epoch).
    #[arg(long)]
    pub timestamp: Option<String>,
}
