//! The error type of the state machine.
//!
//! Each variant maps onto exactly one [`ErrorKind`]. Messages read `<subject>: <what>`,
//! where the subject is a path, `inode N`, `inode P/name`, `chunk N` or `session N`.
//! Errors are part of the state's de-duplication table, so they are plain data
//! (serializable, comparable).

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
    /// A lock is in the way. The string is the whole message, naming the holder:
    /// "/a/f: locked by session 5 (host:1234)".
    #[error("{0}")]
    Locked(String),
    /// A name given to an inode-based command is not a valid path component.
    #[error("{0}")]
    InvalidPath(String),
    /// The operation is not allowed on this kind of inode (a hard link to a directory).
    #[error("{0}: operation not permitted")]
    PermissionDenied(String),
    /// The inode exists but has no extended attribute of that name (`ENODATA`); its kind
    /// is `NotFound`.
    #[error("{0}: no such attribute")]
    NoAttribute(String),
    /// What the request relied on changed meanwhile (a chunk slot another chunk took);
    /// the caller starts over. The string is the whole message.
    #[error("{0}")]
    Stale(String),
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
            MetaError::Locked(_) => ErrorKind::Locked,
            MetaError::InvalidPath(_) => ErrorKind::InvalidPath,
            MetaError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            MetaError::NoAttribute(_) => ErrorKind::NotFound,
            MetaError::Stale(_) => ErrorKind::Stale,
        }
    }

    /// Builds an [`MetaError::InvalidArgument`] reading `<subject>: <what>`.
    pub(crate) fn invalid(subject: impl std::fmt::Display, what: &str) -> MetaError {
        MetaError::InvalidArgument(format!("{subject}: {what}"))
    }

    /// Builds a [`MetaError::InvalidPath`] for a bad component `name`.
    pub(crate) fn bad_name(name: &str, why: cairn_proto::PathError) -> MetaError {
        MetaError::InvalidPath(format!("name {name:?}: {why}"))
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
        assert_eq!(MetaError::Locked("x".into()).kind(), ErrorKind::Locked);
        assert_eq!(MetaError::Locked("x".into()).to_string(), "x");
        assert_eq!(
            MetaError::NoAttribute("inode 2: user.a".into()).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            MetaError::PermissionDenied("inode 2".into()).to_string(),
            "inode 2: operation not permitted"
        );
        let e = MetaError::bad_name("..", cairn_proto::PathError::DotComponent("..".into()));
        assert_eq!(e.kind(), ErrorKind::InvalidPath);
    }
}
