//! Fuzz targets for every decoder of Pyralog: whatever reaches a node from the network, a
//! disk or a bucket is decoded by one of these, and none may panic, allocate without bound or
//! hand back something other than what was encoded.
//!
//! Each target is a plain `fn(&[u8])` that asserts its decoder's contract (see each module);
//! `tests/fuzz.rs` runs each through [`runner`], on stable, as an ordinary test: the committed
//! corpus (`fuzz/corpus/<target>/`) and then mutated inputs for a bounded time. Random bytes
//! rarely get past a magic number and a checksum, so every target also reads its input as
//! damage to a valid file made by the real encoder (see [`damage`]).
//!
//! Why not bolero or cargo-fuzz: cargo-fuzz needs nightly, and bolero's derive macro pulls in
//! an old `proc-macro-crate`/`toml_edit` that forces the whole workspace's `toml` and
//! `indexmap` down to older versions (and a rebuild of the network stack). The runner here is
//! ~150 lines on `rand`, which the workspace already builds.
//!
//! Targets run in the test binary under [`CappedAlloc`], which refuses any single allocation
//! larger than the largest limit the formats allow: a decoder that sizes a buffer from a
//! length field it did not check aborts the run instead of passing on a machine with memory
//! to spare.

pub mod batch;
pub mod cold;
pub mod cold_read;
pub mod controller;
pub mod damage;
pub mod hot;
pub mod lakehouse;
pub mod ledger;
pub mod runner;
pub mod seeds;
pub mod token;
pub mod wire;

use std::alloc::{GlobalAlloc, Layout, System};

use hot::HotFile;

/// One fuzz target: its name (the corpus directory) and its function.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

fn segment_log(i: &[u8]) {
    hot::target(HotFile::Log, i)
}
fn offset_index(i: &[u8]) {
    hot::target(HotFile::Index, i)
}
fn time_index(i: &[u8]) {
    hot::target(HotFile::TimeIndex, i)
}
fn epoch_checkpoint(i: &[u8]) {
    hot::target(HotFile::EpochCheckpoint, i)
}
fn producer_snapshot(i: &[u8]) {
    hot::target(HotFile::ProducerSnapshot, i)
}
fn clean_marker(i: &[u8]) {
    hot::target(HotFile::CleanMarker, i)
}

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "batch",
        run: batch::target,
    },
    Target {
        name: "segment_log",
        run: segment_log,
    },
    Target {
        name: "offset_index",
        run: offset_index,
    },
    Target {
        name: "time_index",
        run: time_index,
    },
    Target {
        name: "epoch_checkpoint",
        run: epoch_checkpoint,
    },
    Target {
        name: "producer_snapshot",
        run: producer_snapshot,
    },
    Target {
        name: "clean_marker",
        run: clean_marker,
    },
    Target {
        name: "cold_manifest",
        run: cold::manifest_target,
    },
    Target {
        name: "parquet_segment",
        run: cold::parquet_target,
    },
    Target {
        name: "cold_read",
        run: cold_read::target,
    },
    Target {
        name: "controller_command",
        run: controller::target,
    },
    Target {
        name: "request",
        run: wire::target,
    },
    Target {
        name: "bearer_token",
        run: token::target,
    },
    Target {
        name: "iceberg_table",
        run: lakehouse::target,
    },
    Target {
        name: "ledger_proof",
        run: ledger::target,
    },
];

/// Damage programs for the hot-tier targets: no damage, the file replaced by its own bytes,
/// a flipped byte in the first and in the last record, a cut file, and the same flips with
/// checksums recomputed.
fn hot_seeds(file: HotFile) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("intact".to_owned(), vec![0b001]),
        ("flip-early".to_owned(), vec![0b001, 30, 0, 0, 0x40]),
        ("flip-late".to_owned(), vec![0b001, 0xff, 0xff, 0, 0x10]),
        ("cut".to_owned(), vec![0b001, 70, 0, 2, 0]),
        ("flip-fixed".to_owned(), vec![0b101, 40, 0, 0, 0x04]),
        ("insert-fixed".to_owned(), vec![0b101, 66, 0, 3, 0x80]),
        ("second-file-flip".to_owned(), vec![0b1001, 12, 0, 0, 0x02]),
    ];
    let t = hot::template();
    if let Some(bytes) = t.file_bytes(file) {
        let mut replace = vec![0b000];
        replace.extend(bytes);
        out.push(("as-written".to_owned(), replace));
    }
    out
}

/// The seed corpus of a target: valid inputs from the real encoders and a few damaged ones.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let named = |prefix: &str, items: Vec<Vec<u8>>| -> Vec<(String, Vec<u8>)> {
        items
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("{prefix}-{i}"), b))
            .collect()
    };
    match target {
        "batch" => {
            let valid: Vec<Vec<u8>> = seeds::batches().iter().map(|b| b.to_vec()).collect();
            let mut damaged = Vec::new();
            let mut bad_crc = valid[1].clone();
            bad_crc[30] ^= 1;
            damaged.push(bad_crc);
            damaged.push(valid[2][..valid[2].len() - 3].to_vec());
            damaged.push([valid[0].clone(), valid[1].clone()].concat());
            // Found by this target: four billion records claimed by a one-record batch.
            let mut huge = valid[0].clone();
            huge[27..35].fill(0xff);
            crate::damage::fix_batch_crcs(&mut huge);
            damaged.push(huge);
            let mut out = named("valid", valid);
            out.extend(named("damaged", damaged));
            out
        }
        "segment_log" => hot_seeds(HotFile::Log),
        "offset_index" => hot_seeds(HotFile::Index),
        "time_index" => hot_seeds(HotFile::TimeIndex),
        "epoch_checkpoint" => hot_seeds(HotFile::EpochCheckpoint),
        "producer_snapshot" => hot_seeds(HotFile::ProducerSnapshot),
        "clean_marker" => hot_seeds(HotFile::CleanMarker),
        "cold_manifest" => {
            let valid = cold::manifest_seed();
            let cut = valid[..valid.len() / 2].to_vec();
            vec![("valid".into(), valid), ("cut".into(), cut)]
        }
        "parquet_segment" => {
            let valid = cold::parquet_seed().to_vec();
            let mut edits = vec![0b001];
            for pos in [4u16, 200, 900, (valid.len() - 12) as u16] {
                edits.extend(pos.to_le_bytes());
                edits.extend([0, 0x20]);
            }
            vec![("valid".into(), valid), ("damaged".into(), edits)]
        }
        // The seed segment as written, read under each footer size the manifest may record
        // (selector 0 unknown, 1 too small, 2 exact); a flipped byte in a row group's pages
        // and in the footer; a cut; and a file that is not Parquet at all.
        "cold_read" => {
            let len = cold::parquet_seed().len();
            let mut out = vec![
                ("footer-guessed".into(), vec![0b0000_0001]),
                ("footer-too-small".into(), vec![0b0000_1001]),
                ("footer-exact".into(), vec![0b0001_0001]),
                ("not-parquet".into(), b"\0PAR1 is not a segment".to_vec()),
            ];
            for (name, pos, op, value) in [
                ("flip-pages", 300u16, 0u8, 0x10u8),
                ("flip-footer", (len - 40) as u16, 0, 0x04),
                ("cut", (len / 2) as u16, 2, 0),
            ] {
                let mut edits = vec![0b0001_0001];
                edits.extend(pos.to_le_bytes());
                edits.extend([op, value]);
                out.push((name.into(), edits));
            }
            out
        }
        "controller_command" => vec![
            ("history".into(), controller::seed()),
            (
                "flip-digits".into(),
                vec![0b001, 60, 0, 1, b'9', 140, 0, 1, b'0'],
            ),
        ],
        "request" => wire::seeds(),
        "bearer_token" => vec![
            ("claims".into(), token::seed_claims()),
            ("static-token".into(), b"pyt_static".to_vec()),
            ("garbage-jwt".into(), b"a.b.c".to_vec()),
        ],
        // The Avro files' headers are written from a hash map, so their bytes vary from run
        // to run: their seeds are damage programs applied to files the target encodes
        // afresh (selected by the plan byte's high bits: 0 list, 1 manifest, 2 metadata).
        "iceberg_table" => vec![
            ("metadata".into(), lakehouse::metadata_seed()),
            ("list-intact".into(), vec![0b0000_0001]),
            ("manifest-intact".into(), vec![0b0000_1001]),
            ("list-flip".into(), vec![0b0000_0001, 0x80, 0, 0, 0x10]),
            ("manifest-cut".into(), vec![0b0000_1001, 0x00, 0x02, 2, 0]),
            ("metadata-flip".into(), vec![0b0001_0001, 0x40, 0, 0, 0x01]),
        ],
        // The three documents as received, and damage programs (selector 0 inclusion proof,
        // 1 checkpoint, 2 consistency proof; bit 2 signs the damaged checkpoints again).
        "ledger_proof" => {
            let [inclusion, checkpoint, consistency] = ledger::seed_documents();
            vec![
                ("inclusion".into(), inclusion),
                ("checkpoint".into(), checkpoint),
                ("consistency".into(), consistency),
                ("inclusion-resigned".into(), vec![0b0000_0101]),
                (
                    "checkpoint-flip".into(),
                    vec![0b0000_1001, 0x30, 0, 0, 0x02],
                ),
                (
                    "consistency-flip-resigned".into(),
                    vec![0b0001_0101, 0x90, 0, 0, 0x04],
                ),
                (
                    "inclusion-path-flip-resigned".into(),
                    vec![0b0000_0101, 0x20, 0x02, 0, 0x01],
                ),
            ]
        }
        _ => Vec::new(),
    }
}

/// A global allocator that refuses (and so aborts the run on) any single allocation larger
/// than `limit` bytes.
#[derive(Debug)]
pub struct CappedAlloc {
    limit: usize,
}

/// The largest allocation a decoder may make: the largest decompressed batch
/// (`MAX_UNCOMPRESSED_BYTES`) plus slack.
pub const ALLOCATION_LIMIT: usize = pyralog_types::batch::MAX_UNCOMPRESSED_BYTES + (1 << 20);

impl CappedAlloc {
    pub const fn new(limit: usize) -> Self {
        CappedAlloc { limit }
    }
}

// SAFETY: a `GlobalAlloc` can only be written with `unsafe`; every call forwards to `System`
// with the caller's layout and pointer unchanged, or returns null (the documented way to
// report an allocation failure) without touching memory.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > self.limit {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > self.limit {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > self.limit {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
