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
