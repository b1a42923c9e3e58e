//! The node-wide budget of open segment files.
//!
//! Why: a node may host tens of thousands of partitions, each with several segments, and a
//! process gets only so many file descriptors (the default soft `RLIMIT_NOFILE` is 1024). So
//! no segment owns its descriptor: a [`FileSlot`] opens the `.log` file on first use and an
//! [`OpenFiles`] budget, shared by every partition of the node, closes the least recently used
//! ones when more than `capacity` are open. Index files need no descriptor at all (a memory
//! map outlives the descriptor it was made from, see `crate::index`).
//!
//! Recency is tracked the way page caches do it, with CLOCK (second chance): a use sets the
//! slot's `referenced` bit (one atomic store, no lock), and only opening a file takes the
//! budget's lock, sweeping the ring of open slots for one whose bit is clear. Reads stay
//! lock-light: a read clones the slot's `Arc<File>` under the slot's own short lock and then
//! reads without any lock, so an eviction never invalidates a read in progress (its clone
//! keeps the descriptor open until it ends; the budget is exceeded by at most the number of
//! reads in flight).
//!
//! Durability: a slot whose file holds writes not yet fsynced is *dirty*. An eviction never
//! closes a dirty file without fsyncing it first (Linux reports writeback errors only to
//! descriptors open at the time), and does so holding the slot's lock, so a concurrent
//! [`FileSlot::sync`] waits for it rather than reporting durability it does not have. A
//! failed fsync poisons the slot: every later `sync` fails, so nothing written before it is
//! acknowledged as durable. All of this is blocking I/O, like the rest of the hot tier: async
//! callers run hot-tier calls on `spawn_blocking`, never on the runtime's workers.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::error::HotError;
use crate::segment::io_err;

/// `EMFILE` ("too many open files") on Linux and the BSDs.
const EMFILE: i32 = 24;

/// The default budget when none is configured: room for every partition's active segment of
/// a small node, small enough for the default soft limit of 1024 descriptors.
pub const DEFAULT_MAX_OPEN_FILES: usize = 512;

/// The smallest budget accepted (below it, a few busy partitions would thrash).
pub const MIN_MAX_OPEN_FILES: usize = 8;

/// A budget of open segment files shared by partition logs (one per node). Cheap to clone.
#[derive(Clone)]
pub struct OpenFiles {
    shared: Arc<Budget>,
}

struct Budget {
    capacity: usize,
    ring: Mutex<Ring>,
    /// Tickets tell a ring entry apart from a later opening of the same slot.
    next_ticket: AtomicU64,
    /// Files opened and closed by eviction since start (for tests and metrics).
    opened: AtomicU64,
    evicted: AtomicU64,
    /// Open files the ring counts (a snapshot for observers; the ring is the truth).
    open: AtomicUsize,
}

/// The CLOCK ring: slots whose file is (or was, for stale entries) open.
struct Ring {
    entries: Vec<(Weak<FileSlot>, u64)>,
    hand: usize,
}

impl std::fmt::Debug for OpenFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFiles")
            .field("capacity", &self.shared.capacity)
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

impl Default for OpenFiles {
    fn default() -> Self {
        OpenFiles::new(DEFAULT_MAX_OPEN_FILES)
    }
}

impl OpenFiles {
    /// A budget of `capacity` open segment files (at least [`MIN_MAX_OPEN_FILES`]).
    pub fn new(capacity: usize) -> OpenFiles {
        OpenFiles {
            shared: Arc::new(Budget {
                capacity: capacity.max(MIN_MAX_OPEN_FILES),
                ring: Mutex::new(Ring {
                    entries: Vec::new(),
                    hand: 0,
                }),
                next_ticket: AtomicU64::new(1),
                opened: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                open: AtomicUsize::new(0),
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Segment files the budget holds open now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Files opened since start.
    pub fn opened_total(&self) -> u64 {
        self.shared.opened.load(Ordering::Relaxed)
    }

    /// Files closed to stay within the budget since start.
    pub fn evicted_total(&self) -> u64 {
        self.shared.evicted.load(Ordering::Relaxed)
    }

    /// Makes room for `extra` more files, closing others if needed (fsyncing dirty ones
    /// first). Call without holding any slot's lock. Gives up (leaving the budget exceeded
    /// for a moment) rather than spin while every candidate is in the middle of a write.
    fn make_room(&self, extra: usize) {
        let mut attempts = self.shared.capacity * 2 + 16;
        while attempts > 0 {
            attempts -= 1;
            let victim = {
                let mut ring = self.shared.ring.lock();
                let victim = ring.pick_victim(self.shared.capacity.saturating_sub(extra));
                self.shared
                    .open
                    .store(ring.entries.len(), Ordering::Relaxed);
                victim
            };
            let Some((slot, ticket)) = victim else { return };
            if slot.evict(ticket) {
                self.shared.evicted.fetch_add(1, Ordering::Relaxed);
            } else if slot.ticket.load(Ordering::Acquire) == ticket {
                // Busy writing: it stays open and counted.
                slot.referenced.store(true, Ordering::Release);
                let mut ring = self.shared.ring.lock();
                ring.entries.push((Arc::downgrade(&slot), ticket));
                self.shared
                    .open
                    .store(ring.entries.len(), Ordering::Relaxed);
            }
        }
    }

    /// Counts a freshly opened file of `slot` (call holding the slot's lock). The slot gets
    /// its ticket before the ring sees the entry, so a sweep never takes it for stale.
    fn register(&self, slot: &Arc<FileSlot>) {
        let ticket = self.shared.next_ticket.fetch_add(1, Ordering::Relaxed);
        slot.ticket.store(ticket, Ordering::Release);
        let mut ring = self.shared.ring.lock();
        ring.entries.push((Arc::downgrade(slot), ticket));
        self.shared
            .open
            .store(ring.entries.len(), Ordering::Relaxed);
        self.shared.opened.fetch_add(1, Ordering::Relaxed);
    }
}

impl Ring {
    /// While more than `keep` entries are in the ring: drops stale entries (slot gone, closed
    /// or reopened under a newer ticket) and returns the first live one not used since the
    /// hand last passed it, taking it out of the ring. `None` once at most `keep` remain.
    fn pick_victim(&mut self, keep: usize) -> Option<(Arc<FileSlot>, u64)> {
        // Two passes clear every bit, so a victim is found within three.
        let mut budget = self.entries.len() * 3 + 1;
        while self.entries.len() > keep && budget > 0 {
            budget -= 1;
            if self.hand >= self.entries.len() {
                self.hand = 0;
            }
            let (weak, ticket) = &self.entries[self.hand];
            let ticket = *ticket;
            let live = weak
                .upgrade()
                .filter(|s| s.ticket.load(Ordering::Acquire) == ticket);
            match live {
                None => {
                    self.entries.swap_remove(self.hand);
                }
                Some(slot) if slot.referenced.swap(false, Ordering::AcqRel) => {
                    self.hand += 1;
                }
                Some(slot) => {
                    self.entries.swap_remove(self.hand);
                    return Some((slot, ticket));
                }
            }
        }
        None
    }
}

/// How a slot opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

/// One segment's `.log` file: opened on use, closed by the budget when idle.
pub(crate) struct FileSlot {
    path: PathBuf,
    budget: OpenFiles,
    /// The open file; `None` when closed (never opened, evicted, or released).
    file: Mutex<Option<Arc<File>>>,
    /// Read-write while the segment is active.
    writable: AtomicBool,
    /// Writes since the last fsync.
    dirty: AtomicBool,
    /// Used since the CLOCK hand last passed.
    referenced: AtomicBool,
    /// The ticket of the ring entry counting the open file (0: not counted).
    ticket: AtomicU64,
    /// The file is no longer evictable and never reopened by path (its segment was deleted
    /// or replaced: the path may now name another file).
    pinned: AtomicBool,
    /// Writes in progress (the file is not evicted under them).
    writing: AtomicUsize,
    /// A failed fsync: from then on, nothing written through this slot is durable.
    poisoned: Mutex<Option<(io::ErrorKind, String)>>,
}

impl FileSlot {
    pub(crate) fn new(path: PathBuf, budget: &OpenFiles, access: Access) -> Arc<FileSlot> {
        Arc::new(FileSlot {
            path,
            budget: budget.clone(),
            file: Mutex::new(None),
            writable: AtomicBool::new(access == Access::ReadWrite),
            dirty: AtomicBool::new(false),
            referenced: AtomicBool::new(false),
            ticket: AtomicU64::new(0),
            pinned: AtomicBool::new(false),
            writing: AtomicUsize::new(0),
            poisoned: Mutex::new(None),
        })
    }

    /// The open file, opening it (and closing idle ones elsewhere) if needed.
    pub(crate) fn get(self: &Arc<Self>) -> Result<Arc<File>, HotError> {
        if let Some(f) = self.file.lock().as_ref() {
            self.referenced.store(true, Ordering::Release);
            return Ok(f.clone());
        }
        if self.pinned.load(Ordering::Acquire) {
            // Deleted or replaced while closed: the path no longer names this segment.
            return Err(io_err("open", &self.path)(io::Error::from(
                io::ErrorKind::NotFound,
            )));
        }
        self.budget.make_room(1);
        let opened = self.open_file().or_else(|e| {
            if e.raw_os_error() != Some(EMFILE) {
                return Err(e);
            }
            // Other descriptors (sockets, metadata) took the room: close more and retry once.
            self.budget.make_room(self.budget.capacity() / 4 + 1);
            self.open_file()
        });
        let opened = opened.map_err(io_err("open", &self.path))?;
        self.install(opened)
    }

    /// Creates the file empty (replacing any file of that name) and opens it read-write.
    pub(crate) fn create(self: &Arc<Self>) -> Result<Arc<File>, HotError> {
        self.budget.make_room(1);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
            .map_err(io_err("create", &self.path))?;
        self.install(file)
    }

    /// Counts a file just opened in the budget; returns the slot's file (this one, unless
    /// another thread opened one meanwhile).
    fn install(self: &Arc<Self>, file: File) -> Result<Arc<File>, HotError> {
        let mut guard = self.file.lock();
        if let Some(f) = guard.as_ref() {
            return Ok(f.clone());
        }
        let file = Arc::new(file);
        self.referenced.store(true, Ordering::Release);
        self.budget.register(self);
        *guard = Some(file.clone());
        Ok(file)
    }

    fn open_file(&self) -> io::Result<File> {
        let writable = self.writable.load(Ordering::Acquire);
        OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&self.path)
    }

    /// How the file opens from now on: read-only once the segment is sealed, read-write
    /// again if a truncation makes it the active segment (then a read-only descriptor open
    /// now is closed, so the next use reopens it for writing).
    pub(crate) fn set_writable(&self, writable: bool) -> Result<(), HotError> {
        if self.writable.swap(writable, Ordering::AcqRel) != writable && writable {
            self.close()?;
        }
        Ok(())
    }

    /// Runs a write (or a length change) on the file, then marks the slot dirty. The file
    /// is not evicted meanwhile, so its descriptor is never closed between the write and the
    /// fsync that a later [`FileSlot::sync`] or eviction does.
    pub(crate) fn write_with<T>(
        self: &Arc<Self>,
        op: &'static str,
        f: impl FnOnce(&File) -> io::Result<T>,
    ) -> Result<T, HotError> {
        struct Writing<'a>(&'a AtomicUsize);
        impl Drop for Writing<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.writing.fetch_add(1, Ordering::SeqCst);
        let _writing = Writing(&self.writing);
        let file = self.get()?;
        let out = f(&file);
        // Dirty after the bytes are in (also after a failed write: some may be), before the
        // write counts as done: a sync starting after this sees it.
        self.dirty.store(true, Ordering::SeqCst);
        out.map_err(io_err(op, &self.path))
    }

    /// fsyncs what was written through this slot (data only unless `all`). Returns at once if
    /// nothing is unsynced; fails for good once an fsync failed.
    pub(crate) fn sync(self: &Arc<Self>, all: bool) -> Result<(), HotError> {
        self.check_poisoned()?;
        let file = {
            // Under the slot's lock: an eviction syncing this file holds it, so we wait for
            // its outcome; after it, our clone keeps the descriptor open through our fsync.
            let guard = self.file.lock();
            if !self.dirty.swap(false, Ordering::SeqCst) {
                None
            } else {
                guard.clone()
            }
        };
        let Some(file) = file else {
            return self.check_poisoned();
        };
        let synced = if all {
            file.sync_all()
        } else {
            file.sync_data()
        };
        if let Err(e) = synced {
            self.poison(&e);
            return Err(io_err("fsync", &self.path)(e));
        }
        Ok(())
    }

    fn check_poisoned(&self) -> Result<(), HotError> {
        match self.poisoned.lock().as_ref() {
            None => Ok(()),
            Some((kind, msg)) => Err(io_err("fsync (an earlier one failed)", &self.path)(
                io::Error::new(*kind, msg.clone()),
            )),
        }
    }

    fn poison(&self, e: &io::Error) {
        tracing::error!(file = %self.path.display(), error = %e,
            "fsync failed: writes to this segment are no longer known to be durable");
        self.poisoned
            .lock()
            .get_or_insert_with(|| (e.kind(), e.to_string()));
    }

    /// Closes the file if it is still the one counted under `ticket` and no write is in
    /// progress, fsyncing it first if dirty (holding the slot's lock, so a concurrent `sync`
    /// waits for the outcome). Returns whether it closed it.
    fn evict(&self, ticket: u64) -> bool {
        let mut guard = self.file.lock();
        if self.ticket.load(Ordering::Acquire) != ticket || self.pinned.load(Ordering::Acquire) {
            return false;
        }
        if self.writing.load(Ordering::SeqCst) > 0 {
            return false;
        }
        self.ticket.store(0, Ordering::Release);
        let Some(file) = guard.take() else {
            return false;
        };
        if self.dirty.swap(false, Ordering::SeqCst) {
            if let Err(e) = file.sync_data() {
                self.poison(&e);
            }
        }
        drop(file);
        true
    }

    /// Keeps the file open until the slot is dropped and never reopens it by path: for a
    /// segment being deleted or replaced while readers may still hold it. Returns whether the
    /// file is open (if not, readers that come later get an error rather than another file).
    pub(crate) fn pin(self: &Arc<Self>) -> bool {
        if !self.pinned.load(Ordering::Acquire) {
            // Best effort: a segment whose file cannot be opened has nothing left to keep.
            let _ = self.get();
        }
        let guard = self.file.lock();
        self.pinned.store(true, Ordering::Release);
        // No longer counted: the ring drops the entry as stale.
        self.ticket.store(0, Ordering::Release);
        guard.is_some()
    }

    /// Closes the file now (after fsyncing it if dirty); it reopens on next use.
    pub(crate) fn close(&self) -> Result<(), HotError> {
        let mut guard = self.file.lock();
        if self.pinned.load(Ordering::Acquire) {
            return Ok(());
        }
        self.ticket.store(0, Ordering::Release);
        let Some(file) = guard.take() else {
            return self.check_poisoned();
        };
        if self.dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = file.sync_data() {
                self.poison(&e);
                return Err(io_err("fsync", &self.path)(e));
            }
        }
        Ok(())
    }
}
