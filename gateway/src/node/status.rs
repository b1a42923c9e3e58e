//! What `ListLogs` and `DescribeLog` report: each partition's offsets, replicas, local
//! segments and archive, and the log's Iceberg table.

use pyralog_types::{Epoch, LogConfig, LogId, LogOffset, NodeId, PartitionId};
use tracing::warn;

use super::{Node, OpenLog};
use crate::error::GatewayError;
use crate::partition::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    pub partition: PartitionId,
    pub start_offset: LogOffset,
    pub high_watermark: LogOffset,
    pub epoch: Epoch,
    pub local_bytes: u64,
    pub local_segments: u32,
    /// The leader's node id and address, if it has one.
    pub leader: Option<(NodeId, String)>,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// A reassignment's target replica set, while it runs (empty otherwise).
    pub target: Vec<NodeId>,
    /// This node's role: "leader", "follower" or "none".
    pub role: &'static str,
    /// A damaged local segment the archiver stopped at, until it reads again.
    pub corrupt: Option<pyralog_compactor::CorruptSegment>,
    /// The partition's archive as this node's copy of its manifest has it (`None`: no cold
    /// tier).
    pub archive: Option<ArchiveStatus>,
}

/// One partition's archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveStatus {
    /// First archived offset and one past the last ("archived through"); `None`: nothing
    /// archived yet.
    pub start: Option<LogOffset>,
    pub end: Option<LogOffset>,
    pub bytes: u64,
    pub objects: u32,
    pub manifest_version: u64,
    /// When that manifest version was committed.
    pub committed_at: Option<pyralog_types::TimestampMicros>,
    /// Whether the log's Iceberg table reflects this manifest version (known only to
    /// `describe_log`, which reads the table).
    pub in_table: Option<bool>,
}

/// A log's Iceberg table, as `describe_log` finds it in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStatus {
    /// URI of the current metadata file.
    pub metadata_location: String,
    pub snapshot_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogStatus {
    pub log: LogId,
    pub config: LogConfig,
    pub partitions: Vec<PartitionStatus>,
    /// The log's Iceberg table (`describe_log` only; `None` when there is none yet).
    pub table: Option<TableStatus>,
}

impl Node {
    pub async fn list_logs(&self) -> Vec<LogStatus> {
        let mut logs: Vec<_> = self.logs.read().values().cloned().collect();
        logs.sort_by(|a, b| a.id.cmp(&b.id));
        logs.iter().map(|l| self.status_of(l)).collect()
    }

    /// The log's state as this node sees it, with its archive and, when the cold tier
    /// publishes tables, its Iceberg table (read from the bucket; a table that cannot be read
    /// is logged and left out).
    pub async fn describe_log(&self, name: &str) -> Result<LogStatus, GatewayError> {
        let log = self.log(name)?;
        let mut status = self.status_of(&log);
        let Some(lakehouse) = self.cold.as_ref().and_then(|c| c.lakehouse()) else {
            return Ok(status);
        };
        match lakehouse.tables.load(&log.id).await {
            Ok(Some(table)) => {
                let snapshot = table.metadata.current_snapshot();
                let versions = snapshot.map(|s| s.manifest_versions()).unwrap_or_default();
                for p in &mut status.partitions {
                    if let Some(a) = &mut p.archive {
                        let published = versions.get(&p.partition).copied().unwrap_or(0);
                        a.in_table = Some(published >= a.manifest_version);
                    }
                }
                status.table = Some(TableStatus {
                    metadata_location: table.location,
                    snapshot_id: snapshot.map(|s| s.snapshot_id),
                });
            }
            Ok(None) => {}
            Err(e) => warn!(log = %log.id, error = %e, "could not read the log's Iceberg table"),
        }
        Ok(status)
    }

    fn status_of(&self, log: &OpenLog) -> LogStatus {
        let state = self.cluster.as_ref().map(|c| c.state());
        let meta = state.as_ref().and_then(|s| s.logs.get(&log.id));
        LogStatus {
            log: log.id.clone(),
            config: log.config.clone(),
            partitions: log
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let segs = p.log().segments();
                    let role = match p.role().role {
                        Role::Standalone | Role::Leader(_) => "leader",
                        Role::Follower { .. } => "follower",
                        Role::Elsewhere { .. } => "none",
                    };
                    let (leader, replicas, isr, target) =
                        match (&state, meta.and_then(|m| m.partitions.get(i))) {
                            (Some(s), Some(pm)) => (
                                pm.leader
                                    .and_then(|l| s.address(l).map(|a| (l, a.to_owned()))),
                                pm.replicas.clone(),
                                pm.isr.clone(),
                                pm.target.clone().unwrap_or_default(),
                            ),
                            _ => {
                                let me = self.config.node_id;
                                (
                                    Some((me, self.config.listen.to_string())),
                                    vec![me],
                                    vec![me],
                                    Vec::new(),
                                )
                            }
                        };
                    PartitionStatus {
                        partition: i as PartitionId,
                        start_offset: p.earliest(),
                        high_watermark: p.high_watermark(),
                        epoch: p.epoch(),
                        local_bytes: segs.iter().map(|s| s.size_bytes).sum(),
                        local_segments: segs.len() as u32,
                        leader,
                        replicas,
                        isr,
                        target,
                        role,
                        corrupt: p.corrupt.lock().as_ref().map(|c| c.segment.clone()),
                        archive: p.cold().map(|c| archive_status(&c.manifest())),
                    }
                })
                .collect(),
            table: None,
        }
    }
}

fn archive_status(m: &pyralog_cold_tier::Manifest) -> ArchiveStatus {
    ArchiveStatus {
        start: m.start_offset(),
        end: m.end_offset(),
        bytes: m.segments.iter().map(|s| s.size_bytes).sum(),
        objects: m.segments.len() as u32,
        manifest_version: m.version,
        committed_at: m.committed_at,
        in_table: None,
    }
}
