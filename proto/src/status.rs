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

/// The gRPC code used for each reason.
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
        Reason::NotLeader => Code::FailedPrecondition,
        Reason::NotEnoughReplicas | Reason::StorageError | Reason::ShuttingDown => {
            Code::Unavailable
        }
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
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let details = ErrorDetails::with_error_info(reason.as_str(), DOMAIN, meta);
    let mut st = Status::with_error_details(
        code_for(reason),
        format!("{}: {message}", reason.as_str()),
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
