//! The hot tier's files, through the only door they have: `PartitionLog::open` on a
//! directory, then reads, timestamp lookups, producer state, epochs and one more append.
//!
//! A valid partition (built once per process by the real `PartitionLog`: several segments,
//! idempotent producers, two epochs, closed cleanly) is copied for every input and one of its
//! files damaged: a segment's `.log` (after a crash, so recovery scans it), `.index`,
//! `.timeindex`, the `leader-epoch-checkpoint`, a producer snapshot or the clean-shutdown
//! marker.
//!
//! Contract, for any damage: no panic; `open` either fails with a `HotError` or gives a log on
//! which every call returns a value or a `HotError`; a read never returns bytes that are not
//! whole, CRC-valid batches in offset order; and where the damage leaves the data itself intact
//! (indexes, time index, epochs, snapshots, marker) a read that succeeds returns exactly the
//! records that were written. A damaged active segment keeps every batch before the damage
//! (recovery truncates at the first bad batch, never earlier).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use pyralog_hot_tier::{
    PartitionLog, PartitionOptions, ProducerSnapshot, DEFAULT_PRODUCER_EXPIRATION,
};
use pyralog_types::batch::{split_batches, Batch, BatchBuilder, Compression};
use pyralog_types::{Epoch, FsyncPolicy, LogOffset, ManualClock, Record};

use crate::damage::{apply, fix_batch_crcs, fix_snapshot_crc, plan};
use crate::seeds::{self, T0};

/// Which file a target damages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotFile {
    /// A segment's `.log`; the clean-shutdown marker is removed so recovery scans the active one.
    Log,
    Index,
    TimeIndex,
    EpochCheckpoint,
    ProducerSnapshot,
    CleanMarker,
}

impl HotFile {
    fn files(self, names: &[String]) -> Vec<&String> {
        let want = |n: &String| match self {
            HotFile::Log => n.ends_with(".log"),
            HotFile::Index => n.ends_with(".index"),
            HotFile::TimeIndex => n.ends_with(".timeindex"),
            HotFile::EpochCheckpoint => n == "leader-epoch-checkpoint",
            HotFile::ProducerSnapshot => n.ends_with(".snapshot"),
            HotFile::CleanMarker => n == ".clean_shutdown",
        };
        names.iter().filter(|n| want(n)).collect()
    }

    /// Whether the damage can change the records themselves (only the `.log` holds them).
    fn touches_data(self) -> bool {
        self == HotFile::Log
    }
}

/// The valid partition every input starts from, and what reading it gives.
#[derive(Debug)]
pub struct Template {
    _dir: tempfile::TempDir,
    path: PathBuf,
    /// File names in the directory, sorted.
    names: Vec<String>,
    records: Vec<Record>,
    producers: Vec<ProducerSnapshot>,
    /// The active segment's batches: (file position after the batch, offset after it).
    active_batches: Vec<(u64, u64)>,
}

/// Settings of the template: small segments and a dense index so a few records make several
/// segments and index entries.
pub fn options() -> PartitionOptions {
    PartitionOptions {
        segment_bytes: 400,
        segment_ms: Duration::from_secs(3600),
        index_interval_bytes: 100,
        max_index_bytes: 4096,
        fsync: FsyncPolicy::Never,
        producer_expiration: DEFAULT_PRODUCER_EXPIRATION,
        ledger_genesis: None,
        ledger_chain: pyralog_ledger::ChainVersion::CURRENT,
    }
}

/// A scratch directory, in memory when the machine offers one (thousands are made per second).
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("pyralog-fuzz-")
            .tempdir_in(shm)
        {
            return d;
        }
    }
    tempfile::Builder::new()
        .prefix("pyralog-fuzz-")
        .tempdir()
        .expect("a scratch directory")
}

impl Template {
    /// The bytes of the first file of kind `file`, as the real log wrote it.
    pub fn file_bytes(&self, file: HotFile) -> Option<Vec<u8>> {
        let name = file.files(&self.names).first().copied()?;
        std::fs::read(self.path.join(name)).ok()
    }
}

pub fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = scratch();
        let path = dir.path().join("p");
        let clock = ManualClock::new(T0);
        let log = PartitionLog::open(&path, options(), clock.clone()).expect("open template");
        log.begin_epoch(Epoch(1)).expect("epoch 1");
        let mut epoch = Epoch(1);
        for (i, b) in seeds::batches().iter().enumerate() {
            if Batch::parse(b.clone()).expect("seed").producer_id() >= 0 {
                continue; // the idempotent seed starts mid-sequence; producers come below
            }
            log.append(b.clone(), epoch).expect("append seed");
            if i == 2 {
                epoch = Epoch(3);
                log.begin_epoch(epoch).expect("epoch 3");
            }
        }
        for seq in 0..3 {
            let mut b = BatchBuilder::new(Compression::None).with_producer(11, 0, seq * 2);
            for i in 0..2 {
                b.push(&pyralog_types::batch::NewRecord {
                    timestamp: T0 + 100 + i64::from(seq),
                    key: Some(Bytes::from(format!("p{seq}"))),
                    value: Some(Bytes::from(vec![b'v'; 40 + i])),
                    headers: Vec::new(),
                });
            }
            log.append(b.build().expect("batch"), Epoch(3))
                .expect("append idempotent");
        }
        log.append(seeds::batch(3, T0 + 200, Compression::None), Epoch(3))
            .expect("append");
        let records = read_all(&log).expect("read template");
        let producers = log.producers();
        log.close().expect("close template");
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .expect("list template")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names.iter().filter(|n| n.ends_with(".log")).count() >= 2);
        let active = names
            .iter()
            .rfind(|n| n.ends_with(".log"))
            .expect("an active segment");
        let mut pos = 0u64;
        let active_batches = split_batches(Bytes::from(
            std::fs::read(path.join(active)).expect("read active segment"),
        ))
        .map(|b| {
            let b = b.expect("template batches are valid");
            pos += b.size() as u64;
            (pos, b.last_offset().0 + 1)
        })
        .collect();
        Template {
            active_batches,
            _dir: dir,
            path,
            names,
            records,
            producers,
        }
    })
}

/// Every record from the start, following `next_offset` like a consumer; checks that what
/// comes back is whole, CRC-valid batches in offset order.
fn read_all(log: &PartitionLog) -> Result<Vec<Record>, pyralog_hot_tier::HotError> {
    let mut out: Vec<Record> = Vec::new();
    let mut at = log.start_offset();
    for _ in 0..10_000 {
        let r = log.read(at, 300, LogOffset::MAX)?;
        if r.batches.is_empty() {
            return Ok(out);
        }
        assert!(r.next_offset > at, "a read must move forward");
        for b in split_batches(r.batches) {
            let b = b.expect("reads return whole batches");
            b.verify_crc().expect("reads return CRC-valid batches");
            // Records are checked when produced, not when read: a batch forged with a valid CRC
            // (damage with checksums recomputed) may be undecodable, which the reader reports.
            if let Ok(records) = b.records() {
                out.extend(records.into_iter().filter(|r| r.offset >= at));
            }
        }
        at = r.next_offset;
    }
    panic!("reading the log did not end");
}

/// The hot-tier target for one kind of file.
pub fn target(file: HotFile, input: &[u8]) {
    let t = template();
    let (plan, program) = plan(input);
    let scratch = scratch();
    let dir = scratch.path().join("p");
    std::fs::create_dir(&dir).expect("mkdir");
    for n in &t.names {
        std::fs::copy(t.path.join(n), dir.join(n)).expect("copy template");
    }
    let candidates = file.files(&t.names);
    let Some(name) = candidates
        .get(usize::from(plan.selector) % candidates.len().max(1))
        .copied()
    else {
        return;
    };
    let path = dir.join(name);
    let original = std::fs::read(&path).expect("read template file");
    let mut bytes = if plan.replace {
        program.to_vec()
    } else {
        original.clone()
    };
    let first_changed = if plan.replace {
        0
    } else {
        apply(&mut bytes, program)
    };
    if plan.fix_checksums {
        match file {
            HotFile::Log => fix_batch_crcs(&mut bytes),
            HotFile::ProducerSnapshot => fix_snapshot_crc(&mut bytes),
            _ => {}
        }
    }
    std::fs::write(&path, &bytes).expect("write damaged file");
    if file == HotFile::Log {
        // A crash: recovery scans the active segment.
        let _ = std::fs::remove_file(dir.join(".clean_shutdown"));
    }
    let is_active = t.names.iter().rfind(|n| n.ends_with(".log")) == Some(name);
    let unchanged = bytes == original;
    let forged = plan.fix_checksums || plan.replace;
    let active_damage_at = (is_active && !unchanged).then_some(first_changed);
    exercise(t, file, &dir, active_damage_at, forged);
}

/// `forged`: the damage may carry valid checksums, so a snapshot may be believed.
fn exercise(
    t: &Template,
    file: HotFile,
    dir: &Path,
    active_damage_at: Option<usize>,
    forged: bool,
) {
    let clock = ManualClock::new(T0 + 1_000_000);
    let log = match PartitionLog::open(dir, options(), clock) {
        Ok(log) => log,
        Err(e) => {
            // Recovery handles any damage to the active segment's tail by truncating it.
            assert!(
                active_damage_at.is_none(),
                "a damaged active segment made open fail: {e}"
            );
            return;
        }
    };
    let read = read_all(&log);
    if let Ok(records) = &read {
        for pair in records.windows(2) {
            assert!(pair[0].offset < pair[1].offset, "records out of order");
        }
        if !file.touches_data() {
            let got: Vec<_> = records.iter().map(strip_epoch).collect();
            let want: Vec<_> = t
                .records
                .iter()
                .filter(|r| r.offset >= log.start_offset())
                .map(strip_epoch)
                .collect();
            assert_eq!(got, want, "intact data read back differently");
            if file != HotFile::EpochCheckpoint {
                assert_eq!(records, &t.records, "epochs changed");
            }
        }
    }
    if let Some(at) = active_damage_at {
        // Batches wholly before the first damaged byte of the active segment survive.
        let keep = t
            .active_batches
            .iter()
            .filter(|&&(end_pos, _)| end_pos <= at as u64)
            .map(|&(_, next)| next)
            .max()
            .unwrap_or(0);
        assert!(
            log.end_offset().0 >= keep,
            "recovery cut below the damage: end {} < {keep}",
            log.end_offset()
        );
        if let Ok(records) = &read {
            let got: Vec<_> = records.iter().filter(|r| r.offset.0 < keep).collect();
            let want: Vec<_> = t.records.iter().filter(|r| r.offset.0 < keep).collect();
            assert_eq!(got, want, "records before the damage changed");
        }
    }
    let _ = log.offset_for_timestamp(T0);
    let _ = log.offset_for_timestamp(T0 + 150);
    let _ = log.offset_for_timestamp(i64::MAX);
    let _ = log.producers();
    if file == HotFile::ProducerSnapshot && read.is_ok() && !forged {
        assert_eq!(log.producers(), t.producers, "producer state changed");
    }
    for e in 0..5 {
        let _ = log.end_offset_for_epoch(Epoch(e));
        let _ = log.epoch_end(Epoch(e));
    }
    let _ = log.segments();
    let _ = log.append(seeds::batch(2, T0 + 500, Compression::None), Epoch(3));
    let _ = read_all(&log);
    let _ = log.close();
}

fn strip_epoch(r: &Record) -> Record {
    Record {
        epoch: Epoch(0),
        ..r.clone()
    }
}
