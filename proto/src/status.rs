//! Reasons on the wire.
//!
//! A Pyralog error travels as a gRPC status whose details hold a `google.rpc.ErrorInfo`
//! (`reason`, `domain = "pyralog.dev"`, `metadata` such as `leader` or `earliest`), so
//! clients in any language can act on it; the reason is repeated in the `pyralog-reason`
//! metadata key for clients without rich-status support.

use std::collections::HashMap;

use pyralog_types::Reason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub const DOMAIN: &str = "pyralog.dev";
pub const REASON_METADATA_KEY: &str = "pyralog-reason";
/// Longest status message sent. The message travels in the `grpc-message` header (and the
/// details in `grpc-status-details-bin`); clients cap the size of response headers (8 to 16
/// KiB is common), so whatever a message echoes from a request must not grow it unbounded.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;
/// Longest value of an `ErrorInfo` metadata entry.
pub const MAX_METADATA_VALUE_BYTES: usize = 256;

/// `s` cut to at most `max` bytes (at a character boundary), saying how long it was.
fn bounded(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let suffix = format!("… ({} bytes)", s.len());
    let mut cut = max.saturating_sub(suffix.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &s[..cut])
}

/// The gRPC code used for each reason.
///
/// Retriable reasons that mean "not now, not here" (`NOT_LEADER`, `NOT_ENOUGH_REPLICAS`,
/// `STORAGE_ERROR`, `SHUTTING_DOWN`) are `UNAVAILABLE`, the one code standard gRPC retry
/// policies retry; `TIMEOUT` is `DEADLINE_EXCEEDED` (the write may have happened). No other
/// reason is `UNAVAILABLE`, so a generic client never retries a refusal.
pub fn code_for(reason: Reason) -> Code {
    match reason {
        Reason::InvalidRequest
        | Reason::InvalidLogName
        | Reason::InvalidConfig
        | Reason::RecordTooLarge
        | Reason::BatchTooLarge
        | Reason::CorruptBatch => Code::InvalidArgument,
        Reason::LogNotFound | Reason::PartitionNotFound => Code::NotFound,
        Reason::LogAlreadyExists => Code::AlreadyExists,
        Reason::CorruptData => Code::DataLoss,
        Reason::OffsetOutOfRange => Code::OutOfRange,
        Reason::NotLeader
        | Reason::NotEnoughReplicas
        | Reason::StorageError
        | Reason::ShuttingDown => Code::Unavailable,
        Reason::Timeout => Code::DeadlineExceeded,
        Reason::Internal => Code::Internal,
        Reason::GroupNotFound => Code::NotFound,
        Reason::GroupNotEmpty
        | Reason::UnknownMember
        | Reason::IllegalGeneration
        | Reason::NotAssigned
        | Reason::OutOfOrderSequence => Code::FailedPrecondition,
        Reason::ProducerFenced | Reason::PermissionDenied => Code::PermissionDenied,
        Reason::Unauthenticated => Code::Unauthenticated,
        _ => Code::Unknown,
    }
}

/// Builds a status carrying `reason` and optional key/value context.
pub fn status(reason: Reason, message: impl Into<String>, metadata: &[(&str, String)]) -> Status {
    let message = message.into();
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                bounded(v.clone(), MAX_METADATA_VALUE_BYTES),
            )
        })
        .collect();
    let details = ErrorDetails::with_error_info(reason.as_str(), DOMAIN, meta);
    let mut st = Status::with_error_details(
        code_for(reason),
        bounded(
            format!("{}: {message}", reason.as_str()),
            MAX_STATUS_MESSAGE_BYTES,
        ),
        details,
    );
    if let Ok(v) = reason.as_str().parse() {
        st.metadata_mut().insert(REASON_METADATA_KEY, v);
    }
    st
}

/// The reason and context a status carries, if it came from Pyralog.
pub fn reason_of(status: &Status) -> Option<(Reason, HashMap<String, String>)> {
    if let Some(info) = status.get_details_error_info() {
        if info.domain == DOMAIN {
            return Reason::parse(&info.reason).map(|r| (r, info.metadata));
        }
    }
    status
        .metadata()
        .get(REASON_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(Reason::parse)
        .map(|r| (r, HashMap::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_input_cannot_grow_a_status() {
        let huge = "é".repeat(10_000);
        let st = status(
            Reason::PermissionDenied,
            format!("may not read {huge}"),
            &[("resource", huge.clone())],
        );
        assert!(
            st.message().len() <= MAX_STATUS_MESSAGE_BYTES,
            "{}",
            st.message().len()
        );
        assert!(st.message().ends_with("(20032 bytes)"), "{}", st.message());
        let (_, meta) = reason_of(&st).expect("reason");
        let resource = meta.get("resource").expect("kept, truncated");
        assert!(resource.len() <= MAX_METADATA_VALUE_BYTES, "{resource}");
        assert!(resource.starts_with("éé"));
    }

    #[test]
    fn retriable_reasons_are_unavailable_and_nothing_else_is() {
        for r in Reason::ALL {
            let code = code_for(r);
            if r == Reason::Timeout {
                assert_eq!(code, Code::DeadlineExceeded);
            } else {
                assert_eq!(
                    code == Code::Unavailable,
                    r.is_retriable(),
                    "{r} is {code:?}"
                );
            }
            assert_ne!(code, Code::Unknown, "{r} has no code of its own");
        }
    }

    #[test]
    fn reason_round_trips_through_a_status() {
        for r in Reason::ALL {
            let st = status(r, "boom", &[("earliest", "5".into())]);
            let (back, meta) = reason_of(&st).expect("has reason");
            assert_eq!(back, r);
            assert_eq!(meta.get("earliest").map(String::as_str), Some("5"));
            assert!(st.message().starts_with(r.as_str()));
        }
    }
}
