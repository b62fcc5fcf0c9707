//! One port, two protocols: an acceptor that tells gRPC connections from classic ones.
//!
//! Every HTTP/2 client (and so every gRPC client) opens a connection by sending the fixed
//! 24-byte client preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` before anything else; no classic
//! request starts with it. [`split_listener`] accepts connections, reads from each (in its
//! own task, so a silent peer never blocks the accept loop) until its first bytes either
//! match the whole preface or stop matching it, then hands the connection on:
//!
//! - preface seen: to the returned [`GrpcIncoming`], a stream tonic serves with
//!   `serve_with_incoming_shutdown`;
//! - anything else: to the classic handler callback, in the same task.
//!
//! Invariants:
//! - No byte is lost: the bytes read while sniffing are replayed by [`SniffedStream`] before
//!   anything else is read from the socket.
//! - A connection that sends nothing (or a strict prefix of the preface) for
//!   [`NetConfig::sniff_timeout`] is classic: gRPC clients send the preface at once, and a
//!   classic user at a terminal may well connect and think before typing.
//! - Dropping the [`GrpcIncoming`] (tonic does so when it stops accepting) stops the accept
//!   loop and closes the listening socket.
//! - Classic handler tasks are tracked: [`ClassicConnections::drain`] drops connections
//!   still being sniffed (they have sent no request), waits for the handlers, and after its
//!   grace period drops whatever still runs.
//!
//! Accepted sockets get `TCP_NODELAY` (tonic applies its own `tcp_nodelay` setting only to
//! listeners it binds itself).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
pub const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Settings of the protocol-sniffing acceptor.
#[derive(Clone, Copy, Debug)]
pub struct NetConfig {
    /// Longest wait for a connection's first bytes to decide its protocol; after it, the
    /// connection is classic.
    pub sniff_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            sniff_timeout: Duration::from_secs(10),
        }
    }
}

/// Which protocol a connection speaks, judged by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The connection opened with the HTTP/2 preface.
    Grpc,
    /// Anything else.
    Classic,
}

/// Judges `first` bytes of a connection: `None` while they are a strict prefix of the
/// preface (more bytes are needed), including when there are none yet.
pub fn classify(first: &[u8]) -> Option<Protocol> {
    let n = first.len().min(HTTP2_PREFACE.len());
    if first[..n] != HTTP2_PREFACE[..n] {
        Some(Protocol::Classic)
    } else if n == HTTP2_PREFACE.len() {
        Some(Protocol::Grpc)
    } else {
        None
    }
}

/// An accepted TCP connection whose first bytes were read to sniff its protocol; reads
/// return those bytes first, then the rest of the stream.
pub struct SniffedStream {
    inner: TcpStream,
    replay: Vec<u8>,
    pos: usize,
    peer: SocketAddr,
}

impl SniffedStream {
    /// Wraps `inner`, replaying `replay` before anything read from the socket.
    pub fn new(inner: TcpStream, replay: Vec<u8>, peer: SocketAddr) -> SniffedStream {
        SniffedStream {
            inner,
            replay,
            pos: 0,
            peer,
        }
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Bytes read while sniffing that no read has returned yet.
    pub fn replay_pending(&self) -> &[u8] {
        &self.replay[self.pos..]
    }

    /// The kernel's smoothed round-trip time estimate for this connection, where the
    /// platform tells it (Linux); framing uses it to tell a pause in the network from a
    /// client that stopped sending.
    pub fn rtt(&self) -> Option<Duration> {
        tcp_rtt(&self.inner)
    }
}

#[cfg(target_os = "linux")]
fn tcp_rtt(s: &TcpStream) -> Option<Duration> {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is plain old data, so all zeroes is a valid value; getsockopt
    // writes at most `len` bytes into it and the descriptor stays open while `s` lives.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| Duration::from_micros(u64::from(info.tcpi_rtt)))
}

#[cfg(not(target_os = "linux"))]
fn tcp_rtt(_: &TcpStream) -> Option<Duration> {
    None
}

impl AsyncRead for SniffedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.replay.len() {
            let n = buf.remaining().min(this.replay.len() - this.pos);
            buf.put_slice(&this.replay[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.replay.len() {
                this.replay = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SniffedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for SniffedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

/// The gRPC connections of a split listener, as tonic's incoming stream. Dropping it stops
/// the accept loop and closes the listener.
pub struct GrpcIncoming {
    rx: mpsc::Receiver<SniffedStream>,
    accept_loop: JoinHandle<()>,
}

impl Stream for GrpcIncoming {
    type Item = io::Result<SniffedStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl Drop for GrpcIncoming {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// The classic connections of a split listener, to wait for at shutdown.
pub struct ClassicConnections {
    tracker: TaskTracker,
    /// Cancelled when draining starts: drops connections whose protocol is not known yet.
    stop_sniffing: CancellationToken,
    /// Cancelled when the drain's grace period is over: drops every handler still running.
    hard_stop: CancellationToken,
}

impl ClassicConnections {
    /// Drops connections still being sniffed, waits up to `grace` for every classic
    /// handler to finish, then drops those still running. Call it after the handlers were
    /// told to stop taking requests.
    pub async fn drain(self, grace: Duration) {
        self.stop_sniffing.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!(
                connections = self.tracker.len(),
                ?grace,
                "classic requests still running after the grace period; dropping them"
            );
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
    }

    /// Connections being sniffed or handled now.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no connection is being sniffed or handled.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

/// Accepts connections on `listener` and splits them by protocol: gRPC ones come out of the
/// returned stream, every other one is passed to `classic` (awaited in its own task).
///
/// Must be called inside a tokio runtime; the accept loop runs until the [`GrpcIncoming`]
/// is dropped.
pub fn split_listener<H, F>(
    listener: TcpListener,
    config: NetConfig,
    classic: H,
) -> (GrpcIncoming, ClassicConnections)
where
    H: Fn(SniffedStream) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let tracker = TaskTracker::new();
    let stop_sniffing = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let stops = Stops {
        sniffing: stop_sniffing.clone(),
        all: hard_stop.clone(),
    };
    let accept_loop = tokio::spawn(accept_loop(
        listener,
        config,
        Arc::new(classic),
        tx,
        tracker.clone(),
        stops,
    ));
    let classic = ClassicConnections {
        tracker,
        stop_sniffing,
        hard_stop,
    };
    (GrpcIncoming { rx, accept_loop }, classic)
}

/// What ends a connection task early.
#[derive(Clone)]
struct Stops {
    /// Ends it if its protocol is not known yet.
    sniffing: CancellationToken,
    /// Ends it whatever it does.
    all: CancellationToken,
}

async fn accept_loop<H, F>(
    listener: TcpListener,
    config: NetConfig,
    classic: Arc<H>,
    grpc: mpsc::Sender<SniffedStream>,
    tracker: TaskTracker,
    stops: Stops,
) where
    H: Fn(SniffedStream) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = grpc.closed() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let classic = classic.clone();
        let grpc = grpc.clone();
        let stops = stops.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = stops.all.cancelled() => {}
                _ = dispatch(stream, peer, config, classic, grpc, stops.sniffing.clone()) => {}
            }
        });
    }
}

async fn dispatch<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    config: NetConfig,
    classic: Arc<H>,
    grpc: mpsc::Sender<SniffedStream>,
    stop_sniffing: CancellationToken,
) where
    H: Fn(SniffedStream) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let sniffed = tokio::select! {
        _ = stop_sniffing.cancelled() => return,
        s = sniff(stream, peer, config.sniff_timeout) => s,
    };
    match sniffed {
        Ok(Some((Protocol::Grpc, s))) => {
            // Fails only when tonic stopped accepting; the connection is then dropped.
            let _ = grpc.send(s).await;
        }
        Ok(Some((Protocol::Classic, s))) => classic(s).await,
        Ok(None) => tracing::debug!(%peer, "connection closed before sending anything"),
        Err(e) => tracing::debug!(%peer, error = %e, "connection failed while sniffing"),
    }
}

/// Reads until the protocol is known, the peer closes, or `timeout` passes (then classic).
/// `None` if the peer closed without sending a byte.
async fn sniff(
    mut stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> io::Result<Option<(Protocol, SniffedStream)>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = Vec::with_capacity(1024);
    let protocol = loop {
        if let Some(p) = classify(&first) {
            break p;
        }
        first.reserve(1024);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut first)).await {
            Err(_) => break Protocol::Classic,
            Ok(Ok(0)) if first.is_empty() => return Ok(None),
            // A strict prefix of the preface, then the end: not HTTP/2.
            Ok(Ok(0)) => break Protocol::Classic,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    };
    Ok(Some((protocol, SniffedStream::new(stream, first, peer))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio_stream::StreamExt;

    #[test]
    fn classifies_by_preface() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"PRI * HT"), None);
        assert_eq!(classify(HTTP2_PREFACE), Some(Protocol::Grpc));
        let mut more = HTTP2_PREFACE.to_vec();
        more.extend_from_slice(b"\0\0\x12\x04");
        assert_eq!(classify(&more), Some(Protocol::Grpc));
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"PRX"), Some(Protocol::Classic));
        assert_eq!(classify(b"READ_FILE:a"), Some(Protocol::Classic));
    }

    /// Runs a split listener whose classic handler echoes what it reads until EOF.
    async fn echo_server() -> (SocketAddr, GrpcIncoming, ClassicConnections) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = NetConfig {
            sniff_timeout: Duration::from_millis(200),
        };
        let (grpc, classic) = split_listener(listener, config, |mut s: SniffedStream| async move {
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all).await;
            let _ = s.write_all(&all).await;
        });
        (addr, grpc, classic)
    }

    #[tokio::test]
    async fn splits_and_replays_every_byte() {
        let (addr, mut grpc, classic) = echo_server().await;
        // Classic: the first bytes come back through the handler.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"READ_FILE:x").await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"READ_FILE:x");
        // gRPC: sent in two pieces; the stream yields the connection with every byte.
        let mut g = TcpStream::connect(addr).await.unwrap();
        g.write_all(&HTTP2_PREFACE[..5]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        g.write_all(&HTTP2_PREFACE[5..]).await.unwrap();
        g.write_all(b"frames").await.unwrap();
        g.shutdown().await.unwrap();
        let mut s = grpc.next().await.unwrap().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..24], HTTP2_PREFACE);
        assert_eq!(&got[24..], b"frames");
        drop(grpc);
        classic.drain(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn silent_connections_do_not_block_accepting_and_become_classic() {
        let (addr, _grpc, classic) = echo_server().await;
        let silent = TcpStream::connect(addr).await.unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hello");
        // After the sniff timeout the silent one is classic: what it sends now is echoed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut silent = silent;
        silent.write_all(b"late").await.unwrap();
        silent.shutdown().await.unwrap();
        let mut back = Vec::new();
        silent.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"late");
        classic.drain(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn drain_drops_handlers_after_the_grace_period() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The handler holds its connection open forever.
        let (_grpc, classic) = split_listener(listener, NetConfig::default(), |s| async move {
            let _held = s;
            std::future::pending::<()>().await
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"x").await.unwrap();
        // A silent one, still being sniffed (for 10 s): dropped at once by the drain.
        let _silent = TcpStream::connect(addr).await.unwrap();
        wait_for(|| classic.len() == 2).await;
        let started = std::time::Instant::now();
        classic.drain(Duration::from_millis(100)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).await.unwrap(), 0, "dropped");
    }

    async fn wait_for(cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "condition never held");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
