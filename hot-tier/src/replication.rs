//! A partition leader's replication bookkeeping, as a pure state machine (no I/O, no clock).
//!
//! The leader learns where each follower is from its fetches (a follower fetching from offset
//! `o` holds everything below `o`), and from that decides:
//! - the **high watermark**: the lowest log end offset among the ISR members. The controller
//!   may elect any live ISR member without comparing log ends, so only an offset that every
//!   ISR member holds is safe to show consumers or acknowledge under `Quorum`/`All`. The ISR
//!   is the write quorum; `min_in_sync_replicas` is how small it may get;
//! - **ISR changes** to propose to the controller: a follower leaves the ISR once it has not
//!   been caught up for `replica_lag_max`, and joins again once it holds everything below the
//!   high watermark. One proposal is in flight at a time. While a change is pending the HW is
//!   computed over the larger of the two sets and `min_in_sync_replicas` over the smaller, so
//!   neither a pending growth nor a pending shrink can acknowledge too early.
//!
//! The caller (the gateway) feeds it events and the current time and carries out what it
//! returns; keeping the decisions here lets them be tested exhaustively without processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pyralog_types::{Epoch, LogOffset, NodeId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// A follower that has not been caught up for this long leaves the ISR.
    pub replica_lag_max: Duration,
    /// Writes that wait for the ISR need at least this many members.
    pub min_in_sync_replicas: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("ISR has {isr} member(s), the log needs {min} in sync")]
    NotEnoughReplicas { isr: usize, min: usize },
    #[error("node {0} is not a replica of this partition")]
    NotAReplica(NodeId),
}

#[derive(Debug, Clone, Copy)]
struct Follower {
    /// Everything below it is on the follower.
    end: LogOffset,
    /// When the follower last held everything the leader had (Kafka's lastCaughtUpTime).
    caught_up_at: Instant,
    /// The leader's end at the follower's previous fetch, and when that was.
    prev_fetch: Option<(LogOffset, Instant)>,
}

/// What a fetch or tick changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The new high watermark, if it moved.
    pub high_watermark: Option<LogOffset>,
    /// An ISR to propose to the controller (the caller reports back with
    /// [`LeaderState::isr_committed`] or [`LeaderState::isr_rejected`]).
    pub propose_isr: Option<Vec<NodeId>>,
}

#[derive(Debug, Clone)]
pub struct LeaderState {
    me: NodeId,
    epoch: Epoch,
    replicas: Vec<NodeId>,
    isr: Vec<NodeId>,
    pending: Option<Vec<NodeId>>,
    followers: BTreeMap<NodeId, Follower>,
    end: LogOffset,
    /// The first offset of this leader's epoch: a follower is only caught up once it has it.
    epoch_start: LogOffset,
    hw: LogOffset,
    config: ReplicationConfig,
}

impl LeaderState {
    /// A leader of `epoch` taking over with the log ending at `end`; `hw` is what it knew as a
    /// follower (the HW never moves back).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: NodeId,
        epoch: Epoch,
        replicas: Vec<NodeId>,
        isr: Vec<NodeId>,
        end: LogOffset,
        hw: LogOffset,
        now: Instant,
        config: ReplicationConfig,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                // Followers in the ISR get a full `replica_lag_max` to show up.
                let f = Follower {
                    end: LogOffset::ZERO,
                    caught_up_at: now,
                    prev_fetch: None,
                };
                (*r, f)
            })
            .collect();
        let mut s = LeaderState {
            me,
            epoch,
            replicas,
            isr,
            pending: None,
            followers,
            end,
            epoch_start: end,
            hw: hw.min(end),
            config,
        };
        s.recompute_hw();
        s
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn high_watermark(&self) -> LogOffset {
        self.hw
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[NodeId] {
        &self.isr
    }

    /// Whether a write that waits for the ISR may be accepted now: at least
    /// `min_in_sync_replicas` ISR members (the smaller set while a change is pending) must be
    /// keeping up. A member that has not caught up for `replica_lag_max` counts as gone even
    /// before the controller commits its removal (the controller may be unreachable too), so
    /// the write fails fast instead of waiting for a HW that cannot move.
    pub fn check_in_sync(&self, now: Instant) -> Result<(), ReplicationError> {
        let keeping_up = |r: &NodeId| {
            *r == self.me
                || self.followers.get(r).is_some_and(|f| {
                    let within = |t: Instant| {
                        now.saturating_duration_since(t) <= self.config.replica_lag_max
                    };
                    // Still fetching (followers long-poll, so an idle log is no excuse),
                    // and caught up recently or holding everything.
                    let fetching = within(f.prev_fetch.map_or(f.caught_up_at, |(_, at)| at));
                    fetching && (f.end >= self.end || within(f.caught_up_at))
                })
        };
        let count = self
            .isr
            .iter()
            .filter(|r| self.pending.as_ref().is_none_or(|p| p.contains(r)))
            .filter(|r| keeping_up(r))
            .count();
        if count < self.config.min_in_sync_replicas {
            return Err(ReplicationError::NotEnoughReplicas {
                isr: count,
                min: self.config.min_in_sync_replicas,
            });
        }
        Ok(())
    }

    /// The leader appended; its log now ends at `end`.
    pub fn on_append(&mut self, end: LogOffset) -> Option<LogOffset> {
        self.end = self.end.max(end);
        self.recompute_hw()
    }

    /// `follower` fetched from `offset` at `now`: it holds everything below `offset`. The
    /// caller caps `offset` at the leader's log end. The follower may already hold a batch
    /// whose [`LeaderState::on_append`] has not run yet (it was woken by the append itself),
    /// so `offset` also moves the known end: capping the follower at a stale end would hold
    /// the HW back until the follower's next fetch, a whole long-poll later.
    pub fn on_fetch(
        &mut self,
        follower: NodeId,
        offset: LogOffset,
        now: Instant,
    ) -> Result<Progress, ReplicationError> {
        if !self.followers.contains_key(&follower) {
            return Err(ReplicationError::NotAReplica(follower));
        }
        self.end = self.end.max(offset);
        let leader_end = self.end;
        let f = self
            .followers
            .get_mut(&follower)
            .ok_or(ReplicationError::NotAReplica(follower))?;
        f.end = offset;
        if offset >= leader_end {
            f.caught_up_at = now;
        } else if let Some((prev_end, at)) = f.prev_fetch {
            if offset >= prev_end {
                f.caught_up_at = f.caught_up_at.max(at);
            }
        }
        f.prev_fetch = Some((leader_end, now));
        let f_end = f.end;
        let mut progress = Progress {
            high_watermark: self.recompute_hw(),
            propose_isr: None,
        };
        if self.pending.is_none()
            && !self.isr.contains(&follower)
            && f_end >= self.hw
            && f_end >= self.epoch_start
        {
            let grown = self.ordered(|r| self.isr.contains(&r) || r == follower);
            self.pending = Some(grown.clone());
            progress.propose_isr = Some(grown);
            progress.high_watermark = progress.high_watermark.or(self.recompute_hw());
        }
        Ok(progress)
    }

    /// Periodic check: proposes to drop followers that lagged for `replica_lag_max`.
    pub fn tick(&mut self, now: Instant) -> Progress {
        if self.pending.is_some() {
            return Progress::default();
        }
        let lagging: Vec<NodeId> = self
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.me)
            .filter(|r| {
                self.followers.get(r).is_some_and(|f| {
                    f.end < self.end
                        && now.saturating_duration_since(f.caught_up_at)
                            > self.config.replica_lag_max
                })
            })
            .collect();
        if lagging.is_empty() {
            return Progress::default();
        }
        let shrunk = self.ordered(|r| self.isr.contains(&r) && !lagging.contains(&r));
        self.pending = Some(shrunk.clone());
        Progress {
            high_watermark: self.recompute_hw(),
            propose_isr: Some(shrunk),
        }
    }

    /// The controller committed `isr` for this epoch.
    pub fn isr_committed(&mut self, isr: Vec<NodeId>) -> Option<LogOffset> {
        self.isr = isr;
        self.pending = None;
        self.recompute_hw()
    }

    /// The controller changed the replica set in this epoch (a reassignment started or
    /// finished, the leader staying): new replicas are followed from offset 0 (they must
    /// catch up before they join the ISR), removed ones are forgotten, and `isr` is the
    /// committed ISR. A proposal in flight stays pending (and counted in the HW) while all
    /// its members are still replicas and it is not what committed: it may still commit, and
    /// forgetting it would let the HW pass a member it adds.
    pub fn replicas_changed(
        &mut self,
        replicas: Vec<NodeId>,
        isr: Vec<NodeId>,
        now: Instant,
    ) -> Option<LogOffset> {
        self.followers
            .retain(|id, _| replicas.contains(id) && *id != self.me);
        for r in &replicas {
            if *r != self.me && !self.followers.contains_key(r) {
                self.followers.insert(
                    *r,
                    Follower {
                        end: LogOffset::ZERO,
                        caught_up_at: now,
                        prev_fetch: None,
                    },
                );
            }
        }
        self.pending = self
            .pending
            .take()
            .filter(|p| *p != isr && p.iter().all(|r| replicas.contains(r)));
        self.replicas = replicas;
        self.isr = isr;
        self.recompute_hw()
    }

    /// The ISR change proposed and not yet answered, if any.
    pub fn pending(&self) -> Option<&[NodeId]> {
        self.pending.as_deref()
    }

    /// The replica set this leader works with.
    pub fn replicas(&self) -> &[NodeId] {
        &self.replicas
    }

    /// The controller refused the proposal (stale epoch or a concurrent change).
    pub fn isr_rejected(&mut self) -> Option<LogOffset> {
        self.pending = None;
        self.recompute_hw()
    }

    fn ordered(&self, keep: impl Fn(NodeId) -> bool) -> Vec<NodeId> {
        self.replicas.iter().copied().filter(|r| keep(*r)).collect()
    }

    /// HW = the lowest end among the ISR (and a pending growth's new member); never moves
    /// back. Returns the new HW if it moved.
    fn recompute_hw(&mut self) -> Option<LogOffset> {
        let members = self
            .isr
            .iter()
            .chain(self.pending.iter().flatten())
            .copied();
        let mut low = self.end;
        for m in members {
            if m == self.me {
                continue;
            }
            let end = self.followers.get(&m).map_or(LogOffset::ZERO, |f| f.end);
            low = low.min(end);
        }
        (low > self.hw).then(|| {
            self.hw = low;
            low
        })
    }
}

#[cfg(test)]
mod tests;
