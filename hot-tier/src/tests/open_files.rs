//! Specification of the open-file budget: more partitions than open files, and nothing lost.
//!
//! Descriptors are counted the way the kernel sees them: entries of `/proc/self/fd` whose
//! target lies under the test's own directory (so other tests in the process do not count).

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use pyralog_types::{Epoch, LogOffset, ManualClock};

use super::{batch, options, read_all, T0};
use crate::{OpenFiles, PartitionLog};

/// Open descriptors of this process on files under `dir`.
fn fds_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

fn open_all(
    dir: &Path,
    n: usize,
    files: &OpenFiles,
    clock: &Arc<ManualClock>,
) -> Vec<PartitionLog> {
    (0..n)
        .map(|p| {
            PartitionLog::open_with_files(
                dir.join(p.to_string()),
                options(600, 128),
                clock.clone(),
                files.clone(),
            )
            .expect("open partition")
        })
        .collect()
}

fn values(log: &PartitionLog) -> Vec<String> {
    read_all(log, log.start_offset().0)
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned())
        .collect()
}

#[test]
fn more_partitions_than_open_files_append_read_and_reopen_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let budget = 16;
    let files = OpenFiles::new(budget);
    let logs = open_all(dir.path(), 64, &files, &clock);
    let mut expected = vec![Vec::new(); logs.len()];
    for round in 0..6 {
        for (p, log) in logs.iter().enumerate() {
            let tag = format!("p{p}r{round}");
            log.append(batch(&tag, 3, T0 + round), Epoch(1))
                .expect("append");
            log.flush().expect("flush");
            expected[p].extend((0..3).map(|i| format!("{tag}-{i}")));
            assert!(
                fds_under(dir.path()) <= budget,
                "{} descriptors open for a budget of {budget}",
                fds_under(dir.path())
            );
        }
    }
    assert!(
        logs.iter().all(|l| l.segments().len() > 1),
        "segments rolled"
    );
    // Reads reopen evicted files, old and active segments alike, in any order.
    for (p, log) in logs.iter().enumerate().rev() {
        assert_eq!(values(log), expected[p], "partition {p}");
    }
    assert!(fds_under(dir.path()) <= budget);
    assert!(files.evicted_total() > 0, "the budget closed files");
    for log in &logs {
        log.close().expect("close");
    }
    drop(logs);
    assert_eq!(fds_under(dir.path()), 0, "closed logs hold no descriptors");

    let files = OpenFiles::new(budget);
    let logs = open_all(dir.path(), 64, &files, &clock);
    assert!(
        fds_under(dir.path()) <= budget,
        "reopening stays within the budget"
    );
    for (p, log) in logs.iter().enumerate() {
        assert_eq!(values(log), expected[p], "partition {p} after reopening");
        let info = log
            .append(batch("after", 1, T0 + 100), Epoch(2))
            .expect("append");
        assert_eq!(info.base_offset, LogOffset(expected[p].len() as u64));
    }
    assert!(fds_under(dir.path()) <= budget);
}

#[test]
fn index_files_keep_no_descriptor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let log = PartitionLog::open(dir.path(), options(1 << 20, 64), clock.clone()).expect("open");
    for i in 0..20 {
        log.append(batch("x", 2, T0 + i), Epoch(1)).expect("append");
    }
    log.roll().expect("roll");
    assert_eq!(read_all(&log, 0).len(), 40);
    let targets: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .expect("proc")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| t.starts_with(dir.path()))
        .collect();
    assert!(
        targets
            .iter()
            .all(|t| t.extension().is_some_and(|e| e == "log")),
        "only segment logs are open: {targets:?}"
    );
}

#[test]
fn an_evicted_idle_writer_reopens_and_unflushed_appends_survive_a_crash_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let files = OpenFiles::new(8);
    let logs = open_all(dir.path(), 20, &files, &clock);
    // No flush: the writers hold unsynced bytes when the budget evicts them.
    for (p, log) in logs.iter().enumerate() {
        log.append(batch(&format!("p{p}"), 2, T0), Epoch(1))
            .expect("append");
    }
    assert!(files.evicted_total() >= 12);
    for log in &logs {
        // Nothing left unsynced is reported durable by mistake: flush covers the end.
        assert_eq!(log.flush().expect("flush"), log.end_offset());
    }
    // A crash (no close): the next open recovers each active segment from its bytes.
    drop(logs);
    let logs = open_all(dir.path(), 20, &OpenFiles::new(8), &clock);
    for (p, log) in logs.iter().enumerate() {
        assert_eq!(values(log), vec![format!("p{p}-0"), format!("p{p}-1")]);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize, usize),
    Read(usize),
    Roll(usize),
    Reopen,
}

fn op(partitions: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..partitions, 1usize..5).prop_map(|(p, n)| Op::Append(p, n)),
        3 => (0..partitions).prop_map(Op::Read),
        1 => (0..partitions).prop_map(Op::Roll),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]

    /// Any mix of appends, reads, rolls and restarts over more partitions than the budget
    /// holds files reads back exactly what was appended, within the budget throughout.
    #[test]
    fn any_workload_over_a_small_budget_reads_back_what_was_written(
        ops in proptest::collection::vec(op(12), 1..80),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let budget = 8;
        let mut logs = open_all(dir.path(), 12, &OpenFiles::new(budget), &clock);
        let mut model: Vec<Vec<String>> = vec![Vec::new(); 12];
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append(p, n) => {
                    let tag = format!("s{step}");
                    logs[p].append(batch(&tag, n, T0 + step as i64), Epoch(1)).expect("append");
                    model[p].extend((0..n).map(|i| format!("{tag}-{i}")));
                }
                Op::Read(p) => prop_assert_eq!(&values(&logs[p]), &model[p]),
                Op::Roll(p) => logs[p].roll().expect("roll"),
                Op::Reopen => {
                    for log in &logs {
                        log.close().expect("close");
                    }
                    drop(logs);
                    logs = open_all(dir.path(), 12, &OpenFiles::new(budget), &clock);
                }
            }
            prop_assert!(fds_under(dir.path()) <= budget);
        }
        for (p, log) in logs.iter().enumerate() {
            prop_assert_eq!(&values(log), &model[p]);
        }
    }
}
