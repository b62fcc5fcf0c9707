//! The error type of the state machine.
//!
//! Each variant maps onto exactly one [`ErrorKind`]. Messages read "<subject>: <what>",
//! where the subject is a path, `inode N` or `chunk N`. Errors are part of the state's
//! de-duplication table, so they are plain data (serializable, comparable).

use serde::{Deserialize, Serialize};

use crate::ErrorKind;

/// Why a command or query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MetaError {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{0}: is a directory")]
    IsADirectory(String),
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    /// The string is the whole message, "subject: what was wrong".
    #[error("{0}")]
    InvalidArgument(String),
    /// The state has not seen a `Format` command yet; retry once the master is formatted.
    #[error("file system: not formatted")]
    NotFormatted,
}

impl MetaError {
    /// The kind callers act on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetaError::NotFound(_) => ErrorKind::NotFound,
            MetaError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            MetaError::NotADirectory(_) => ErrorKind::NotADirectory,
            MetaError::IsADirectory(_) => ErrorKind::IsADirectory,
            MetaError::NotEmpty(_) => ErrorKind::NotEmpty,
            MetaError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            MetaError::NotFormatted => ErrorKind::Unavailable,
        }
    }

    /// Builds an [`MetaError::InvalidArgument`] reading "<subject>: <what>".
    pub(crate) fn invalid(subject: impl std::fmt::Display, what: &str) -> MetaError {
        MetaError::InvalidArgument(format!("{subject}: {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_kinds() {
        assert_eq!(
            MetaError::NotFound("/a/b".into()).to_string(),
            "/a/b: not found"
        );
        assert_eq!(
            MetaError::NotEmpty("/a".into()).to_string(),
            "/a: directory not empty"
        );
        assert_eq!(MetaError::invalid("/", "bad").to_string(), "/: bad");
        assert_eq!(MetaError::NotFormatted.kind(), ErrorKind::Unavailable);
        assert_eq!(
            MetaError::IsADirectory("/".into()).kind(),
            ErrorKind::IsADirectory
        );
    }
}
