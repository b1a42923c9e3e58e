//! The Raft log and vote, in segment files.
//!
//! Entries are appended to the newest segment as frames `[len u32 LE][crc32c u32 LE][JSON]`
//! and fsynced before openraft hears they are durable. A segment is named after the index of
//! its first entry. A new segment starts when the current one passes a size limit or after a
//! purge, so purging the log behind a snapshot is deleting whole old segments; truncating
//! (a new leader overwriting an uncommitted suffix) cuts the segment that holds the first
//! removed entry and deletes the ones after it.
//!
//! On open every frame is checked: a bad or incomplete frame at the end of the newest segment
//! is what a crash during an append leaves (the append was never acknowledged), so it is cut;
//! a bad frame anywhere else is corruption and opening fails.
//!
//! The entries not yet purged are also kept in memory (the controller's log between two
//! snapshots is small), so openraft's readers never touch the disk; every disk operation runs
//! on the blocking pool.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::fsutil::{create_dir_all, read_optional, sync_dir, write_atomic};
use super::{blocking, StoreError};
use crate::raft_types::{Entry, LogId, StorageError, TypeConfig, Vote};

const META_FILE: &str = "meta.json";
const SEGMENT_SUFFIX: &str = ".seg";
/// A new segment starts once the current one is this large.
pub(crate) const DEFAULT_SEGMENT_BYTES: u64 = 4 << 20;
/// Frame header: length and CRC32C of the payload.
const HEADER: usize = 8;
/// No entry is this large; a larger length field is a torn or corrupt header.
const MAX_FRAME: u32 = 64 << 20;

/// The small records kept beside the log, replaced atomically as one file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct LogMeta {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

/// openraft's log storage: the write side (one per Raft, used by its core).
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    shared: Arc<Shared>,
}

/// openraft's log reader (one per replication stream); reads memory only.
#[derive(Debug, Clone)]
pub(crate) struct LogReader {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// What openraft reads: entries after the last purged one, and the meta records.
    mem: RwLock<Mem>,
    /// Only locked on the blocking pool.
    disk: Mutex<Disk>,
}

#[derive(Debug, Default)]
struct Mem {
    entries: BTreeMap<u64, Entry>,
    meta: LogMeta,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    len: u64,
}

#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    meta: LogMeta,
    /// By the index of their first entry.
    segments: BTreeMap<u64, Segment>,
    /// Where each entry after the last purged one starts: index -> (segment, byte offset).
    positions: BTreeMap<u64, (u64, u64)>,
    /// The newest segment, open for appends.
    active: Option<(u64, File)>,
    /// Start a new segment at the next append (set by purge).
    roll: bool,
    segment_bytes: u64,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub(crate) async fn open(dir: PathBuf) -> Result<LogStore, StoreError> {
        Self::open_with(dir, DEFAULT_SEGMENT_BYTES).await
    }

    pub(crate) async fn open_with(
        dir: PathBuf,
        segment_bytes: u64,
    ) -> Result<LogStore, StoreError> {
        let (disk, entries) = blocking(move || Disk::open(dir, segment_bytes)).await?;
        let mem = Mem {
            entries,
            meta: disk.meta.clone(),
        };
        Ok(LogStore {
            shared: Arc::new(Shared {
                mem: RwLock::new(mem),
                disk: Mutex::new(disk),
            }),
        })
    }

    /// Runs `f` on the disk state on the blocking pool.
    async fn on_disk<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Disk) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        blocking(move || f(&mut shared.disk.lock())).await
    }

    async fn save_meta(
        &self,
        update: impl FnOnce(&mut LogMeta) + Send + 'static,
    ) -> Result<(), StoreError> {
        let meta = self
            .on_disk(move |disk| {
                let mut meta = disk.meta.clone();
                update(&mut meta);
                disk.write_meta(&meta)?;
                Ok(meta)
            })
            .await?;
        self.shared.mem.write().meta = meta;
        Ok(())
    }

    /// The segment files on disk, oldest first (for tests).
    #[cfg(test)]
    pub(crate) fn segment_paths(&self) -> Vec<PathBuf> {
        let disk = self.shared.disk.lock();
        disk.segments.values().map(|s| s.path.clone()).collect()
    }
}

fn read_entries<RB: RangeBounds<u64>>(shared: &Shared, range: RB) -> Vec<Entry> {
    let mem = shared.mem.read();
    mem.entries.range(range).map(|(_, e)| e.clone()).collect()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_entries(&self.shared, range))
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_entries(&self.shared, range))
    }
}

fn storage_error(subject: ErrorSubject<u64>, verb: ErrorVerb, e: &StoreError) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let mem = self.shared.mem.read();
        let last_purged_log_id = mem.meta.last_purged;
        let last_log_id = mem
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.save_meta(move |m| m.vote = Some(vote))
            .await
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.shared.mem.read().meta.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if self.shared.mem.read().meta.committed == committed {
            return Ok(());
        }
        self.save_meta(move |m| m.committed = committed)
            .await
            .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.shared.mem.read().meta.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let written = entries.clone();
        match self.on_disk(move |disk| disk.append(&written)).await {
            Ok(()) => {
                let mut mem = self.shared.mem.write();
                for e in entries {
                    mem.entries.insert(e.log_id.index, e);
                }
                drop(mem);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(storage_error(ErrorSubject::Logs, ErrorVerb::Write, &e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let index = log_id.index;
        self.on_disk(move |disk| disk.truncate(index))
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        let mut mem = self.shared.mem.write();
        mem.entries.split_off(&index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let meta = self
            .on_disk(move |disk| disk.purge(log_id).map(|()| disk.meta.clone()))
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        let mut mem = self.shared.mem.write();
        mem.entries = mem.entries.split_off(&(log_id.index + 1));
        mem.meta = meta;
        Ok(())
    }
}

impl Disk {
    fn open(dir: PathBuf, segment_bytes: u64) -> Result<(Disk, BTreeMap<u64, Entry>), StoreError> {
        create_dir_all(&dir)?;
        let meta: LogMeta = match read_optional(&dir, META_FILE)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: dir.join(META_FILE),
                offset: 0,
                reason: e.to_string(),
            })?,
            None => LogMeta::default(),
        };
        let purged = meta.last_purged.map(|l| l.index);

        let mut firsts = Vec::new();
        for item in fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let item = item.map_err(StoreError::io("list", &dir))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(first) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();

        let mut disk = Disk {
            dir,
            meta,
            segments: BTreeMap::new(),
            positions: BTreeMap::new(),
            active: None,
            roll: false,
            segment_bytes: segment_bytes.max(1),
        };
        let mut entries = BTreeMap::new();
        let mut expected: Option<u64> = None;
        for (i, first) in firsts.iter().copied().enumerate() {
            let newest = i + 1 == firsts.len();
            let path = disk.segment_path(first);
            let bytes = fs::read(&path).map_err(StoreError::io("read", &path))?;
            let (frames, valid_len) = decode_frames(&bytes);
            if valid_len < bytes.len() as u64 {
                if !newest {
                    return Err(StoreError::Corrupt {
                        path,
                        offset: valid_len,
                        reason: "bad frame in a segment that is not the newest".to_owned(),
                    });
                }
                tracing::warn!(
                    path = %path.display(),
                    offset = valid_len,
                    cut = bytes.len() as u64 - valid_len,
                    "cutting a torn tail off the controller log"
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(StoreError::io("open", &path))?;
                file.set_len(valid_len)
                    .map_err(StoreError::io("truncate", &path))?;
                file.sync_all().map_err(StoreError::io("fsync", &path))?;
            }
            for (offset, payload) in frames {
                let entry: Entry =
                    serde_json::from_slice(payload).map_err(|e| StoreError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason: format!("undecodable entry: {e}"),
                    })?;
                let index = entry.log_id.index;
                if expected.is_some_and(|x| x != index) {
                    return Err(StoreError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason: format!("entry {index} where {expected:?} was expected"),
                    });
                }
                expected = Some(index + 1);
                if purged.is_some_and(|p| index <= p) {
                    continue;
                }
                disk.positions.insert(index, (first, offset));
                entries.insert(index, entry);
            }
            disk.segments.insert(
                first,
                Segment {
                    path,
                    len: valid_len,
                },
            );
        }
        if let (Some(p), Some(first)) = (purged, entries.keys().next()) {
            if *first != p + 1 {
                return Err(StoreError::Corrupt {
                    path: disk.dir.clone(),
                    offset: 0,
                    reason: format!("the log resumes at {first} after purging up to {p}"),
                });
            }
        }
        // A crash between recording a purge and deleting its segments leaves them behind.
        disk.delete_purged_segments()?;
        Ok((disk, entries))
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}{SEGMENT_SUFFIX}"))
    }

    fn write_meta(&mut self, meta: &LogMeta) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(meta).map_err(|source| StoreError::Encode {
            what: "log meta",
            source,
        })?;
        write_atomic(&self.dir, META_FILE, &bytes)?;
        self.meta = meta.clone();
        Ok(())
    }

    /// Makes the segment to append entries starting at `index` to the active one, creating it
    /// when needed, and returns its first index.
    fn activate_segment(&mut self, index: u64) -> Result<u64, StoreError> {
        let reuse = match self.segments.last_key_value() {
            Some((first, seg)) if !self.roll && seg.len < self.segment_bytes && *first <= index => {
                Some(*first)
            }
            _ => None,
        };
        match reuse {
            Some(first) => {
                if self.active.as_ref().is_none_or(|(f, _)| *f != first) {
                    let path = self.segment_path(first);
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(StoreError::io("open", &path))?;
                    self.active = Some((first, file));
                }
                Ok(first)
            }
            None => {
                let path = self.segment_path(index);
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(StoreError::io("create", &path))?;
                sync_dir(&self.dir)?;
                self.segments.insert(index, Segment { path, len: 0 });
                self.active = Some((index, file));
                self.roll = false;
                Ok(index)
            }
        }
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for e in entries {
            offsets.push((e.log_id.index, buf.len() as u64));
            let payload = serde_json::to_vec(e).map_err(|source| StoreError::Encode {
                what: "log entry",
                source,
            })?;
            encode_frame(&mut buf, &payload)?;
        }
        let first = self.activate_segment(head.log_id.index)?;
        let path = self.segment_path(first);
        let start = self.segments.get(&first).map_or(0, |s| s.len);
        let Some((_, file)) = self.active.as_mut() else {
            return Err(StoreError::Task("no active segment".to_owned()));
        };
        let written = file
            .seek(SeekFrom::Start(start))
            .and_then(|_| file.write_all(&buf))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Best effort: leave no partial frame behind for the next append to follow.
            let _ = file.set_len(start);
            return Err(StoreError::Io {
                op: "append",
                path,
                source: e,
            });
        }
        if let Some(seg) = self.segments.get_mut(&first) {
            seg.len = start + buf.len() as u64;
        }
        for (index, offset) in offsets {
            self.positions.insert(index, (first, start + offset));
        }
        Ok(())
    }

    /// Deletes every entry from `index` on.
    fn truncate(&mut self, index: u64) -> Result<(), StoreError> {
        let Some((_, &(seg, offset))) = self.positions.range(index..).next() else {
            return Ok(());
        };
        // Newest first, so a crash leaves a log that is a prefix of the old one.
        let later: Vec<u64> = self.segments.range(seg + 1..).map(|(f, _)| *f).collect();
        for first in later.into_iter().rev() {
            self.delete_segment(first)?;
        }
        if offset == 0 {
            self.delete_segment(seg)?;
        } else {
            let path = self.segment_path(seg);
            if self.active.as_ref().is_some_and(|(f, _)| *f == seg) {
                self.active = None;
            }
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(StoreError::io("open", &path))?;
            file.set_len(offset)
                .map_err(StoreError::io("truncate", &path))?;
            file.sync_all().map_err(StoreError::io("fsync", &path))?;
            if let Some(s) = self.segments.get_mut(&seg) {
                s.len = offset;
            }
        }
        sync_dir(&self.dir)?;
        self.positions.split_off(&index);
        Ok(())
    }

    /// Forgets every entry up to `log_id` (they are in a snapshot).
    fn purge(&mut self, log_id: LogId) -> Result<(), StoreError> {
        let mut meta = self.meta.clone();
        meta.last_purged = Some(log_id);
        self.write_meta(&meta)?;
        self.positions = self.positions.split_off(&(log_id.index + 1));
        self.delete_purged_segments()?;
        // The next append starts a segment, so this one can go at the next purge.
        self.roll = true;
        Ok(())
    }

    /// Deletes segments holding no live entry.
    fn delete_purged_segments(&mut self) -> Result<(), StoreError> {
        let live: std::collections::BTreeSet<u64> =
            self.positions.values().map(|(s, _)| *s).collect();
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        let mut deleted = false;
        for first in firsts {
            // Entries are contiguous, so a segment without a live entry holds only purged ones
            // (or none: an append that failed).
            if !live.contains(&first) {
                self.delete_segment(first)?;
                deleted = true;
            }
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn delete_segment(&mut self, first: u64) -> Result<(), StoreError> {
        if self.active.as_ref().is_some_and(|(f, _)| *f == first) {
            self.active = None;
        }
        if let Some(seg) = self.segments.remove(&first) {
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        op: "delete",
                        path: seg.path,
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }
}

fn encode_frame(buf: &mut Vec<u8>, payload: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| StoreError::Encode {
            what: "log entry",
            source: serde::ser::Error::custom(format!("entry of {} bytes", payload.len())),
        })?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(())
}

/// The valid frames at the start of `bytes` as (offset, payload), and where they end.
fn decode_frames(bytes: &[u8]) -> (Vec<(u64, &[u8])>, u64) {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = bytes.get(pos..pos + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_FRAME {
            break;
        }
        let start = pos + HEADER;
        let Some(payload) = bytes.get(start..start + len as usize) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        frames.push((pos as u64, payload));
        pos = start + len as usize;
    }
    (frames, pos as u64)
}

/// Where the log lives under the controller directory.
pub(crate) fn log_dir(controller_dir: &Path) -> PathBuf {
    controller_dir.join("log")
}
