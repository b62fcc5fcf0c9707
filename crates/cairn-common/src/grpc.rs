//! gRPC transport settings shared by every server and client.
//!
//! tonic's defaults (64 KiB HTTP/2 windows, 16 KiB frames) cap a stream near 1 GB/s on this
//! hardware; 8 MiB stream / 16 MiB connection windows and ~1 MiB frames on both ends about
//! double it (measured in shared/DEPS.md). Every endpoint and server must be built here so
//! the two ends agree.

use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Server};

/// HTTP/2 stream window.
pub const STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 connection window.
pub const CONN_WINDOW: u32 = 16 << 20;
/// HTTP/2 maximum frame size (the protocol's limit is 16 MiB - 1).
pub const MAX_FRAME: u32 = (1 << 20) - 1;

/// A tuned server builder.
pub fn server() -> Server {
    Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
}

/// A tuned endpoint for `addr` (`host:port`, no scheme).
pub fn endpoint(
    addr: &str,
    connect_timeout: Duration,
) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME)
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}

/// A lazily connecting channel to `addr`: the first call connects, a broken connection is
/// re-established by the next call.
pub fn lazy_channel(
    addr: &str,
    connect_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    Ok(endpoint(addr, connect_timeout)?.connect_lazy())
}
