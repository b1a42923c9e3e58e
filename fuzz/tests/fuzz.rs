//! The fuzz targets as tests, one per decoder. Each replays its corpus (`fuzz/corpus/<target>/`)
//! and then runs mutated inputs for `FUZZ_SECONDS` (default 1; `scripts/fuzz.sh` sets it).
//! `FUZZ_SEED` fixes the random inputs (default: from the clock, printed); `FUZZ_INPUT=<file>`
//! replays one input.

use std::time::Duration;

use pyralog_fuzz::{runner, seeds, CappedAlloc, ALLOCATION_LIMIT, TARGETS};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc::new(ALLOCATION_LIMIT);

fn fuzz(name: &str) {
    let target = TARGETS
        .iter()
        .find(|t| t.name == name)
        .expect("a target of that name");
    let seconds: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            use pyralog_types::Clock as _;
            pyralog_types::SystemClock.now_micros() as u64
        });
    match runner::run(target, Duration::from_secs_f64(seconds), seed) {
        Ok(s) => println!(
            "{name}: {} corpus files, {} inputs in {:.1}s (FUZZ_SEED={seed})",
            s.corpus_files,
            s.inputs,
            s.elapsed.as_secs_f64()
        ),
        Err(why) => panic!("{why}"),
    }
}

macro_rules! fuzz_target {
    ($name:ident) => {
        #[test]
        fn $name() {
            fuzz(stringify!($name));
        }
    };
}

fuzz_target!(batch);
fuzz_target!(segment_log);
fuzz_target!(offset_index);
fuzz_target!(time_index);
fuzz_target!(epoch_checkpoint);
fuzz_target!(producer_snapshot);
fuzz_target!(clean_marker);
fuzz_target!(cold_manifest);
fuzz_target!(parquet_segment);
fuzz_target!(cold_read);
fuzz_target!(controller_command);
fuzz_target!(request);
fuzz_target!(bearer_token);
fuzz_target!(iceberg_table);
fuzz_target!(ledger_proof);

/// Every target has a test above and a committed seed corpus made by the real encoders; the
/// seeds in the repository are what the encoders produce today (so a format change shows up
/// here). `PYRALOG_FUZZ_WRITE_SEEDS=1` rewrites them.
#[test]
fn every_target_has_its_encoder_seeds_committed() {
    let write = std::env::var_os("PYRALOG_FUZZ_WRITE_SEEDS").is_some();
    let this_file = include_str!("fuzz.rs");
    for t in TARGETS {
        assert!(
            this_file.contains(&format!("fuzz_target!({});", t.name)),
            "target {} has no test",
            t.name
        );
        let dir = runner::corpus_dir(t.name);
        let seeds = seeds(t.name);
        assert!(!seeds.is_empty(), "target {} has no seeds", t.name);
        for (name, bytes) in seeds {
            let path = dir.join(format!("seed-{name}"));
            if write {
                std::fs::create_dir_all(&dir).expect("create corpus dir");
                std::fs::write(&path, &bytes).expect("write seed");
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (PYRALOG_FUZZ_WRITE_SEEDS=1 writes it)",
                    path.display()
                )
            });
            assert!(
                committed == bytes,
                "{} differs from what the encoder makes today",
                path.display()
            );
        }
    }
}
