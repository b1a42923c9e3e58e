//! CLI errors carry their exit code.

use pyralog_client::ClientError;

#[derive(Debug)]
pub(crate) struct CliError {
    code: u8,
    message: String,
}

impl CliError {
    /// Bad input from the user: exit code 2.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
        }
    }

    /// A runtime failure: exit code 1.
    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        CliError {
            code: 1,
            message: message.into(),
        }
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.code
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        use tonic::Code;
        let bad_input = match &e {
            ClientError::Server { code, reason, .. } => {
                matches!(
                    code,
                    Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::OutOfRange
                ) || matches!(
                    reason,
                    Some(
                        pyralog_types::Reason::GroupNotEmpty
                            | pyralog_types::Reason::Unauthenticated
                            | pyralog_types::Reason::PermissionDenied
                    )
                )
            }
            ClientError::InvalidArgument(_) => true,
            _ => false,
        };
        CliError {
            code: if bad_input { 2 } else { 1 },
            message: e.to_string(),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::runtime(e.to_string())
    }
}

pub(crate) type CliResult = Result<(), CliError>;
