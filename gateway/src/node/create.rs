//! Creating a log: answered only once it can be written, or undone.
//!
//! Why: committing `CreateLog` in the controller is not the same as having a log. Each
//! partition's leader must open its directory and take leadership (the reconciler does it as
//! it applies the state), which takes time and can fail (a full disk, a directory in the way).
//! A creation answered before that sends the first produce to a leader that is not ready
//! (`NOT_LEADER` "no leader known"); one that failed half-way left a log the controller knows
//! and no node serves. So [`Node::finish_create`] waits, within a bound, until every
//! partition's leader answers as leader of the current epoch, and otherwise rolls the creation
//! back: the log is deleted again through the same metadata store (a controller command, so
//! the rollback survives restarts) and the caller gets `UNAVAILABLE` to retry.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pyralog_proto::internal::replication_client::ReplicationClient;
use pyralog_proto::internal::EpochEndOffsetRequest;
use pyralog_types::{Epoch, LogId};
use tracing::{info, warn};

use super::{logs_dir, Node};
use crate::cluster::Cluster;
use crate::error::GatewayError;
use crate::metadata::LogMeta;
use crate::partition::Role;
use crate::server::MAX_MESSAGE_BYTES;

/// How long a creation may take before it is rolled back: a base for the controller round
/// trips plus time per partition for opening its files and taking leadership.
pub(crate) fn create_timeout(partitions: u32) -> Duration {
    Duration::from_secs(20) + Duration::from_millis(10) * partitions
}

/// How many partitions' leaders are asked at once whether they are ready.
const READY_PROBES: usize = 32;

impl Node {
    /// After the metadata store accepted a new log: returns once every partition can take
    /// appends, or rolls the creation back and says why (always retriable).
    pub(super) async fn finish_create(
        &self,
        id: &LogId,
        meta: LogMeta,
    ) -> Result<(), GatewayError> {
        let partitions = meta.config.partition_count;
        let timeout = create_timeout(partitions);
        let ready = match &self.cluster {
            None => self.open_created(id, meta).await,
            Some(cluster) => {
                match tokio::time::timeout(timeout, self.wait_leaders_ready(cluster, id)).await {
                    Ok(ready) => ready,
                    Err(_) => Err(GatewayError::Unavailable(format!(
                        "not every partition had a leader ready to append within {timeout:?}"
                    ))),
                }
            }
        };
        let Err(why) = ready else {
            return Ok(());
        };
        warn!(log = %id, error = %why, "creating the log failed; rolling it back");
        self.roll_back_create(id).await;
        Err(GatewayError::Unavailable(format!(
            "log {id} could not be created and was rolled back ({why}); retry"
        )))
    }

    /// Standalone: opens the new log here.
    async fn open_created(&self, id: &LogId, meta: LogMeta) -> Result<(), GatewayError> {
        let open = self
            .open_log(id.clone(), meta, 0)
            .await
            .map_err(|e| GatewayError::Storage(e.to_string()))?;
        self.logs.write().insert(id.clone(), open);
        Ok(())
    }

    /// Cluster: waits until each partition's leader (as the applied state names it) is the
    /// leader of the partition's current epoch, asking the others over the cluster listener.
    async fn wait_leaders_ready(
        &self,
        cluster: &Arc<Cluster>,
        id: &LogId,
    ) -> Result<(), GatewayError> {
        let mut pending: Vec<u32> = Vec::new();
        let mut first = true;
        loop {
            let state = cluster.state();
            let Some(meta) = state.logs.get(id) else {
                return Err(GatewayError::LogNotFound(id.clone()));
            };
            if first {
                pending = (0..meta.config.partition_count).collect();
                first = false;
            }
            let failed = self
                .open_failures
                .lock()
                .get(id)
                .filter(|(incarnation, _)| *incarnation == meta.incarnation)
                .map(|(_, why)| why.clone());
            if let Some(why) = failed {
                return Err(GatewayError::Storage(why));
            }
            let local = self.logs.read().get(id).cloned();
            let state: &pyralog_controller::ClusterState = &state;
            let probes: Vec<_> = pending
                .iter()
                .copied()
                .map(|p| {
                    let pm = meta.partitions.get(p as usize).cloned();
                    let local = local.clone();
                    let incarnation = meta.incarnation;
                    async move {
                        // This node must know the partition's current epoch too, to serve it or
                        // send the client to its leader.
                        let here = local
                            .filter(|o| o.incarnation == incarnation)
                            .and_then(|o| o.partitions.get(p as usize).cloned());
                        let ready = match (pm, here) {
                            (Some(pm), Some(here)) if here.role().epoch == pm.epoch => {
                                match pm.leader {
                                    None => false,
                                    Some(l) if l == cluster.me => {
                                        matches!(here.role().role, Role::Leader(_))
                                    }
                                    Some(l) => match cluster.cluster_address(state, l) {
                                        Some(address) => {
                                            leader_ready(cluster, l, &address, id, p, pm.epoch)
                                                .await
                                        }
                                        None => false,
                                    },
                                }
                            }
                            _ => false,
                        };
                        (p, ready)
                    }
                })
                .collect();
            let answers: Vec<(u32, bool)> = futures::stream::iter(probes)
                .buffer_unordered(READY_PROBES)
                .collect()
                .await;
            pending = answers
                .into_iter()
                .filter(|(_, ready)| !ready)
                .map(|(p, _)| p)
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Raises log `name` to `partition_count` partitions and answers once every partition,
    /// old and new, has a leader ready to append. A partition count only grows: fewer is
    /// refused, the same count is a no-op (a retry after a lost answer). Groups consuming the
    /// log rebalance in the same controller command; keyed records hash over the new count
    /// from then on.
    pub async fn add_partitions(
        &self,
        name: &str,
        partition_count: u32,
    ) -> Result<super::LogStatus, GatewayError> {
        let log = self.log(name)?;
        let have = log.config.partition_count;
        if partition_count < have {
            return Err(GatewayError::InvalidConfig(format!(
                "log {name} has {have} partitions; a partition count can only grow"
            )));
        }
        let mut config = log.config.clone();
        config.partition_count = partition_count;
        config
            .validate()
            .map_err(|e| GatewayError::InvalidConfig(e.to_string()))?;
        // Standalone, growth and deletion take turns (a deletion between the metadata write
        // and the swap below would otherwise be undone by the swap).
        let _one_at_a_time = match &self.cluster {
            None => Some(self.growing.lock().await),
            Some(_) => None,
        };
        let meta = self
            .metadata
            .add_partitions(&log.id, partition_count)
            .await?;
        match &self.cluster {
            None => {
                let current = self.log(name)?;
                if current.partitions.len() < partition_count as usize {
                    let grown = self
                        .grow_log(&current, meta)
                        .await
                        .map_err(|e| GatewayError::Storage(e.to_string()))?;
                    self.logs.write().insert(log.id.clone(), grown);
                }
            }
            Some(cluster) => {
                let timeout = create_timeout(partition_count);
                let grown = async {
                    let mut states = cluster.controller.state();
                    let id = log.id.clone();
                    let _ = states
                        .wait_for(|s| {
                            s.logs
                                .get(&id)
                                .is_none_or(|l| l.partitions.len() >= partition_count as usize)
                        })
                        .await;
                    self.wait_leaders_ready(cluster, &log.id).await
                };
                match tokio::time::timeout(timeout, grown).await {
                    Ok(ready) => ready?,
                    Err(_) => {
                        return Err(GatewayError::Unavailable(format!(
                            "log {name} has {partition_count} partitions now, but not every \
                             leader was ready to append within {timeout:?}; ask again with the \
                             same count to wait for them"
                        )))
                    }
                }
            }
        }
        if let Some(cold) = &self.cold {
            if let Err(e) = cold.register(&log.id, &config).await {
                warn!(log = %log.id, error = %e, "could not register the log in the bucket");
            }
        }
        info!(log = %log.id, from = have, to = partition_count, "partitions added");
        self.describe_log(name).await
    }

    /// Deletes a log whose creation failed, here and in the metadata store. Best effort:
    /// failures are logged (a later delete or a restart's orphan cleanup finishes the job).
    async fn roll_back_create(&self, id: &LogId) {
        match self.metadata.delete_log(id).await {
            Ok(()) => info!(log = %id, "rolled back a failed creation"),
            Err(e) => warn!(log = %id, error = %e, "could not roll back a failed creation"),
        }
        if self.cluster.is_some() {
            // The reconciler closes and removes this node's copy, if it opened one.
            if let Err(e) = self.wait_for_local(id, false).await {
                warn!(log = %id, error = %e, "the rolled-back log is still open here");
            }
        } else {
            let open = self.logs.read().get(id).cloned();
            match open {
                Some(log) => {
                    if let Err(e) = self.remove_local(&log, false).await {
                        warn!(log = %id, error = %e, "could not remove a rolled-back log");
                    }
                }
                None => remove_fresh_dir(&logs_dir(&self.config.data_dir).join(id.as_str())),
            }
        }
    }
}

/// Whether node `leader` answers as leader of partition `p` in `epoch` (its answer to
/// `EpochEndOffset`, which only the current epoch's leader gives).
async fn leader_ready(
    cluster: &Arc<Cluster>,
    leader: u64,
    address: &str,
    log: &LogId,
    p: u32,
    epoch: Epoch,
) -> bool {
    let Ok(channel) = cluster.channel(leader, address) else {
        return false;
    };
    let mut rpc = ReplicationClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let request = EpochEndOffsetRequest {
        log: log.to_string(),
        partition: p,
        replica_id: cluster.me,
        leader_epoch: epoch.0,
        epoch: epoch.0,
    };
    rpc.epoch_end_offset(request).await.is_ok()
}

/// Removes the directory a failed open of a new log left behind (only directories: a file in
/// the way is the operator's, and stays).
pub(super) fn remove_fresh_dir(dir: &std::path::Path) {
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    if is_dir {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            warn!(dir = %dir.display(), error = %e, "could not remove a failed log's directory");
        }
    }
}
