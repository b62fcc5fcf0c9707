//! Maps replica store errors onto gRPC statuses.

use cairn_chunk_store::StoreError;
use cairn_proto::ErrorKind;
use tonic::Status;

/// The error kind of a store failure.
pub fn store_kind(e: &StoreError) -> ErrorKind {
    match e {
        StoreError::NotFound(_) => ErrorKind::NotFound,
        StoreError::Stale { .. } | StoreError::OutOfOrder { .. } => ErrorKind::Stale,
        StoreError::Corrupt { .. } => ErrorKind::Corrupt,
        StoreError::NoSpace(_) => ErrorKind::NoSpace,
        StoreError::InvalidArgument(_) => ErrorKind::InvalidArgument,
        StoreError::Io(_) => ErrorKind::Internal,
    }
}

/// A status for a store failure on this server.
pub fn store_status(e: &StoreError) -> Status {
    store_kind(e).status(e.to_string())
}

/// A status for a blocking task that panicked or was cancelled. Cancelled means this
/// server is shutting down: `Unavailable`, so the caller retries elsewhere.
pub fn join_status(e: tokio::task::JoinError) -> Status {
    let kind = if e.is_cancelled() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    };
    kind.status(format!("storage task failed: {e}"))
}
