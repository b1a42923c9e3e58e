//! The leader-epoch cache: which epoch wrote which offsets.
//!
//! A follower that rejoins asks its leader for the end offset of its own last epoch and
//! truncates anything after it (design §5), so every replica must know where each epoch
//! started without scanning its log. The cache is a list of `(epoch, start offset)` kept in
//! memory and in a small text file, `leader-epoch-checkpoint`, one `epoch start_offset` pair
//! per line, replaced atomically (temporary file, fsync, rename) on every change. Changes are
//! rare: a new epoch, a truncation, retention moving the start.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use pyralog_types::{Epoch, LogOffset};

use crate::error::HotError;
use crate::segment::io_err;

pub(crate) const CHECKPOINT: &str = "leader-epoch-checkpoint";

#[derive(Debug)]
pub(crate) struct EpochCache {
    path: PathBuf,
    entries: Vec<(Epoch, LogOffset)>,
}

impl EpochCache {
    /// Loads the checkpoint; the flag is `false` (and the cache empty) if it is missing or
    /// unreadable, and the caller rebuilds it.
    pub(crate) fn load(dir: &Path) -> Result<(EpochCache, bool), HotError> {
        let path = dir.join(CHECKPOINT);
        let mut cache = EpochCache {
            path: path.clone(),
            entries: Vec::new(),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((cache, false)),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok((cache, false)),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split_whitespace();
            let parsed = match (parts.next(), parts.next(), parts.next()) {
                (Some(e), Some(o), None) => e.parse().ok().zip(o.parse().ok()),
                _ => None,
            };
            let Some((e, o)) = parsed else {
                cache.entries.clear();
                return Ok((cache, false));
            };
            let (e, o) = (Epoch(e), LogOffset(o));
            if cache
                .entries
                .last()
                .is_some_and(|&(le, lo)| e <= le || o < lo)
            {
                cache.entries.clear();
                return Ok((cache, false));
            }
            cache.entries.push((e, o));
        }
        Ok((cache, true))
    }

    pub(crate) fn entries(&self) -> &[(Epoch, LogOffset)] {
        &self.entries
    }

    /// The epoch that wrote `offset`, or `None` below the first known epoch.
    pub(crate) fn epoch_at(&self, offset: LogOffset) -> Option<Epoch> {
        self.entries
            .iter()
            .rev()
            .find(|&&(_, o)| o <= offset)
            .map(|&(e, _)| e)
    }

    pub(crate) fn latest(&self) -> Option<Epoch> {
        self.entries.last().map(|&(e, _)| e)
    }

    /// Records that `epoch` starts at `start` if it is newer than the latest (older or equal
    /// epochs change nothing). Returns whether the cache changed; the caller persists.
    pub(crate) fn assign(&mut self, epoch: Epoch, start: LogOffset) -> bool {
        if self.latest().is_some_and(|l| epoch <= l) {
            return false;
        }
        // An entry starting at the same offset was never used: the newer epoch replaces it.
        while self.entries.last().is_some_and(|&(_, o)| o >= start) {
            self.entries.pop();
        }
        self.entries.push((epoch, start));
        true
    }

    /// Forgets epochs that start at or after `end` (the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end: LogOffset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, o)| o < end);
        before != self.entries.len()
    }

    /// Forgets epochs wholly before `start` (retention removed them); the epoch covering
    /// `start` now starts there.
    pub(crate) fn truncate_from_start(&mut self, start: LogOffset) -> bool {
        let covering = self.entries.iter().rposition(|&(_, o)| o <= start);
        match covering {
            Some(i) if i > 0 || self.entries[i].1 < start => {
                self.entries.drain(..i);
                self.entries[0].1 = start;
                true
            }
            _ => false,
        }
    }

    /// KIP-279's answer to a follower whose last epoch is `epoch`: the largest epoch this log
    /// has that is `<= epoch`, and where it ends here. `None` if every epoch here is newer.
    pub(crate) fn epoch_end(&self, epoch: Epoch, log_end: LogOffset) -> Option<(Epoch, LogOffset)> {
        let i = self.entries.iter().rposition(|&(e, _)| e <= epoch)?;
        let end = self.entries.get(i + 1).map_or(log_end, |&(_, o)| o);
        Some((self.entries[i].0, end))
    }

    /// The start of the first epoch newer than `epoch`, or `log_end` if `epoch` is the latest.
    pub(crate) fn end_offset_for(&self, epoch: Epoch, log_end: LogOffset) -> Option<LogOffset> {
        let latest = self.latest()?;
        if epoch == latest {
            return Some(log_end);
        }
        if epoch > latest {
            return None;
        }
        self.entries
            .iter()
            .find(|&&(e, _)| e > epoch)
            .map(|&(_, o)| o)
    }

    /// Writes the checkpoint (temporary file, fsync, rename, fsync of the directory).
    pub(crate) fn persist(&self) -> Result<(), HotError> {
        let tmp = self.path.with_extension("tmp");
        let mut text = String::new();
        for (e, o) in &self.entries {
            text.push_str(&format!("{} {}\n", e.0, o.0));
        }
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(io_err("write epoch checkpoint", &self.path))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

/// fsyncs a directory so created, renamed and removed entries survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), HotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(u64, u64)]) -> EpochCache {
        EpochCache {
            path: PathBuf::from("/nonexistent/x"),
            entries: entries
                .iter()
                .map(|&(e, o)| (Epoch(e), LogOffset(o)))
                .collect(),
        }
    }

    #[test]
    fn end_offsets_follow_the_documented_rule() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(
            c.end_offset_for(Epoch(1), LogOffset(40)),
            Some(LogOffset(10))
        );
        assert_eq!(
            c.end_offset_for(Epoch(2), LogOffset(40)),
            Some(LogOffset(10))
        );
        assert_eq!(
            c.end_offset_for(Epoch(3), LogOffset(40)),
            Some(LogOffset(25))
        );
        assert_eq!(
            c.end_offset_for(Epoch(4), LogOffset(40)),
            Some(LogOffset(40))
        );
        assert_eq!(c.end_offset_for(Epoch(5), LogOffset(40)), None);
        assert_eq!(
            c.end_offset_for(Epoch(0), LogOffset(40)),
            Some(LogOffset(0))
        );
        assert_eq!(cache(&[]).end_offset_for(Epoch(1), LogOffset(0)), None);
    }

    #[test]
    fn truncations_and_assign() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert!(c.truncate_from_end(LogOffset(25)));
        assert_eq!(c.latest(), Some(Epoch(3)));
        assert!(!c.assign(Epoch(2), LogOffset(30)));
        assert!(c.assign(Epoch(7), LogOffset(30)));
        assert!(c.truncate_from_start(LogOffset(12)));
        assert_eq!(
            c.entries(),
            &[(Epoch(3), LogOffset(12)), (Epoch(7), LogOffset(30))]
        );
        assert!(!c.truncate_from_start(LogOffset(12)));
    }

    #[test]
    fn checkpoint_round_trip_and_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut c, found) = EpochCache::load(dir.path()).expect("load");
        assert!(!found);
        c.assign(Epoch(2), LogOffset(0));
        c.assign(Epoch(5), LogOffset(7));
        c.persist().expect("persist");
        let (back, found) = EpochCache::load(dir.path()).expect("reload");
        assert!(found);
        assert_eq!(back.entries(), c.entries());
        std::fs::write(dir.path().join(CHECKPOINT), "2 0\nnonsense\n").expect("damage");
        let (bad, found) = EpochCache::load(dir.path()).expect("load damaged");
        assert!(!found);
        assert!(bad.entries().is_empty());
    }
}
