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
