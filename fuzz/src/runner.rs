//! A small mutation fuzzer that runs on stable Rust as an ordinary test.
//!
//! For one target: every file of its corpus (`fuzz/corpus/<target>/`) is run first, then, until
//! the time is up, inputs made by mutating corpus files (bit flips, interesting bytes and
//! integers, inserted, deleted and duplicated ranges, splices of two files, cuts) and now and
//! then plain random bytes. No coverage feedback: the targets make up for it by reading their
//! input as damage to valid files (see [`crate::damage`]), and the targets are plain
//! `fn(&[u8])`, so a coverage-guided engine (cargo-fuzz, on nightly) can drive them unchanged.
//!
//! A panic is a finding: the input is written to `<tmp>/pyralog-fuzz-failures/<target>/` and
//! the run fails naming the file; `FUZZ_INPUT=<file>` replays just that input. Copy it into
//! the corpus once the decoder is fixed, so it is replayed forever.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Target;

/// What one run did.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub corpus_files: usize,
    pub inputs: u64,
    pub elapsed: Duration,
}

/// The committed corpus of a target.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn load_corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(corpus_dir(target)) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    files.sort();
    files
}

/// Runs `input` through the target; `Err` carries the panic message.
fn attempt(target: &Target, input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panic".to_owned())
    })
}

fn save_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("pyralog-fuzz-failures")
        .join(target);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("crash-{:08x}", crc32c::crc32c(input)));
    let _ = std::fs::write(&path, input);
    path
}

/// Runs the corpus, then mutated inputs for `time`, with the random generator seeded by
/// `seed`. `Err` describes the first failing input and where it was saved.
pub fn run(target: &Target, time: Duration, seed: u64) -> Result<Stats, String> {
    let start = Instant::now();
    if let Some(file) = std::env::var_os("FUZZ_INPUT") {
        let input = std::fs::read(&file).map_err(|e| format!("FUZZ_INPUT: {e}"))?;
        attempt(target, &input).map_err(|why| format!("{}: {why}", target.name))?;
        return Ok(Stats {
            corpus_files: 1,
            inputs: 1,
            elapsed: start.elapsed(),
        });
    }
    let corpus = load_corpus(target.name);
    for (path, input) in &corpus {
        attempt(target, input).map_err(|why| {
            format!(
                "{}: corpus file {} fails: {why}",
                target.name,
                path.display()
            )
        })?;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut inputs = 0u64;
    let deadline = start + time;
    while Instant::now() < deadline {
        let input = next_input(&mut rng, &corpus);
        inputs += 1;
        if let Err(why) = attempt(target, &input) {
            let saved = save_failure(target.name, &input);
            return Err(format!(
                "{}: input {} (FUZZ_SEED={seed}, {} bytes) fails: {why}",
                target.name,
                saved.display(),
                input.len()
            ));
        }
    }
    Ok(Stats {
        corpus_files: corpus.len(),
        inputs,
        elapsed: start.elapsed(),
    })
}

const INTERESTING_U8: [u8; 8] = [0, 1, 0x7f, 0x80, 0xfe, 0xff, b'-', b'9'];
const INTERESTING_U32: [u32; 6] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, u32::MAX];

fn next_input(rng: &mut StdRng, corpus: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    if corpus.is_empty() || rng.random_ratio(1, 16) {
        let len = rng.random_range(0..512);
        return (0..len).map(|_| rng.random()).collect();
    }
    let mut data = corpus[rng.random_range(0..corpus.len())].1.clone();
    for _ in 0..rng.random_range(1..=8) {
        mutate(rng, &mut data, corpus);
    }
    data
}

fn mutate(rng: &mut StdRng, data: &mut Vec<u8>, corpus: &[(PathBuf, Vec<u8>)]) {
    let len = data.len();
    let at = |rng: &mut StdRng| {
        if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        }
    };
    match rng.random_range(0..9) {
        0 if len > 0 => {
            let i = at(rng);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng);
            data[i] = rng.random();
        }
        2 if len > 0 => {
            let i = at(rng);
            data[i] = INTERESTING_U8[rng.random_range(0..INTERESTING_U8.len())];
        }
        3 if len >= 4 => {
            let i = rng.random_range(0..=len - 4);
            let v = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
            data[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
        4 => {
            let i = if len == 0 {
                0
            } else {
                rng.random_range(0..=len)
            };
            let n = rng.random_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(i..i, bytes);
        }
        5 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(64));
            data.drain(i..i + n);
        }
        6 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(64));
            let copy = data[i..i + n].to_vec();
            let to = rng.random_range(0..=len);
            data.splice(to..to, copy);
        }
        7 => {
            let other = &corpus[rng.random_range(0..corpus.len())].1;
            if !other.is_empty() {
                let from = rng.random_range(0..other.len());
                let cut = rng.random_range(0..=len);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
        _ => {
            let cut = rng.random_range(0..=len);
            data.truncate(cut);
        }
    }
}
