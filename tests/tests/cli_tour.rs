//! The README's 60-second tour, run through the real CLI.

use pyralog_e2e::TestNode;

#[test]
fn sixty_second_tour() {
    let node = TestNode::start();
    let out = node.cli(&["logs", "create", "tour", "--partitions", "3"], None);
    assert_eq!(out.code, Some(0), "{out:?}");

    let input = b"user-1:hello\nuser-2:world\nuser-1:again\n";
    let out = node.cli(&["produce", "tour", "--key-separator", ":"], Some(input));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("produced 3 records"), "{out:?}");

    let out = node.cli(&["consume", "tour", "--from-beginning", "--verbose"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    // Same key, same partition, in order.
    let user1: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("user-1"))
        .copied()
        .collect();
    assert_eq!(user1.len(), 2);
    assert!(
        user1[0].ends_with("hello") && user1[1].ends_with("again"),
        "{user1:?}"
    );
    let p = |l: &str| l.split(':').next().map(str::to_owned);
    assert_eq!(p(user1[0]), p(user1[1]));

    let out = node.cli(
        &["consume", "tour", "--from-beginning", "--format", "json"],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("\"key\":\"user-2\""), "{out:?}");

    let out = node.cli(&["offsets", "tour"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let total: u64 = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 3, "{out:?}");

    let out = node.cli(&["logs", "describe", "tour"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("partition_count = 3"), "{out:?}");

    let out = node.cli(&["logs", "list"], None);
    assert!(out.stdout.contains("tour"), "{out:?}");
    let out = node.cli(&["logs", "delete", "tour"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = node.cli(&["logs", "describe", "tour"], None);
    assert_eq!(out.code, Some(2), "{out:?}");
}

/// `pyralog consume LOG | head -1` ends quietly when `head` closes the pipe (it panicked on
/// the next `println!`).
#[test]
fn a_closed_stdout_ends_a_client_command_without_a_panic() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let node = TestNode::start();
    let out = node.cli(&["logs", "create", "piped"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let input: String = (0..20_000).map(|i| format!("record-{i}\n")).collect();
    let out = node.cli(&["produce", "piped"], Some(input.as_bytes()));
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut child = Command::new(pyralog_e2e::pyralog_bin())
        .args([
            "--server",
            node.url(),
            "consume",
            "piped",
            "--from-beginning",
            "--follow",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consume");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("a line");
    assert!(first.contains("record-0"), "{first:?}");
    // The reader is gone (its end of the pipe closed above): the command must end.
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.code().is_none() || out.status.code() == Some(0),
        "{out:?}"
    );
}

/// `consume --from-beginning` on a key-compacted log prints every live record: it follows
/// the fetch's `next_offset` across the gaps compaction leaves (it stopped at the first empty
/// answer, a gap at the end of a rewritten segment, and exited 0 with records missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_reads_across_compaction_gaps_to_the_high_watermark() {
    let node = TestNode::start();
    // Archived segments leave the disk: the reads come from the rewritten objects.
    let out = node.cli(
        &[
            "logs",
            "create",
            "profiles",
            "--compaction",
            "key_based",
            "--min-compaction-lag",
            "0s",
            "--local-retention-bytes",
            "1",
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    // Segment 1: keys a0..a99 then b0..b49 (offsets 0..=149). Segment 2: b0..b49 again
    // (offsets 150..=199). Compaction drops the first b's: a gap of 50 offsets at the end of
    // the rewritten first segment.
    let first: String = (0..100)
        .map(|i| format!("a{i}:v{i}\n"))
        .chain((0..50).map(|i| format!("b{i}:old{i}\n")))
        .collect();
    let second: String = (0..50).map(|i| format!("b{i}:new{i}\n")).collect();
    for input in [first, second] {
        let out = node.cli(
            &["produce", "profiles", "--key-separator", ":"],
            Some(input.as_bytes()),
        );
        assert_eq!(out.code, Some(0), "{out:?}");
        let out = node.cli(&["logs", "roll", "profiles"], None);
        assert_eq!(out.code, Some(0), "{out:?}");
    }
    let client = node.client().await;
    let t = std::time::Instant::now();
    while client
        .describe_log("profiles")
        .await
        .expect("describe")
        .partitions[0]
        .local_segments
        > 1
    {
        assert!(t.elapsed().as_secs() < 60, "archiving never finished");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = node.cli(&["compaction", "run", "profiles"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = node.cli(
        &["consume", "profiles", "--from-beginning", "--verbose"],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 150, "every live record: {out:?}");
    assert!(lines[149].ends_with("new49"), "{:?}", lines[149]);
    assert!(!out.stdout.contains("old"), "{out:?}");
}

/// `consume --follow --max-records N` exits once the N-th record is printed, also when exactly
/// N records exist (it waited for an (N+1)-th forever).
#[test]
fn follow_with_max_records_exits_at_n() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let node = TestNode::start();
    let out = node.cli(&["logs", "create", "exact"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = node.cli(&["produce", "exact"], Some(b"one\ntwo\nthree\n"));
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut child = Command::new(pyralog_e2e::pyralog_bin())
        .args([
            "--server",
            node.url(),
            "consume",
            "exact",
            "--from-beginning",
            "--follow",
            "--max-records",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consume");
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "did not exit: {stdout}"
    );
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["one", "two", "three"]);
}
