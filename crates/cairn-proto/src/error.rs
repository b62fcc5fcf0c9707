//! Error kinds a user or caller can act on, each with one gRPC status code, one stable
//! wire name, one classic protocol name and one CLI exit code.
//!
//! Every crate keeps its own error enum and maps it onto [`ErrorKind`] at the edge. The kind
//! travels in the `x-cairn-error` metadata of a gRPC status so that a client can tell
//! `Locked` from `NotFound` without parsing messages.

use std::fmt;

/// gRPC metadata key that carries an [`ErrorKind`] wire name.
pub const ERROR_HEADER: &str = "x-cairn-error";
/// gRPC metadata key naming the chunk server (by id) that failed in a chain write.
pub const FAILED_SERVER_HEADER: &str = "x-cairn-failed-server";

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    NotEmpty,
    InvalidPath,
    InvalidArgument,
    Locked,
    Timeout,
    ReplicationFailed,
    NoSpace,
    PermissionDenied,
    Unavailable,
    Corrupt,
    /// A replica or lease is at another version than the caller assumed; refresh and retry.
    Stale,
    Internal,
}

impl ErrorKind {
    /// Every kind, in exit-code order (used for docs and tests).
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::Internal,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Locked,
        ErrorKind::Timeout,
        ErrorKind::ReplicationFailed,
        ErrorKind::InvalidPath,
        ErrorKind::InvalidArgument,
        ErrorKind::NotADirectory,
        ErrorKind::IsADirectory,
        ErrorKind::NotEmpty,
        ErrorKind::NoSpace,
        ErrorKind::PermissionDenied,
        ErrorKind::Unavailable,
        ErrorKind::Corrupt,
        ErrorKind::Stale,
    ];

    /// Stable wire name, used in gRPC metadata and `--json` output.
    pub fn wire_name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::AlreadyExists => "ALREADY_EXISTS",
            ErrorKind::NotADirectory => "NOT_A_DIRECTORY",
            ErrorKind::IsADirectory => "IS_A_DIRECTORY",
            ErrorKind::NotEmpty => "NOT_EMPTY",
            ErrorKind::InvalidPath => "INVALID_PATH",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::Locked => "LOCKED",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::ReplicationFailed => "REPLICATION_FAILED",
            ErrorKind::NoSpace => "NO_SPACE",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Corrupt => "CORRUPT",
            ErrorKind::Stale => "STALE",
            ErrorKind::Internal => "INTERNAL",
        }
    }

    /// Parses a wire name back.
    pub fn from_wire_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.wire_name() == name)
    }

    /// The name the classic protocol and its users know this error by.
    pub fn classic_name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "FILE_NOT_FOUND",
            ErrorKind::AlreadyExists => "FILE_EXISTS_ERROR",
            ErrorKind::NotADirectory => "NOT_A_DIRECTORY_ERROR",
            ErrorKind::IsADirectory => "IS_A_DIRECTORY_ERROR",
            ErrorKind::NotEmpty => "DIRECTORY_NOT_EMPTY_ERROR",
            ErrorKind::InvalidPath => "INVALID_PATH_ERROR",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT_ERROR",
            ErrorKind::Locked => "FILE_LOCKED_ERROR",
            ErrorKind::Timeout => "TIMEOUT_ERROR",
            ErrorKind::ReplicationFailed => "COPY_ERROR",
            ErrorKind::NoSpace => "NO_SPACE_ERROR",
            ErrorKind::PermissionDenied => "PERMISSION_ERROR",
            ErrorKind::Unavailable => "UNAVAILABLE_ERROR",
            ErrorKind::Corrupt => "CORRUPT_ERROR",
            ErrorKind::Stale => "STALE_ERROR",
            ErrorKind::Internal => "INTERNAL_ERROR",
        }
    }

    /// Short human description, as in `error: /a: not found (FILE_NOT_FOUND)`.
    pub fn description(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::NotADirectory => "not a directory",
            ErrorKind::IsADirectory => "is a directory",
            ErrorKind::NotEmpty => "directory not empty",
            ErrorKind::InvalidPath => "invalid path",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Locked => "locked",
            ErrorKind::Timeout => "timed out",
            ErrorKind::ReplicationFailed => "replication failed",
            ErrorKind::NoSpace => "no space left",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Corrupt => "corrupt data",
            ErrorKind::Stale => "stale version",
            ErrorKind::Internal => "internal error",
        }
    }

    /// Process exit code of the `cairn` CLI for this error (0 is success, 2 is bad usage).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::NotFound => 3,
            ErrorKind::AlreadyExists => 4,
            ErrorKind::Locked => 5,
            ErrorKind::Timeout => 6,
            ErrorKind::ReplicationFailed => 7,
            ErrorKind::InvalidPath => 8,
            ErrorKind::InvalidArgument => 9,
            ErrorKind::NotADirectory => 10,
            ErrorKind::IsADirectory => 11,
            ErrorKind::NotEmpty => 12,
            ErrorKind::NoSpace => 13,
            ErrorKind::PermissionDenied => 14,
            ErrorKind::Unavailable => 15,
            ErrorKind::Corrupt => 16,
            ErrorKind::Stale => 17,
        }
    }

    /// The one gRPC status code this kind travels as.
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::NotADirectory
            | ErrorKind::IsADirectory
            | ErrorKind::NotEmpty
            | ErrorKind::Stale => Code::FailedPrecondition,
            ErrorKind::InvalidPath | ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::Locked => Code::Aborted,
            ErrorKind::Timeout => Code::DeadlineExceeded,
            ErrorKind::ReplicationFailed => Code::Unavailable,
            ErrorKind::NoSpace => Code::ResourceExhausted,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Corrupt => Code::DataLoss,
            ErrorKind::Internal => Code::Internal,
        }
    }

    /// Builds a gRPC status of this kind.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        let mut status = tonic::Status::new(self.grpc_code(), message);
        status.metadata_mut().insert(
            ERROR_HEADER,
            tonic::metadata::MetadataValue::from_static(self.wire_name()),
        );
        status
    }

    /// Recovers the kind of a status: the metadata if a Cairn server set it, else a guess
    /// from the gRPC code (transport errors carry no metadata).
    pub fn of_status(status: &tonic::Status) -> ErrorKind {
        if let Some(kind) = status
            .metadata()
            .get(ERROR_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorKind::from_wire_name)
        {
            return kind;
        }
        use tonic::Code;
        match status.code() {
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::DeadlineExceeded => ErrorKind::Timeout,
            Code::Unavailable | Code::Cancelled | Code::Unknown => ErrorKind::Unavailable,
            Code::ResourceExhausted => ErrorKind::NoSpace,
            Code::PermissionDenied | Code::Unauthenticated => ErrorKind::PermissionDenied,
            Code::DataLoss => ErrorKind::Corrupt,
            Code::Aborted => ErrorKind::Locked,
            Code::FailedPrecondition => ErrorKind::Stale,
            _ => ErrorKind::Internal,
        }
    }

    /// Whether a retry of the same request may succeed without the caller changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Marks `status` as caused by chunk server `server_id` (a replica fault the master should
/// hear about), unless an earlier hop already named one.
pub fn blame_server(mut status: tonic::Status, server_id: u64) -> tonic::Status {
    if failed_server(&status).is_none()
        && let Ok(v) = tonic::metadata::MetadataValue::try_from(server_id.to_string())
    {
        status.metadata_mut().insert(FAILED_SERVER_HEADER, v);
    }
    status
}

/// The chunk server a failed chain write names as the faulty replica, if any.
pub fn failed_server(status: &tonic::Status) -> Option<u64> {
    status
        .metadata()
        .get(FAILED_SERVER_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_exit_codes_are_unique() {
        let mut wire = std::collections::HashSet::new();
        let mut exit = std::collections::HashSet::new();
        let mut classic = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            assert!(wire.insert(k.wire_name()));
            assert!(exit.insert(k.exit_code()));
            assert!(classic.insert(k.classic_name()));
            assert_ne!(k.exit_code(), 0);
            assert_ne!(k.exit_code(), 2, "2 is clap's usage error");
        }
    }

    #[test]
    fn kind_survives_a_status_round_trip() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::of_status(&k.status("x")), k);
        }
    }

    #[test]
    fn transport_errors_map_to_unavailable() {
        let s = tonic::Status::unavailable("connection refused");
        assert_eq!(ErrorKind::of_status(&s), ErrorKind::Unavailable);
        assert!(ErrorKind::of_status(&s).is_retryable());
    }
}
