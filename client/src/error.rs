//! Client errors: what went wrong and whether retrying can help.

use pyralog_types::Reason;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    /// The server answered with an error.
    #[error("{message}")]
    Server {
        code: tonic::Code,
        reason: Option<Reason>,
        message: String,
        /// Context from the server (e.g. `earliest`/`latest` for OFFSET_OUT_OF_RANGE).
        metadata: Vec<(String, String)>,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("bad data from server: {0}")]
    Decode(String),
    #[error("the producer is closed")]
    Closed,
}

impl ClientError {
    pub fn reason(&self) -> Option<Reason> {
        match self {
            ClientError::Server { reason, .. } => *reason,
            _ => None,
        }
    }

    /// Whether the same request may succeed if sent again.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Server { code, reason, .. } => match reason {
                Some(r) => r.is_retriable(),
                None => matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown),
            },
            _ => false,
        }
    }

    pub fn metadata(&self, key: &str) -> Option<&str> {
        match self {
            ClientError::Server { metadata, .. } => metadata
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        let (reason, metadata) = match pyralog_proto::status::reason_of(&s) {
            Some((r, m)) => (Some(r), m.into_iter().collect()),
            None => (None, vec![]),
        };
        let message = if s.message().is_empty() {
            format!("{:?}", s.code())
        } else {
            s.message().to_owned()
        };
        ClientError::Server {
            code: s.code(),
            reason,
            message,
            metadata,
        }
    }
}
