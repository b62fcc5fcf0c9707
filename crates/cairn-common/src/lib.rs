//! Shared kit for every Cairn role: gRPC transport tuning, the acceptor that serves gRPC
//! and the classic protocol on one port, the classic protocol's framing, lease MACs,
//! crash-safe file helpers, human-readable sizes, clocks, tracing setup, and returning
//! freed memory to the system.
//!
//! Nothing here knows about the namespace or the data path; it must stay free of policy.

pub mod classic;
pub mod fsutil;
pub mod grpc;
pub mod lease;
pub mod logging;
pub mod memory;
pub mod net;
pub mod size;
pub mod telemetry;
pub mod time;

pub use tokio_util::sync::CancellationToken;
