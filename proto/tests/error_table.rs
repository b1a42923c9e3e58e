//! The README's "Errors" table is the reference clients code against: it lists every reason,
//! one row each, with the gRPC code the server really uses and whether it is retriable.

use pyralog_proto::status::code_for;
use pyralog_types::Reason;

const README: &str = include_str!("../../README.md");

/// `InvalidArgument` -> `INVALID_ARGUMENT`.
fn screaming(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[test]
fn readme_error_table_lists_every_reason_with_its_code() {
    let section = README
        .split("\n## Errors\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has an Errors section");
    let rows: Vec<Vec<&str>> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), Reason::ALL.len(), "one row per reason");
    for r in Reason::ALL {
        let name = format!("`{}`", r.as_str());
        let row = rows
            .iter()
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("{r} has no row of its own"));
        assert_eq!(row[1], screaming(code_for(r)), "{r}: gRPC code");
        let retriable = if r.is_retriable() { "yes" } else { "no" };
        assert_eq!(row[2], retriable, "{r}: retriable");
        assert!(!row[3].is_empty(), "{r}: says when");
    }
}
