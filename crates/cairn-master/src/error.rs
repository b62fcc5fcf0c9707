//! The master's errors, each mapped to one [`ErrorKind`] and so to one gRPC status.

use cairn_meta::MetaError;
use cairn_proto::ErrorKind;

/// Everything a master operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MasterError {
    #[error("{0}")]
    Meta(MetaError),
    #[error(
        "the operation log failed; the master accepts no more changes until restarted (see its log)"
    )]
    LogFailed,
    #[error("the master is shutting down")]
    ShuttingDown,
    #[error("metadata storage: {0}")]
    Storage(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NoSpace(String),
    #[error("{0}")]
    ReplicationFailed(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// What the request relied on is gone (e.g. a prepared chunk); the caller starts over.
    #[error("{0}")]
    Stale(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl MasterError {
    /// The kind a caller acts on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MasterError::Meta(e) => e.kind(),
            MasterError::LogFailed | MasterError::ShuttingDown | MasterError::Unavailable(_) => {
                ErrorKind::Unavailable
            }
            MasterError::Storage(_) | MasterError::Internal(_) => ErrorKind::Internal,
            MasterError::InvalidPath(_) => ErrorKind::InvalidPath,
            MasterError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            MasterError::NotFound(_) => ErrorKind::NotFound,
            MasterError::NoSpace(_) => ErrorKind::NoSpace,
            MasterError::ReplicationFailed(_) => ErrorKind::ReplicationFailed,
            MasterError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            MasterError::Stale(_) => ErrorKind::Stale,
        }
    }
}

impl From<MasterError> for tonic::Status {
    fn from(e: MasterError) -> Self {
        e.kind().status(e.to_string())
    }
}

impl From<cairn_proto::PathError> for MasterError {
    fn from(e: cairn_proto::PathError) -> Self {
        MasterError::InvalidPath(e.to_string())
    }
}
