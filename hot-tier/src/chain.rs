//! The ledger chain journal: the hash-chain head after every batch of a ledger partition.
//!
//! A ledger log (`integrity = "ledger"`) chains its records as they are written, not only when they
//! are archived: the leader computes the chain head after each batch from the batch as stored
//! (offsets and epoch assigned under the append lock; the hashing itself runs after the lock is
//! released, before the append returns, see `log::ledger`), and a follower computes its own over
//! what it copies and compares it with the leader's (see the gateway's replication).
//! The heads are kept in `ledger.chain` beside the segments, one fixed-size entry per batch:
//!
//! ```text
//! end offset u64 BE ‖ chain head after every record below it (32 bytes)
//! ```
//!
//! The first entry may be a seed: the head at the partition's first local offset (the
//! genesis hash at offset 0, or the head a follower adopted from its leader, or the archive's
//! last chain value after a restore). Entries are strictly increasing in their end offset, so
//! the head at any batch boundary is a binary search away (positional reads, nothing held in
//! memory but the last entry).
//!
//! Why a journal of its own: the chain is the replica's claim of what it wrote. The archiver
//! recomputes the chain of each segment it archives and compares it with this claim, so a record
//! altered on disk after it was written (even with its batch CRC recomputed) is caught before it
//! reaches the bucket, at the batch that changed. The chain is computed from the in-memory bytes
//! that were written, never from the file, so the claim predates anything done to the disk
//! afterwards. The journal is written just after the batch and not fsynced on its own (an entry
//! ahead of the data, as a journal of an older version could hold, is cut on open): after a crash
//! its tail is recomputed from the data the recovery scan kept, which is also what a replica trusts
//! after a crash (the batch CRCs). An attacker who rewrites both a segment and the journal
//! consistently is caught by the replicas (followers compare heads with their leader) and by the
//! signed checkpoints once the data is archived; README "Ledgers" says which threat each layer
//! covers.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pyralog_ledger::{ChainVersion, Hash, RecordHasher};
use pyralog_types::batch::Batch;
use pyralog_types::{Epoch, LogOffset};

use crate::epochs::sync_dir;
use crate::error::HotError;
use crate::segment::io_err;

/// The journal's file name in a partition directory.
pub(crate) const CHAIN_FILE: &str = "ledger.chain";
const ENTRY: u64 = 40;

/// One partition's chain journal (see the module docs).
pub(crate) struct ChainJournal {
    path: PathBuf,
    file: File,
    /// Entries in the file.
    count: u64,
    /// The last entry: `(end offset, head)`; `None` while the chain is unknown (a log that
    /// starts past offset 0 with no journal yet, until it is seeded).
    last: Option<(u64, Hash)>,
    /// The log's chain definition.
    version: ChainVersion,
    /// Scratch space for entries written at once.
    buf: Vec<u8>,
}

impl std::fmt::Debug for ChainJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainJournal")
            .field("path", &self.path)
            .field("count", &self.count)
            .field("end", &self.last.map(|l| l.0))
            .finish()
    }
}

fn decode(entry: &[u8]) -> (u64, Hash) {
    let mut end = [0u8; 8];
    end.copy_from_slice(&entry[..8]);
    let mut head = [0u8; 32];
    head.copy_from_slice(&entry[8..40]);
    (u64::from_be_bytes(end), head)
}

fn encode(end: u64, head: &Hash, out: &mut Vec<u8>) {
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(head);
}

impl ChainJournal {
    /// Opens (or creates) the journal of the log in `dir`, whose records span `[start, end)`.
    /// Entries past `end` (written before a batch that never reached the disk) and a torn or
    /// out-of-order tail are cut. A journal with no entry is seeded with `genesis` when the
    /// log starts at 0; otherwise the chain stays unknown until [`ChainJournal::seed`]. The
    /// caller then recomputes what the journal misses up to `end` ([`ChainJournal::end`]).
    /// Batches are chained with the step of `version`.
    pub(crate) fn open(
        dir: &Path,
        genesis: Hash,
        version: ChainVersion,
        start: u64,
        end: u64,
    ) -> Result<Self, HotError> {
        let path = dir.join(CHAIN_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let len = file.metadata().map_err(io_err("stat", &path))?.len();
        let mut journal = ChainJournal {
            path,
            file,
            count: len / ENTRY,
            last: None,
            version,
            buf: Vec::with_capacity(ENTRY as usize),
        };
        // Keep the longest prefix of increasing entries that ends at or below `end`.
        let mut keep = 0;
        let mut prev: Option<u64> = None;
        let mut last = None;
        while keep < journal.count {
            let (e, head) = journal.entry(keep)?;
            if e > end || prev.is_some_and(|p| e <= p) {
                break;
            }
            prev = Some(e);
            last = Some((e, head));
            keep += 1;
        }
        if keep * ENTRY != len {
            journal.cut(keep)?;
        }
        journal.last = last;
        if journal.last.is_none() && start == 0 {
            journal.push(0, &genesis)?;
        }
        Ok(journal)
    }

    fn entry(&self, i: u64) -> Result<(u64, Hash), HotError> {
        let mut b = [0u8; ENTRY as usize];
        self.file
            .read_exact_at(&mut b, i * ENTRY)
            .map_err(io_err("read", &self.path))?;
        Ok(decode(&b))
    }

    /// Keeps the first `count` entries. Synced: entries of a history the log no longer holds
    /// (a truncated tail, a batch that failed to append) must not come back after a crash
    /// beside the new entries written after them.
    fn cut(&mut self, count: u64) -> Result<(), HotError> {
        self.file
            .set_len(count * ENTRY)
            .map_err(io_err("truncate", &self.path))?;
        self.file.sync_data().map_err(io_err("fsync", &self.path))?;
        self.count = count;
        self.last = match count {
            0 => None,
            n => Some(self.entry(n - 1)?),
        };
        Ok(())
    }

    /// Where the journal ends: `(offset, head)` after its last entry, `None` if unknown.
    pub(crate) fn end(&self) -> Option<(u64, Hash)> {
        self.last
    }

    /// Appends an entry (the head after every record below `end`).
    fn push(&mut self, end: u64, head: &Hash) -> Result<(), HotError> {
        self.buf.clear();
        encode(end, head, &mut self.buf);
        self.file
            .write_all_at(&self.buf, self.count * ENTRY)
            .map_err(io_err("append", &self.path))?;
        self.count += 1;
        self.last = Some((end, *head));
        Ok(())
    }

    /// Chains `batch` (its stored bytes: final offsets, `epoch`) onto the head and writes the
    /// entry. Does nothing while the chain is unknown.
    pub(crate) fn append(
        &mut self,
        batch: &Batch,
        base: u64,
        epoch: Epoch,
    ) -> Result<(), HotError> {
        let Some((end, head)) = self.last else {
            return Ok(());
        };
        if end != base {
            return Err(HotError::Corrupt {
                path: self.path.clone(),
                position: end,
                detail: format!(
                    "the chain journal ends at offset {end}, the batch starts at {base}"
                ),
            });
        }
        let (new_end, head) = chain_batch(head, batch, base, epoch, self.version)?;
        self.push(new_end, &head)
    }

    /// Forgets every entry past `offset` (the log was cut there). The head at `offset` is
    /// then the last entry's if it ends there, or must be recomputed from the data after it.
    pub(crate) fn truncate(&mut self, offset: u64) -> Result<(), HotError> {
        let keep = self.partition_point(offset)?;
        self.cut(keep)
    }

    /// Forgets everything: the log restarts empty at some offset and its chain is unknown
    /// until [`ChainJournal::seed`].
    pub(crate) fn clear(&mut self) -> Result<(), HotError> {
        self.cut(0)
    }

    /// Starts an unknown chain at `offset` with `head` (a follower adopting its leader's
    /// head, a restored log adopting the archive's). Refused unless the journal is empty.
    pub(crate) fn seed(&mut self, offset: u64, head: &Hash) -> Result<bool, HotError> {
        if self.count != 0 {
            return Ok(false);
        }
        self.push(offset, head)?;
        Ok(true)
    }

    /// Entries with an end offset `<= offset`.
    fn partition_point(&self, offset: u64) -> Result<u64, HotError> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)?.0 <= offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The head after every record below `offset`, if `offset` is a batch boundary the
    /// journal holds.
    pub(crate) fn head_at(&self, offset: u64) -> Result<Option<Hash>, HotError> {
        if let Some((end, head)) = self.last.filter(|l| l.0 == offset) {
            let _ = end;
            return Ok(Some(head));
        }
        let n = self.partition_point(offset)?;
        if n == 0 {
            return Ok(None);
        }
        let (end, head) = self.entry(n - 1)?;
        Ok((end == offset).then_some(head))
    }

    /// Visits the entries with an end offset in `[from, to]`, oldest first, reading them a
    /// chunk at a time (a journal can hold millions of entries).
    pub(crate) fn for_each_entry(
        &self,
        from: u64,
        to: u64,
        mut f: impl FnMut(u64, Hash) -> Result<bool, HotError>,
    ) -> Result<(), HotError> {
        const CHUNK: u64 = 4096;
        let mut i = self.partition_point(from.saturating_sub(1))?;
        let mut buf = vec![0u8; (CHUNK * ENTRY) as usize];
        while i < self.count {
            let n = (self.count - i).min(CHUNK);
            let bytes = &mut buf[..(n * ENTRY) as usize];
            self.file
                .read_exact_at(bytes, i * ENTRY)
                .map_err(io_err("read", &self.path))?;
            for entry in bytes.chunks_exact(ENTRY as usize) {
                let (end, head) = decode(entry);
                if end > to {
                    return Ok(());
                }
                if end >= from && !f(end, head)? {
                    return Ok(());
                }
            }
            i += n;
        }
        Ok(())
    }

    /// Drops the entries that end below `start` (segments deleted from the log's start),
    /// keeping the one that ends at `start` as the new seed. Rewrites the file (a temp file
    /// renamed over it), so it is done only when whole segments go.
    pub(crate) fn prune_below(&mut self, start: u64) -> Result<(), HotError> {
        let first = self.partition_point(start.saturating_sub(1))?;
        let first = match first {
            // Keep the entry ending exactly at `start` if there is one.
            0 => 0,
            n if self.entry(n - 1)?.0 == start => n - 1,
            n => n,
        };
        if first == 0 {
            return Ok(());
        }
        let kept = self.count - first;
        let tmp = self.path.with_extension("chain.tmp");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        // Copied a chunk at a time: the kept part can be large.
        let mut buf = vec![0u8; 1 << 20];
        let (mut done, total) = (0u64, kept * ENTRY);
        while done < total {
            let n = (total - done).min(buf.len() as u64) as usize;
            self.file
                .read_exact_at(&mut buf[..n], first * ENTRY + done)
                .map_err(io_err("read", &self.path))?;
            file.write_all_at(&buf[..n], done)
                .map_err(io_err("write", &tmp))?;
            done += n as u64;
        }
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_err("rename", &tmp))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = file;
        self.count = kept;
        Ok(())
    }

    /// fsyncs the journal (at a roll and at close; appends alone do not, see the module docs).
    pub(crate) fn sync(&self) -> Result<(), HotError> {
        self.file.sync_data().map_err(io_err("fsync", &self.path))
    }
}

/// Chains the records of `batch`, stored at `base` under `epoch`, onto `head` with the step of
/// `version`: returns the batch's end offset and the head after its last record.
pub(crate) fn chain_batch(
    head: Hash,
    batch: &Batch,
    base: u64,
    epoch: Epoch,
    version: ChainVersion,
) -> Result<(u64, Hash), HotError> {
    let stored_base = batch.header().base_offset;
    let mut hasher = RecordHasher::with_version(head, version);
    batch.for_each_view(|mut record| {
        // The records as stored: offsets from `base`, the batch's epoch.
        record.offset = LogOffset(base + record.offset.0.saturating_sub(stored_base));
        record.epoch = epoch;
        hasher.push_view(&record).map(|_| ())
    })?;
    let end = base + u64::from(batch.last_offset_delta()) + 1;
    Ok((end, hasher.chain()))
}
