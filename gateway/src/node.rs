//! The node core: opening logs, admin and shutdown live here; produce (`produce`), reads
//! (`read`), background tasks (`background`), creation (`create`), compaction, corruption
//! handling, consumer groups and replication each have a module of their own.
//!
//! Everything here speaks domain types and returns [`GatewayError`]; the gRPC services in
//! `services` are thin adapters around it, so the node can be driven directly in tests.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::RwLock;
use pyralog_hot_tier::{OpenFiles, PartitionLog, PartitionOptions};
use pyralog_types::{Clock, Epoch, LogConfig, LogId, PartitionId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::access::authz::Guard;
use crate::access::NodeSecurity;
use crate::cluster::{Cluster, ControllerMetadata};
use crate::cold::ColdTier;
use crate::config::NodeConfig;
use crate::error::GatewayError;
use crate::metadata::{LocalMetadataStore, LogMeta, MetadataStore};
use crate::metrics::Metrics;
use crate::partition::{Partition, Role};
use crate::trash::Trash;

/// Partitions closed at once at shutdown (each close syncs a few files).
const CONCURRENT_CLOSES: usize = 64;

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Config(#[from] crate::config::NodeConfigError),
    #[error("data directory {path}: {detail}")]
    DataDir { path: PathBuf, detail: String },
    #[error("metadata: {0}")]
    Metadata(#[from] crate::metadata::MetadataError),
    #[error("opening log {log} partition {partition}: {source}")]
    OpenPartition {
        log: LogId,
        partition: PartitionId,
        source: pyralog_hot_tier::HotError,
    },
    #[error("cold tier: {0}")]
    ColdTier(#[from] pyralog_cold_tier::ColdError),
    #[error("controller: {0}")]
    Controller(String),
    #[error("security: {0}")]
    Security(#[from] pyralog_security::SecurityError),
}

/// Swappable parts of a node (tests inject a manual clock or another metadata store).
#[derive(Debug, Clone)]
pub struct NodeComponents {
    pub clock: Arc<dyn Clock>,
    pub metadata: Option<Arc<dyn MetadataStore>>,
    /// The cold tier's store, instead of opening `cold_tier.store.url` (tests wrap the real
    /// store in a fault injector). Ignored without a `cold_tier` setting.
    pub object_store: Option<Arc<dyn object_store::ObjectStore>>,
}

impl Default for NodeComponents {
    fn default() -> Self {
        NodeComponents {
            clock: pyralog_types::clock::system(),
            metadata: None,
            object_store: None,
        }
    }
}

#[derive(Debug)]
struct OpenLog {
    id: LogId,
    config: LogConfig,
    dir: PathBuf,
    partitions: Vec<Arc<Partition>>,
    /// The controller's incarnation of the log (0 standalone): a log deleted and created
    /// again under the same name is a different log.
    incarnation: u64,
    /// When the compactor last ran over this log (`None`: not since the node started).
    last_compaction: parking_lot::Mutex<Option<tokio::time::Instant>>,
    /// Stops this log's background tasks when it is deleted.
    cancel: CancellationToken,
}

impl OpenLog {
    /// Every partition stops leading or following here (follower tasks and replication
    /// streams end, waiters for replication get `NOT_LEADER`).
    fn give_up_roles(&self) {
        for p in &self.partitions {
            p.set_role(p.epoch(), Role::Elsewhere { leader: None });
        }
    }
}

/// One Pyralog node.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    clock: Arc<dyn Clock>,
    metadata: Arc<dyn MetadataStore>,
    logs: RwLock<HashMap<LogId, Arc<OpenLog>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
    cold: Option<Arc<ColdTier>>,
    /// Cluster mode (controller, replication); `None` for a standalone node.
    cluster: Option<Arc<Cluster>>,
    /// TLS material, authentication, and the node identities of the cluster.
    security: Arc<NodeSecurity>,
    /// Completed reconciler passes (cluster mode): start-up waits for one, so a restarted
    /// node serves its logs from the first request, as a standalone node does.
    reconciled: tokio::sync::watch::Sender<u64>,
    /// Bytes of fetches in flight (`fetch.max_in_flight_bytes`).
    fetch_budget: crate::fetch::FetchBudget,
    /// The budget of open segment files, shared by every partition of the node.
    files: OpenFiles,
    /// Why the reconciler could not open a log here, by log and incarnation (so a creation
    /// waiting for it fails at once instead of at its timeout).
    open_failures: parking_lot::Mutex<HashMap<LogId, (u64, String)>>,
    /// Where deleted logs' directories go to be removed in the background.
    trash: Trash,
    /// Standalone: log growths and deletions one at a time, so a partition is never opened
    /// twice and a deleted log is never put back.
    growing: tokio::sync::Mutex<()>,
    _dir_lock: std::fs::File,
}

fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

impl Node {
    /// Opens the data directory, recovers every log and starts background maintenance.
    pub async fn open(
        config: NodeConfig,
        components: NodeComponents,
    ) -> Result<Arc<Node>, NodeError> {
        config.validate()?;
        let data_dir = config.data_dir.clone();
        let dir_err = |detail: String| NodeError::DataDir {
            path: data_dir.clone(),
            detail,
        };
        std::fs::create_dir_all(logs_dir(&data_dir)).map_err(|e| dir_err(e.to_string()))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(".lock"))
            .map_err(|e| dir_err(e.to_string()))?;
        lock.try_lock()
            .map_err(|_| dir_err("in use by another pyralog process (.lock is held)".into()))?;
        let trash = Trash::new(&data_dir);
        trash.empty_in_background();
        let security = NodeSecurity::new(&config)?;
        let cluster = Cluster::start(&config, security.peer_channels()).await?;
        let metadata: Arc<dyn MetadataStore> = match (components.metadata, &cluster) {
            (Some(m), _) => m,
            (None, Some(c)) => Arc::new(ControllerMetadata { cluster: c.clone() }),
            (None, None) => Arc::new(LocalMetadataStore::open(&data_dir.join("meta"))?),
        };
        let cold = match &config.cold_tier {
            Some(settings) => Some(Arc::new(
                ColdTier::open(
                    settings,
                    components.object_store,
                    &data_dir,
                    components.clock.clone(),
                )
                .await?,
            )),
            None => None,
        };
        let fetch_budget = crate::fetch::FetchBudget::new(config.fetch.max_in_flight_bytes);
        let files = OpenFiles::new(config.open_files_budget());
        info!(
            max_open_files = files.capacity(),
            "hot tier open-file budget"
        );
        let node = Arc::new(Node {
            files,
            open_failures: parking_lot::Mutex::new(HashMap::new()),
            config,
            clock: components.clock,
            metadata,
            logs: RwLock::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            metrics: Metrics::new(),
            cold,
            cluster: cluster.clone(),
            security,
            reconciled: tokio::sync::watch::Sender::new(0),
            fetch_budget,
            trash,
            growing: tokio::sync::Mutex::new(()),
            _dir_lock: lock,
        });
        if let Some(cluster) = cluster {
            // Logs come from the controller's state as it is applied: the reconciler opens
            // them and gives every partition its role.
            node.spawn_reconciler(cluster.clone());
            node.spawn_alive_ticker(cluster.clone());
            node.spawn_replication_ticker(cluster.clone());
            if cluster.controller.config().voters.len() == 1
                && cluster.controller.config().is_voter()
                && cluster.settings.is_broker()
            {
                // A one-voter controller (`pyralog dev`) is up at once: serve only once this
                // node is registered and the bucket's logs are back, as a standalone node would.
                if !node
                    .wait_registered(&cluster, Duration::from_secs(30))
                    .await
                {
                    return Err(NodeError::Controller(
                        "this node did not register with its own controller within 30 s".into(),
                    ));
                }
                if node.restore_from_registry(&cluster).await {
                    node.wait_reconciled(2, true).await;
                } else {
                    node.wait_reconciled(1, false).await;
                }
            } else {
                node.wait_reconciled(1, false).await;
                if cluster.settings.is_broker() {
                    // Brokers bring back the bucket's logs the controller lost (a
                    // controller-only node never registers, so it leaves that to them).
                    let weak = Arc::downgrade(&node);
                    let stop = node.shutdown.clone();
                    node.tasks.spawn(async move {
                        let Some(n) = weak.upgrade() else { return };
                        let registered = tokio::select! {
                            _ = stop.cancelled() => false,
                            r = n.wait_registered(&cluster, Duration::from_secs(600)) => r,
                        };
                        if registered {
                            n.restore_from_registry(&cluster).await;
                        }
                    });
                }
            }
        } else {
            node.open_known_logs().await?;
        }
        node.spawn_maintenance();
        node.spawn_archiver();
        node.spawn_compactor();
        Ok(node)
    }

    /// Standalone start: every log in the local metadata (and in the bucket's registry).
    async fn open_known_logs(&self) -> Result<(), NodeError> {
        let mut known = self.metadata.list_logs().await?;
        if let Some(cold) = &self.cold {
            // Logs archived in the bucket but unknown here (an empty or replaced disk) are
            // recreated; logs known here but not yet registered in the bucket are registered.
            for (id, config) in cold.registered_logs().await? {
                if let std::collections::btree_map::Entry::Vacant(slot) = known.entry(id) {
                    info!(log = %slot.key(), "restoring log from the cold tier's registry");
                    let meta = self.metadata.create_log(slot.key(), &config).await?;
                    slot.insert(meta);
                }
            }
            for (id, meta) in &known {
                cold.register(id, &meta.config).await?;
            }
        }
        self.remove_orphan_dirs(&known);
        for (id, meta) in known {
            let open = self.open_log(id, meta, 0).await?;
            self.logs.write().insert(open.id.clone(), open);
        }
        Ok(())
    }

    /// The cluster this node belongs to, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The Iceberg tables of the archive, when the cold tier publishes them.
    pub(crate) fn lakehouse_tables(&self) -> Option<Arc<pyralog_lakehouse::IcebergTables>> {
        self.cold
            .as_ref()
            .and_then(|c| c.lakehouse())
            .map(|l| l.tables.clone())
    }

    /// The logs this node has open.
    pub(crate) fn log_ids(&self) -> Vec<LogId> {
        self.logs.read().keys().cloned().collect()
    }

    pub fn security(&self) -> &Arc<NodeSecurity> {
        &self.security
    }

    /// The ACL view of one request (see [`Guard`]).
    pub(crate) fn guard<T>(&self, request: &tonic::Request<T>) -> Result<Guard<'_>, tonic::Status> {
        self.security.guard(request, || self.metadata.acls())
    }

    /// Adds, then removes, ACL entries (controller state in cluster mode).
    pub(crate) async fn alter_acls(
        &self,
        add: Vec<pyralog_types::acl::AclEntry>,
        remove: Vec<pyralog_types::acl::AclEntry>,
    ) -> Result<(), GatewayError> {
        self.metadata
            .alter_acls(add, remove)
            .await
            .map_err(GatewayError::from)
    }

    /// The ACL entries now.
    pub(crate) fn acl_entries(&self) -> crate::metadata::Acls {
        self.metadata.acls()
    }

    /// Deletes directories of logs the metadata no longer knows (a delete interrupted by a
    /// crash after the metadata commit).
    fn remove_orphan_dirs(&self, known: &BTreeMap<LogId, LogMeta>) {
        let Ok(entries) = std::fs::read_dir(logs_dir(&self.config.data_dir)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let keep = name
                .to_str()
                .and_then(|n| LogId::new(n).ok())
                .is_some_and(|id| known.contains_key(&id));
            if !keep {
                warn!(dir = %entry.path().display(), "removing directory of a deleted log");
                if let Err(e) = self.trash.discard(&entry.path()) {
                    warn!(dir = %entry.path().display(), error = %e, "could not remove");
                }
            }
        }
    }

    /// Opens (creating if new) a log's partitions here. A new log that fails to open leaves
    /// no directory behind, so a later creation under the same name starts clean.
    async fn open_log(
        &self,
        id: LogId,
        meta: LogMeta,
        incarnation: u64,
    ) -> Result<Arc<OpenLog>, NodeError> {
        let dir = logs_dir(&self.config.data_dir).join(id.as_str());
        let fresh = std::fs::symlink_metadata(&dir).is_err();
        let opened = self.open_log_dirs(id, meta, incarnation).await;
        if opened.is_err() && fresh {
            create::remove_fresh_dir(&dir);
        }
        opened
    }

    async fn open_log_dirs(
        &self,
        id: LogId,
        meta: LogMeta,
        incarnation: u64,
    ) -> Result<Arc<OpenLog>, NodeError> {
        let dir = logs_dir(&self.config.data_dir).join(id.as_str());
        let mut partitions = Vec::with_capacity(meta.config.partition_count as usize);
        for p in 0..meta.config.partition_count {
            partitions.push(self.open_partition(&id, &meta, &dir, p).await?);
        }
        let open = Arc::new(OpenLog {
            id,
            config: meta.config,
            dir,
            partitions,
            incarnation,
            last_compaction: parking_lot::Mutex::new(None),
            cancel: self.shutdown.child_token(),
        });
        self.spawn_log_tasks(&open);
        Ok(open)
    }

    /// A log that gained partitions (`AddPartitions`): the same log with its partitions and
    /// the new ones opened after them. The caller puts it in place of `old`; `old`'s own
    /// tasks stop, the new one's start.
    async fn grow_log(&self, old: &Arc<OpenLog>, meta: LogMeta) -> Result<Arc<OpenLog>, NodeError> {
        let mut partitions = old.partitions.clone();
        for p in partitions.len() as u32..meta.config.partition_count {
            partitions.push(self.open_partition(&old.id, &meta, &old.dir, p).await?);
        }
        let grown = Arc::new(OpenLog {
            id: old.id.clone(),
            config: meta.config,
            dir: old.dir.clone(),
            partitions,
            incarnation: old.incarnation,
            last_compaction: parking_lot::Mutex::new(*old.last_compaction.lock()),
            cancel: self.shutdown.child_token(),
        });
        old.cancel.cancel();
        self.spawn_log_tasks(&grown);
        info!(log = %grown.id, from = old.partitions.len(), to = grown.partitions.len(),
            "log grew");
        Ok(grown)
    }

    /// Opens partition `p` of log `id` in `dir` (its files, its archive, its starting role).
    async fn open_partition(
        &self,
        id: &LogId,
        meta: &LogMeta,
        dir: &std::path::Path,
        p: PartitionId,
    ) -> Result<Arc<Partition>, NodeError> {
        let pdir = dir.join(p.to_string());
        let mut options = PartitionOptions::from_config(&meta.config);
        if meta.config.integrity == pyralog_types::Integrity::Ledger {
            options.ledger_genesis = Some(pyralog_ledger::genesis(id.as_str(), p));
            options.ledger_chain =
                pyralog_ledger::ChainVersion::from_number(meta.config.ledger_chain_version())
                    .map_err(|e| NodeError::DataDir {
                        path: pdir.clone(),
                        detail: format!("log {id}: {e}"),
                    })?;
        }
        let clock = self.clock.clone();
        let files = self.files.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let log = PartitionLog::open_with_files(&pdir, options, clock, files)?;
            log.flush()?;
            Ok(log)
        })
        .await
        .map_err(|e| NodeError::DataDir {
            path: dir.to_path_buf(),
            detail: format!("open task failed: {e}"),
        })?;
        let log = opened.map_err(|source| NodeError::OpenPartition {
            log: id.clone(),
            partition: p,
            source,
        })?;
        let mut epoch = meta.epochs.get(p as usize).copied().unwrap_or(Epoch(1));
        if let Some((e, _)) = log.epochs().last() {
            epoch = epoch.max(*e);
        }
        let mut behind_archive = false;
        let cold = match &self.cold {
            Some(tier) => {
                let cold = tier.partition(id, p).await?;
                if let Some(end) = cold.end_offset().filter(|end| *end > log.end_offset()) {
                    // The archive is ahead of this disk: continue after it, in a newer
                    // epoch than any archived record, so no offset means two records.
                    warn!(log = %id, partition = p, local_end = %log.end_offset(),
                        archived_end = %end, "local log is behind its archive; moving it");
                    log.reset_to(end)
                        .map_err(|source| NodeError::OpenPartition {
                            log: id.clone(),
                            partition: p,
                            source,
                        })?;
                    if self.cluster.is_none() {
                        epoch = epoch.max(Epoch(cold.last_epoch() + 1));
                    } else {
                        // Clustered, only the controller bumps epochs.
                        behind_archive = true;
                    }
                }
                seed_chain_from_archive(&log, &cold).map_err(|source| {
                    NodeError::OpenPartition {
                        log: id.clone(),
                        partition: p,
                        source,
                    }
                })?;
                Some(cold)
            }
            None => None,
        };
        let role = match self.cluster {
            None => Role::Standalone,
            Some(_) => Role::Elsewhere { leader: None },
        };
        let epoch = if self.cluster.is_some() {
            // The reconciler sets the controller's epoch right after.
            Epoch(0)
        } else {
            epoch
        };
        let partition = Partition::new(log, meta.config.fsync, epoch, role, cold);
        partition
            .behind_archive
            .store(behind_archive, std::sync::atomic::Ordering::Release);
        Ok(Arc::new(partition))
    }

    fn log(&self, name: &str) -> Result<Arc<OpenLog>, GatewayError> {
        let id = GatewayError::log_name(name)?;
        self.logs
            .read()
            .get(&id)
            .cloned()
            .ok_or(GatewayError::LogNotFound(id))
    }

    fn partition(&self, name: &str, p: PartitionId) -> Result<Arc<Partition>, GatewayError> {
        let log = self.log(name)?;
        log.partitions
            .get(p as usize)
            .cloned()
            .ok_or(GatewayError::PartitionNotFound {
                log: log.id.clone(),
                partition: p,
                count: log.config.partition_count,
            })
    }

    // ------------------------------------------------------------------ admin

    pub async fn create_log(
        &self,
        name: &str,
        config: LogConfig,
    ) -> Result<LogStatus, GatewayError> {
        let id = GatewayError::log_name(name)?;
        let mut config = config;
        if config.integrity == pyralog_types::Integrity::Ledger {
            // A new ledger keeps the chain definition it starts with (see the field docs).
            config
                .ledger_chain
                .get_or_insert(pyralog_types::config::LEDGER_CHAIN_CURRENT);
        }
        config
            .validate()
            .map_err(|e| GatewayError::InvalidConfig(e.to_string()))?;
        if self.logs.read().contains_key(&id) {
            return Err(GatewayError::LogAlreadyExists(id));
        }
        let meta = self.metadata.create_log(&id, &config).await?;
        // Every partition ready to append, or the creation rolled back (see `node::create`).
        self.finish_create(&id, meta).await?;
        if let Some(cold) = &self.cold {
            // Also registered at every start, so a failure here is repaired by a restart.
            if let Err(e) = cold.register(&id, &config).await {
                warn!(log = %id, error = %e, "could not register the log in the bucket");
            }
        }
        info!(log = %id, partitions = config.partition_count, "created log");
        self.describe_log(name).await
    }

    /// Whether log `name` is a ledger (`integrity = "ledger"`).
    pub fn is_ledger(&self, name: &str) -> Result<bool, GatewayError> {
        Ok(self.log(name)?.config.integrity == pyralog_types::Integrity::Ledger)
    }

    pub async fn delete_log(&self, name: &str) -> Result<(), GatewayError> {
        // Standalone, a growth in progress finishes first (see `add_partitions`).
        let _one_at_a_time = match &self.cluster {
            None => Some(self.growing.lock().await),
            Some(_) => None,
        };
        let log = self.log(name)?;
        self.metadata.delete_log(&log.id).await?;
        if self.cluster.is_some() {
            // Every replica's reconciler removes its own copy; the archive goes once, here.
            self.wait_for_local(&log.id, false).await?;
            if let Some(cold) = &self.cold {
                cold.forget(&log.id, log.config.partition_count).await;
            }
            return Ok(());
        }
        self.remove_local(&log, true).await
    }

    /// Waits (bounded) until the log is open here (`present`) or gone, as the reconciler
    /// applies the controller's decision.
    async fn wait_for_local(&self, id: &LogId, present: bool) -> Result<(), GatewayError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.logs.read().contains_key(id) != present {
            if tokio::time::Instant::now() > deadline {
                return Err(GatewayError::Unavailable(format!(
                    "the controller committed the change to {id}, but this node has not applied it yet"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Closes and removes this node's copy of a log, and with `forget_archive` its archive.
    async fn remove_local(
        &self,
        log: &Arc<OpenLog>,
        forget_archive: bool,
    ) -> Result<(), GatewayError> {
        self.logs.write().remove(&log.id);
        log.give_up_roles();
        log.cancel.cancel();
        let dir = log.dir.clone();
        let parts: Vec<_> = log.partitions.iter().map(|p| p.log().clone()).collect();
        let trash = self.trash.clone();
        // The files go in the background (see `crate::trash`): a big log's removal must not
        // hold up the caller (in a cluster, the reconciler's next change).
        tokio::task::spawn_blocking(move || {
            for p in parts {
                let _ = p.close();
            }
            trash.discard(&dir)
        })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?
        .map_err(|e| GatewayError::Storage(format!("removing {}: {e}", log.dir.display())))?;
        if let (true, Some(cold)) = (forget_archive, &self.cold) {
            cold.forget(&log.id, log.config.partition_count).await;
        }
        info!(log = %log.id, "deleted log");
        Ok(())
    }

    pub async fn roll(&self, name: &str, partitions: &[PartitionId]) -> Result<(), GatewayError> {
        let log = self.log(name)?;
        let targets: Vec<PartitionId> = if partitions.is_empty() {
            (0..log.config.partition_count).collect()
        } else {
            partitions.to_vec()
        };
        for p in targets {
            self.partition(name, p)?.roll().await?;
        }
        Ok(())
    }

    pub fn log_defaults(&self) -> &LogConfig {
        &self.config.log_defaults
    }

    // ------------------------------------------------------------------ lifecycle

    /// Controlled shutdown, before anything stops: in a cluster, hands this node's
    /// leaderships and ISR places to the other in-sync replicas (see
    /// [`Controller::leave`](pyralog_controller::Controller::leave)) and waits until its own
    /// partitions know it, so clients still connected here are redirected to the new leaders
    /// while the listeners drain. Bounded by `cluster.controlled_shutdown_timeout`; a failure
    /// only costs the partitions the lease's wait, so shutdown goes on either way.
    pub async fn hand_off(&self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if !cluster.settings.is_broker() {
            // A controller-only node hosts no partitions: nothing to hand off.
            return;
        }
        let timeout = cluster.settings.controlled_shutdown_timeout;
        if timeout.is_zero() {
            return;
        }
        let started = std::time::Instant::now();
        match cluster.controller.leave(timeout).await {
            Ok(pyralog_controller::Leave::NothingToHandOff) => {
                info!("controlled shutdown: no ISR shared with another live node")
            }
            Ok(pyralog_controller::Leave::HandedOff) => {
                // The reconciler turns every partition here to `Elsewhere` (a fenced node
                // neither leads nor follows), naming the new leader for redirects.
                let rest = timeout.saturating_sub(started.elapsed());
                let settled = async {
                    while !self.leads_or_follows_nothing() {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                };
                match tokio::time::timeout(rest, settled).await {
                    Ok(()) => info!(elapsed = ?started.elapsed(),
                        "controlled shutdown: leaderships and ISR places handed off"),
                    Err(_) => warn!(elapsed = ?started.elapsed(),
                        "controlled shutdown: the controller handed off, but this node's \
                         partitions did not all see it in time; stopping anyway"),
                }
            }
            Err(e) => warn!(error = %e, elapsed = ?started.elapsed(),
                "controlled shutdown could not hand off; stopping anyway (the lease fences \
                 this node)"),
        }
    }

    fn leads_or_follows_nothing(&self) -> bool {
        self.logs.read().values().all(|log| {
            log.partitions
                .iter()
                .all(|p| matches!(p.role().role, Role::Elsewhere { .. }))
        })
    }

    /// The first step of shutdown, taken as soon as the signal arrives (before the gRPC
    /// server drains): background tasks are told to stop, and every partition gives up its
    /// role, so long-lived replication streams end and the server can finish draining.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
        for log in self.logs.read().values() {
            log.give_up_roles();
        }
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Stops background tasks and closes every log cleanly (the next start scans nothing).
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        self.tasks.close();
        self.tasks.wait().await;
        // Each close syncs a few files; with thousands of partitions one after another that
        // is minutes, so a bounded number close at once (their syncs overlap on the disk).
        let closes: Vec<_> = self
            .logs
            .read()
            .values()
            .flat_map(|log| {
                log.partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (log.id.clone(), i, p.log().clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        futures::stream::iter(closes)
            .map(|(id, i, hot)| async move {
                match tokio::task::spawn_blocking(move || hot.close()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(log = %id, partition = i, error = %e, "close failed"),
                    Err(e) => warn!(log = %id, error = %e, "close task failed"),
                }
            })
            .buffer_unordered(CONCURRENT_CLOSES)
            .collect::<()>()
            .await;
        if let Some(cold) = &self.cold {
            cold.stop();
            cold.cache().close().await;
        }
        if let Some(cluster) = &self.cluster {
            cluster.controller.shutdown().await;
        }
        info!("all logs closed cleanly");
    }
}

mod status;
pub use status::{ArchiveStatus, LogStatus, PartitionStatus, TableStatus};
mod background;
mod compaction;
mod corrupt;
mod create;
mod groups;
mod moves;
mod produce;
mod read;
mod replication;
pub use compaction::PartitionCompaction;
pub use corrupt::RepairOutcome;
pub use groups::{
    CommitPosition, CommitSpec, CommittedAt, JoinSpec, PartitionLag, ResetTo,
    DEFAULT_REBALANCE_TIMEOUT, DEFAULT_SESSION_TIMEOUT, DEFAULT_VLSN_HEADER,
};
pub use produce::{PendingProduce, ProducePayload, Produced, ProducerStamp};
pub use read::{FetchForm, FetchSpec, FetchStart, Fetched, PartitionOffsets};
pub(crate) use replication::ReplicationService;

#[cfg(test)]
mod cold_tests;
#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod tests;

/// A ledger log that starts empty where its archive ends (restored from the bucket) continues
/// the archive's chain: its journal is seeded with the last archived object's chain value.
fn seed_chain_from_archive(
    log: &PartitionLog,
    cold: &pyralog_cold_tier::ColdPartition,
) -> Result<(), pyralog_hot_tier::HotError> {
    if !log.is_ledger() || log.chain_end()?.is_some() {
        return Ok(());
    }
    let manifest = cold.manifest();
    match manifest.segments.last().and_then(|s| s.ledger) {
        Some(seal) if cold.end_offset() == Some(log.end_offset()) => {
            log.seed_chain(log.end_offset(), &seal.chain_end)?;
        }
        _ if log.end_offset() > log.start_offset() => {
            // Nothing to compare this copy with until it is cut back to a known head (a
            // follower that restarts below its leader's start adopts the leader's).
            warn!(dir = ?log, start = %log.start_offset(), end = %log.end_offset(),
                "ledger chain unknown for this local copy (its journal is missing and it \
                 does not start at offset 0): its records are not chain-checked until it is \
                 repaired or restored");
        }
        _ => {}
    }
    Ok(())
}
