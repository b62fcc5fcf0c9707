//! The client's error: an [`ErrorKind`] a caller can act on, with a message for people.
//!
//! Kinds are the variants: match on [`Error::kind`] (`NotFound`, `Locked`, `Timeout`, ...).
//! Messages come from the server that failed when there is one.

use cairn_proto::ErrorKind;

/// A failed client operation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// Result type of the client library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong, in terms a caller can act on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn from_status(s: &tonic::Status) -> Error {
        let kind = ErrorKind::of_status(s);
        let message = if s.message().is_empty() {
            kind.description().to_string()
        } else {
            s.message().to_string()
        };
        Error { kind, message }
    }

    pub(crate) fn invalid_path(path: &str, e: cairn_proto::PathError) -> Error {
        Error::new(ErrorKind::InvalidPath, format!("{path}: invalid path: {e}"))
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
        Error::from_status(&s)
    }
}
