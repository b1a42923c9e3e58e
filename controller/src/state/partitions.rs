//! Growing a log: more partitions, never fewer.
//!
//! Lowering a partition count would drop records and break every key's routing at once, so
//! it is refused; raising it only changes where new keyed records go (a key hashes to
//! `hash % partition_count`), which the README states. The new partitions are placed the way
//! a new log's are, over the nodes live at that moment.

use pyralog_types::config::limits::MAX_PARTITIONS;
use pyralog_types::LogId;

use super::{ClusterState, CommandResult, Rejection};

impl ClusterState {
    pub(super) fn add_partitions(&mut self, log: &LogId, count: u32) -> CommandResult {
        let Some(meta) = self.logs.get(log) else {
            return CommandResult::Rejected(Rejection::LogNotFound(log.clone()));
        };
        let have = meta.partitions.len() as u32;
        if count == have {
            return CommandResult::Done;
        }
        if count < have {
            return CommandResult::Rejected(Rejection::Invalid(format!(
                "log {log} has {have} partitions; a partition count can only grow"
            )));
        }
        if count > MAX_PARTITIONS {
            return CommandResult::Rejected(Rejection::Invalid(format!(
                "partition_count must be at most {MAX_PARTITIONS}, got {count}"
            )));
        }
        let rf = usize::from(meta.config.replication_factor.max(1));
        let live = self.placeable_nodes().len();
        if live < rf {
            return CommandResult::Rejected(Rejection::NotEnoughNodes {
                needed: meta.config.replication_factor.max(1),
                available: live,
            });
        }
        let added = self.place(count - have, rf);
        if let Some(meta) = self.logs.get_mut(log) {
            meta.partitions.extend(added);
            meta.config.partition_count = count;
        }
        CommandResult::Done
    }
}
