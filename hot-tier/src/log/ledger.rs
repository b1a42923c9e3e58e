//! The ledger side of a partition log: its chain journal kept in step with the data.
//!
//! Only a ledger log ([`PartitionOptions::ledger_genesis`]) has a journal (see
//! [`crate::chain`]). Every change of the log's range changes the journal under the same
//! append lock: appends add an entry per batch, truncation cuts entries past the new end and
//! recomputes up to it, a reset forgets the chain until it is seeded again, and deleting
//! segments from the start prunes entries below the new start.

use pyralog_ledger::{to_hex, Hash};
use pyralog_types::batch::{split_batches, Batch};
use pyralog_types::{Epoch, LogOffset};

use super::{PartitionLog, PartitionOptions};
use crate::chain::{chain_batch, ChainJournal};
use crate::error::HotError;

/// The first batch whose recomputed chain head differs from the journal's
/// ([`PartitionLog::verify_chain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainMismatch {
    /// The batch's first offset: the damage is in `[offset, end)`.
    pub offset: LogOffset,
    /// The batch's end offset.
    pub end: LogOffset,
    pub detail: String,
}

/// Bytes read at a time when the journal is recomputed from the data.
const CATCH_UP_READ: usize = 1 << 20;

impl PartitionLog {
    /// Opens the journal of a ledger log and recomputes what it misses up to the log end.
    pub(super) fn open_chain(&self, options: &PartitionOptions) -> Result<(), HotError> {
        let Some(genesis) = options.ledger_genesis else {
            return Ok(());
        };
        let mut journal = ChainJournal::open(
            &self.dir,
            genesis,
            self.start_offset().0,
            self.end_offset().0,
        )?;
        self.chain_catch_up(&mut journal)?;
        *self.chain.lock() = Some(journal);
        Ok(())
    }

    /// Chains the batches between the journal's end and the log end (after a crash cut the
    /// journal's unsynced tail, or a truncation cut it below the new end).
    pub(super) fn chain_catch_up(&self, journal: &mut ChainJournal) -> Result<(), HotError> {
        while let Some((mut at, _)) = journal.end() {
            if at >= self.end_offset().0 || at < self.start_offset().0 {
                return Ok(());
            }
            let read = self.read(LogOffset(at), CATCH_UP_READ, LogOffset::MAX)?;
            if read.batches.is_empty() {
                return Ok(());
            }
            for batch in split_batches(read.batches) {
                let batch = batch?;
                let h = batch.header();
                if h.base_offset != at {
                    // The journal's last entry is not a batch boundary of this log (entries of
                    // another history): cut back to the batch and recompute from there.
                    tracing::warn!(dir = %self.dir.display(), journal_end = at,
                        batch = h.base_offset,
                        "the chain journal does not end at a batch boundary; recomputing it");
                    journal.truncate(h.base_offset.min(at.saturating_sub(1)))?;
                    break;
                }
                journal.append(&batch, h.base_offset, Epoch(h.epoch))?;
                at = journal.end().map_or(at, |e| e.0);
            }
        }
        Ok(())
    }

    /// Chains a batch about to be appended at `base` under `epoch` (call with the append lock
    /// held). Returns the journal entry to take back if the append then fails.
    pub(super) fn chain_append(
        &self,
        batch: &Batch,
        base: u64,
        epoch: Epoch,
    ) -> Result<Option<u64>, HotError> {
        match self.chain.lock().as_mut() {
            Some(journal) => journal.append(batch, base, epoch),
            None => Ok(None),
        }
    }

    pub(super) fn chain_undo(&self, entry: Option<u64>) {
        if let (Some(i), Some(journal)) = (entry, self.chain.lock().as_mut()) {
            if let Err(e) = journal.undo(i) {
                tracing::warn!(dir = %self.dir.display(), error = %e,
                    "could not take back a chain entry; it is cut at the next open");
            }
        }
    }

    /// After the log was cut at its new end: the journal follows.
    pub(super) fn chain_truncated(&self) -> Result<(), HotError> {
        let mut chain = self.chain.lock();
        if let Some(journal) = chain.as_mut() {
            let end = self.end_offset().0;
            if end <= self.start_offset().0 && journal.head_at(end)?.is_none() {
                journal.clear()?;
            } else {
                journal.truncate(end)?;
                self.chain_catch_up(journal)?;
            }
        }
        Ok(())
    }

    /// After the log restarted empty at a new offset: the chain is unknown until seeded.
    pub(super) fn chain_reset(&self) -> Result<(), HotError> {
        match self.chain.lock().as_mut() {
            Some(journal) => journal.clear(),
            None => Ok(()),
        }
    }

    /// After segments were deleted from the start.
    pub(super) fn chain_pruned(&self) -> Result<(), HotError> {
        match self.chain.lock().as_mut() {
            Some(journal) => journal.prune_below(self.start_offset().0),
            None => Ok(()),
        }
    }

    pub(super) fn chain_sync(&self) -> Result<(), HotError> {
        match self.chain.lock().as_ref() {
            Some(journal) => journal.sync(),
            None => Ok(()),
        }
    }

    /// Whether this log keeps a chain (it is a ledger). Takes no lock.
    pub fn is_ledger(&self) -> bool {
        self.options.ledger_genesis.is_some()
    }

    /// The chain head after every record below `offset`, if `offset` is a batch boundary
    /// the journal holds (`None` also for a log that is not a ledger).
    pub fn chain_head_at(&self, offset: LogOffset) -> Result<Option<Hash>, HotError> {
        match self.chain.lock().as_ref() {
            Some(journal) => journal.head_at(offset.0),
            None => Ok(None),
        }
    }

    /// Where the chain ends: the log end and the head there, if known.
    pub fn chain_end(&self) -> Option<(LogOffset, Hash)> {
        let chain = self.chain.lock();
        chain.as_ref()?.end().map(|(o, h)| (LogOffset(o), h))
    }

    /// Starts the unknown chain of an empty log at its end with `head`: a follower adopting
    /// its leader's head, a log restored from the archive adopting the archive's. Returns
    /// `false` (and changes nothing) if the chain is known or the log is not empty there.
    pub fn seed_chain(&self, offset: LogOffset, head: &Hash) -> Result<bool, HotError> {
        let _appends = self.inner.lock();
        if offset != self.end_offset() || offset != self.start_offset() {
            return Ok(false);
        }
        match self.chain.lock().as_mut() {
            Some(journal) if journal.end().is_none() => journal.seed(offset.0, head),
            _ => Ok(false),
        }
    }

    /// Recomputes the chain over `[from, to)` from the journal's head at `from` and compares
    /// it with the journal at every batch: the first batch that differs (its data changed
    /// after it was written, or the journal did), or `None` if all agree. Errors if the
    /// journal does not hold `from`.
    pub fn verify_chain(
        &self,
        from: LogOffset,
        to: LogOffset,
    ) -> Result<Option<ChainMismatch>, HotError> {
        // The journal is locked only while it is read, never while the data is: appends go on.
        let start = match self.chain.lock().as_ref() {
            Some(journal) => journal.head_at(from.0)?,
            None => return Ok(None),
        };
        let Some(mut head) = start else {
            return Err(HotError::Corrupt {
                path: self.dir.join(crate::chain::CHAIN_FILE),
                position: from.0,
                detail: format!("the chain journal has no head at offset {from}"),
            });
        };
        // The claims are read in step with the data, a chunk of each at a time.
        let mut at = from.0;
        let mut found = None;
        while at < to.0 && found.is_none() {
            let read = self.read(LogOffset(at), CATCH_UP_READ, to)?;
            if read.batches.is_empty() {
                break;
            }
            let mut computed = Vec::new();
            for batch in split_batches(read.batches) {
                let batch = batch?;
                let h = batch.header();
                let (end, next) = chain_batch(head, &batch, h.base_offset, Epoch(h.epoch))?;
                computed.push((h.base_offset, end, next));
                head = next;
            }
            let (first_end, last_end) = match (computed.first(), computed.last()) {
                (Some(f), Some(l)) => (f.1, l.1),
                _ => break,
            };
            let mut claims = Vec::with_capacity(computed.len());
            if let Some(journal) = self.chain.lock().as_ref() {
                journal.for_each_entry(first_end, last_end, |end, claim| {
                    claims.push((end, claim));
                    Ok(true)
                })?;
            }
            let mut claims = claims.into_iter().peekable();
            for (base, end, next) in computed {
                let claim = loop {
                    match claims.peek() {
                        Some((e, _)) if *e < end => {
                            claims.next();
                        }
                        Some((e, c)) if *e == end => break Some(*c),
                        _ => break None,
                    }
                };
                if claim != Some(next) {
                    found = Some(ChainMismatch {
                        offset: LogOffset(base),
                        end: LogOffset(end),
                        detail: match claim {
                            Some(c) => format!(
                                "ledger chain mismatch in the batch at offsets {base}..{end}: \
                                 the records hash to {}, the journal says {}",
                                to_hex(&next),
                                to_hex(&c)
                            ),
                            None => format!(
                                "ledger chain: the journal has no head after the batch at \
                                 offsets {base}..{end}"
                            ),
                        },
                    });
                    break;
                }
                at = end;
            }
        }
        Ok(found)
    }
}
