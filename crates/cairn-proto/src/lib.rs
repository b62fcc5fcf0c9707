//! Cairn's wire protocol: the generated gRPC code (`pb`), the error kinds every crate maps
//! its errors onto, and domain types validated once at the edge (paths).
//!
//! This crate holds no logic beyond conversion and validation; it must never do I/O.

pub mod error;
pub mod path;

pub use error::{ErrorKind, FAILED_SERVER_HEADER, blame_server, failed_server};
pub use path::{CairnPath, MAX_COMPONENT_LEN, MAX_PATH_LEN, PathError};

/// Generated protobuf and gRPC code for package `cairn.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("cairn.v1");
}

/// Maximum size of a single gRPC message we send or accept. Data moves in ~1 MiB pieces;
/// metadata replies (long listings, full chunk reports) are paged well below this.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Size of a data piece on the wire.
pub const DATA_PIECE_BYTES: usize = 1 << 20;

/// Mutations with at most this many bytes go as one message to the primary, which sends
/// it to the other replicas at once (`WriteSmall`) instead of down a chain: chunk servers
/// stage this much in memory, so the whole mutation costs one journal sync per replica.
pub const SMALL_WRITE_BYTES: usize = 256 << 10;

/// Reads of at most this many bytes of one chunk ask for them in one answer (`ReadSmall`);
/// longer ones stream, so the next piece is on its way while the caller takes this one.
pub const SMALL_READ_BYTES: usize = 256 << 10;

/// Most paths one `StatMany` call may carry: with paths of at most `MAX_PATH_LEN` bytes,
/// a request and its answer stay well below `MAX_MESSAGE_BYTES`.
pub const MAX_STAT_MANY: usize = 1024;
