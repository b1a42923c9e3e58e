//! `acks = NONE` answers before the append, so its `ProduceResponse` carries no offsets:
//! `base_offset` and `last_offset` are both u64::MAX ("not known"). The e2e test
//! `api_contract::acks_none_answers_without_offsets` checks the server does so; this test
//! checks the two places clients read it from still say so: the README's API section and the
//! `.proto` comments generated clients carry (on `ACK_POLICY_NONE` and on the response's
//! offset fields).

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

const README: &str = include_str!("../../README.md");

/// `text` with every run of whitespace (line breaks included) made one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn public_file() -> FileDescriptorProto {
    let fds = FileDescriptorSet::decode(pyralog_proto::PUBLIC_FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    fds.file
        .into_iter()
        .find(|f| f.package() == "pyralog.v1")
        .expect("pyralog.v1 is in the public descriptor set")
}

/// The leading comment of the element at `path` (descriptor.proto field numbers: 4 = message,
/// 5 = enum, 2 = field or enum value), as one line.
fn leading_comment(file: &FileDescriptorProto, path: &[i32]) -> String {
    let info = file
        .source_code_info
        .as_ref()
        .expect("protox keeps source info");
    let location = info
        .location
        .iter()
        .find(|l| l.path == path)
        .unwrap_or_else(|| panic!("no source location for {path:?}"));
    one_line(location.leading_comments())
}

fn index_of<'a>(names: impl Iterator<Item = &'a str>, name: &str) -> i32 {
    let i = names
        .into_iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("{name} is defined"));
    i32::try_from(i).expect("small index")
}

#[test]
fn readme_says_acks_none_answers_offsets_of_u64_max() {
    let readme = one_line(README);
    let sentence = "`acks = none` answers before the append, with `base_offset` and \
                    `last_offset` set to u64::MAX (\"not known\").";
    assert!(
        readme.contains(sentence),
        "README no longer says what acks = none answers: {sentence}"
    );
}

#[test]
fn proto_says_acks_none_answers_offsets_of_u64_max() {
    let file = public_file();

    let ack = index_of(file.enum_type.iter().map(|e| e.name()), "AckPolicy");
    let none = index_of(
        file.enum_type[ack as usize].value.iter().map(|v| v.name()),
        "ACK_POLICY_NONE",
    );
    let on_enum = leading_comment(&file, &[5, ack, 2, none]);
    for words in [
        "Answered before the append",
        "ProduceResponse.base_offset and last_offset are both 18446744073709551615 (u64::MAX, \
         never a real offset)",
    ] {
        assert!(
            on_enum.contains(words),
            "ACK_POLICY_NONE's comment lacks {words:?}: {on_enum:?}"
        );
    }

    let resp = index_of(
        file.message_type.iter().map(|m| m.name()),
        "ProduceResponse",
    );
    let message = &file.message_type[resp as usize];
    let base = index_of(message.field.iter().map(|f| f.name()), "base_offset");
    assert_eq!(
        message.field[base as usize + 1].name(),
        "last_offset",
        "the comment on base_offset covers the field after it"
    );
    let on_field = leading_comment(&file, &[4, resp, 2, base]);
    let words = "With ACK_POLICY_NONE the answer comes before the append and both are u64::MAX \
                 (18446744073709551615): \"not known\".";
    assert!(
        on_field.contains(words),
        "ProduceResponse.base_offset's comment lacks {words:?}: {on_field:?}"
    );
}
