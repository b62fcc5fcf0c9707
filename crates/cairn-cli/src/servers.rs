//! `cairn local`, `cairn master`, `cairn chunkserver`: bind sockets, install signal
//! handlers, and run the servers until Ctrl-C or SIGTERM. Every server answers gRPC and
//! the classic protocol on its one port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cairn_chunkserver::ChunkServerConfig;
use cairn_common::CancellationToken;
use cairn_common::classic::ClassicConfig;
use cairn_common::size::parse_size;
use cairn_master::MasterConfig;
use cairn_proto::CairnPath;
use clap::Args;
use tokio::net::TcpListener;

use crate::recovery_opts::{ChunkServerRecoveryOpts, MasterRecoveryOpts};
use crate::{CmdResult, Failure};

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

pub(crate) fn duration_arg(s: &str) -> Result<Duration, String> {
    humantime_like(s)
}

/// Parses `10s`, `500ms`, `2m`, or a bare number of seconds.
fn humantime_like(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("invalid duration '{s}'"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("invalid duration '{s}': use ms, s, m or h")),
    }
}

fn dir_arg(s: &str) -> Result<CairnPath, String> {
    CairnPath::parse_lenient(s).map_err(|e| format!("invalid directory '{s}': {e}"))
}

/// The classic protocol's options, for masters and chunk servers alike.
#[derive(Args, Clone)]
pub struct ClassicOpts {
    /// Directory the classic protocol's file names live in (created if missing).
    #[arg(long, default_value = "/", value_parser = dir_arg)]
    classic_dir: CairnPath,
    /// Longest classic request (WRITE_FILE content included) and longest READ_FILE answer.
    #[arg(long, default_value = "64MiB", value_parser = size_arg)]
    classic_max_request: u64,
    /// A classic request not done within this is answered TIMEOUT_ERROR.
    #[arg(long, default_value = "120s", value_parser = duration_arg)]
    classic_timeout: Duration,
    /// Silence after which a classic request sent without a newline is complete.
    #[arg(long, default_value = "50ms", value_parser = duration_arg)]
    classic_quiet: Duration,
}

impl ClassicOpts {
    fn config(&self) -> ClassicConfig {
        ClassicConfig {
            max_request_bytes: usize::try_from(self.classic_max_request).unwrap_or(usize::MAX),
            timeout: self.classic_timeout,
            quiet: self.classic_quiet,
            ..ClassicConfig::default()
        }
    }

    fn chunkserver_config(
        &self,
        data: PathBuf,
        master: &str,
        reserve: Option<u64>,
    ) -> ChunkServerConfig {
        let mut c = ChunkServerConfig::new(data, master);
        c.reserve_bytes = reserve;
        c.classic_dir = self.classic_dir.clone();
        c.classic = self.config();
        c
    }
}

/// Request logs and metrics, shared by every server.
#[derive(Args, Clone)]
pub struct TelemetryOpts {
    /// Requests at least this slow are logged at INFO (the others at DEBUG).
    #[arg(long, default_value = "500ms", value_parser = duration_arg)]
    slow_request: Duration,
    /// Do not record request metrics (to measure what they cost).
    #[arg(long)]
    no_metrics: bool,
}

/// An HTTP address flag: `host:port`, or `off`.
fn http_arg(s: &str) -> Result<Option<SocketAddr>, String> {
    if s == "off" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| format!("{s}: {e} (use host:port or off)"))
}

/// A chunk server's `--http`: an address, `off`, or `auto` (from its listen port).
#[derive(Clone, Copy, Debug)]
pub enum ChunkServerHttp {
    Auto,
    Set(Option<SocketAddr>),
}

fn chunkserver_http_arg(s: &str) -> Result<ChunkServerHttp, String> {
    if s == "auto" {
        return Ok(ChunkServerHttp::Auto);
    }
    http_arg(s).map(ChunkServerHttp::Set)
}

impl ChunkServerHttp {
    /// The address to serve HTTP on, for a server listening on `listen`.
    fn resolve(self, listen: SocketAddr) -> Option<SocketAddr> {
        match self {
            ChunkServerHttp::Set(a) => a,
            ChunkServerHttp::Auto => {
                let port = match listen.port() {
                    0 => 0,
                    p => p.checked_add(3000)?,
                };
                Some(SocketAddr::from(([127, 0, 0, 1], port)))
            }
        }
    }
}

/// Options every master shares.
#[derive(Args, Clone)]
pub struct MasterOpts {
    /// Chunk size of a new file system (ignored once formatted).
    #[arg(long, default_value = "64MiB", value_parser = size_arg)]
    chunk_size: u64,
    /// Replication goal of new files.
    #[arg(long, default_value_t = 3)]
    goal: u8,
    /// A chunk server silent this long is dead.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    dead_timeout: Duration,
    /// Lease length for writes.
    #[arg(long, default_value = "60s", value_parser = duration_arg)]
    lease: Duration,
    /// Chunk servers with less free space than this take no new replicas.
    #[arg(long, default_value = "0", value_parser = size_arg)]
    reserve: u64,
    /// A client silent this long loses its session and its locks.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    session_timeout: Duration,
    #[command(flatten)]
    classic: ClassicOpts,
    #[command(flatten)]
    telemetry: TelemetryOpts,
    #[command(flatten)]
    recovery: MasterRecoveryOpts,
}

impl MasterOpts {
    fn config(&self, data: PathBuf) -> MasterConfig {
        let mut c = MasterConfig::new(data);
        c.chunk_size = self.chunk_size;
        c.default_goal = self.goal;
        c.dead_timeout = self.dead_timeout;
        c.lease_duration = self.lease;
        c.reserve_bytes = self.reserve;
        c.session_timeout = self.session_timeout;
        c.slow_request = self.telemetry.slow_request;
        c.metrics = !self.telemetry.no_metrics;
        c.classic_dir = self.classic.classic_dir.clone();
        c.classic = self.classic.config();
        self.recovery.apply(&mut c);
        c
    }
}

#[derive(Args)]
pub struct MasterArgs {
    /// Directory for the operation log and checkpoints.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:5011")]
    listen: SocketAddr,
    /// HTTP address for /healthz, /metrics, /status and the dashboard (`off` for none).
    #[arg(long, default_value = "127.0.0.1:9011", value_parser = http_arg)]
    http: ::std::option::Option<SocketAddr>, // fully qualified: the parser yields the Option itself
    #[command(flatten)]
    opts: MasterOpts,
}

#[derive(Args)]
pub struct ChunkServerArgs {
    /// Directory for replicas.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:6001")]
    listen: SocketAddr,
    /// HTTP address for /healthz, /metrics and /status: `host:port`, `off`, or `auto`
    /// (127.0.0.1 on the listen port + 3000: 9001 for 6001, so that several chunk servers
    /// on one host do not collide).
    #[arg(long, default_value = "auto", value_parser = chunkserver_http_arg)]
    http: ChunkServerHttp,
    #[command(flatten)]
    classic: ClassicOpts,
    #[command(flatten)]
    telemetry: TelemetryOpts,
    #[command(flatten)]
    recovery: ChunkServerRecoveryOpts,
}

#[derive(Args)]
pub struct LocalArgs {
    /// Directory holding master/, cs1/, cs2/, cs3/.
    #[arg(long, default_value = "cairn-data")]
    data: PathBuf,
    /// Host the servers listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 5011)]
    master_port: u16,
    /// First chunk server port; the others follow it.
    #[arg(long, default_value_t = 6001)]
    chunkserver_port: u16,
    /// Number of chunk servers.
    #[arg(long, default_value_t = 3)]
    chunkservers: u16,
    /// The master's HTTP port (dashboard, /metrics); 0 for none.
    #[arg(long, default_value_t = 9011)]
    http_port: u16,
    /// The first chunk server's HTTP port; the others follow it; 0 for none.
    #[arg(long, default_value_t = 9001)]
    chunkserver_http_port: u16,
    #[command(flatten)]
    opts: MasterOpts,
}

async fn bind(addr: &str) -> Result<TcpListener, Failure> {
    Ok(TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr}"))?)
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn stop_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
        token.cancel();
    });
}

async fn bind_http(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, Failure> {
    match addr {
        Some(a) => Ok(Some(bind(&a.to_string()).await?)),
        None => Ok(None),
    }
}

pub async fn master(a: &MasterArgs) -> CmdResult {
    let listener = bind(&a.listen.to_string()).await?;
    let http = bind_http(a.http).await?;
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone());
    cairn_master::run_with_http(a.opts.config(a.data.clone()), listener, http, shutdown)
        .await
        .map_err(|e| Failure::Other(anyhow::anyhow!("master: {e}")))
}

pub async fn chunkserver(a: &ChunkServerArgs, master: &str) -> CmdResult {
    let listener = bind(&a.listen.to_string()).await?;
    let http = bind_http(a.http.resolve(a.listen)).await?;
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone());
    let mut config = a.classic.chunkserver_config(a.data.clone(), master, None);
    a.recovery.apply(&mut config);
    config.slow_request = a.telemetry.slow_request;
    config.metrics = !a.telemetry.no_metrics;
    cairn_chunkserver::run_with_http(config, listener, http, shutdown)
        .await
        .map_err(|e| Failure::Other(anyhow::anyhow!("chunk server: {e}")))
}

pub async fn local(a: &LocalArgs) -> CmdResult {
    let master_addr = format!("{}:{}", a.host, a.master_port);
    let master_listener = bind(&master_addr).await?;
    let port = |base: u16, i: u16| (base != 0).then(|| format!("{}:{}", a.host, base + i));
    let master_http = match port(a.http_port, 0) {
        Some(h) => Some((h.clone(), bind(&h).await?)),
        None => None,
    };
    let mut cs_listeners = Vec::new();
    for i in 0..a.chunkservers {
        let addr = format!("{}:{}", a.host, a.chunkserver_port + i);
        let http = match port(a.chunkserver_http_port, i) {
            Some(h) => Some((h.clone(), bind(&h).await?)),
            None => None,
        };
        cs_listeners.push((addr.clone(), bind(&addr).await?, http));
    }
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone());
    let master_dir = a.data.join("master");
    let (master_http_addr, master_http) = match master_http {
        Some((addr, l)) => (Some(addr), Some(l)),
        None => (None, None),
    };
    let master = tokio::spawn(cairn_master::run_with_http(
        a.opts.config(master_dir.clone()),
        master_listener,
        master_http,
        shutdown.clone(),
    ));
    let mut servers = Vec::new();
    for (i, (addr, listener, http)) in cs_listeners.into_iter().enumerate() {
        let dir = a.data.join(format!("cs{}", i + 1));
        let mut config = a.opts.classic.chunkserver_config(
            dir.clone(),
            &master_addr,
            (a.opts.reserve > 0).then_some(a.opts.reserve),
        );
        config.slow_request = a.opts.telemetry.slow_request;
        config.metrics = !a.opts.telemetry.no_metrics;
        let (http_addr, http) = match http {
            Some((h, l)) => (format!("  http {h}"), Some(l)),
            None => (String::new(), None),
        };
        println!("chunk server  {addr}{http_addr}  data {}", dir.display());
        servers.push(tokio::spawn(cairn_chunkserver::run_with_http(
            config,
            listener,
            http,
            shutdown.clone(),
        )));
    }
    println!("master        {master_addr}  data {}", master_dir.display());
    if let Some(h) = &master_http_addr {
        println!("dashboard     http://{h}/   (metrics at /metrics, health at /healthz)");
    }
    println!("cairn local is running; try `cairn put FILE /FILE`, `cairn ls /`. Ctrl-C stops it.");
    println!("every port also speaks the classic protocol (FIND_PRIMARY_SERVER on the master).");
    let mut failed = None;
    let master_result = master.await;
    shutdown.cancel();
    for s in servers {
        if let Ok(Err(e)) = s.await {
            failed = Some(anyhow::anyhow!("chunk server: {e}"));
        }
    }
    match master_result {
        Ok(Err(e)) => return Err(Failure::Other(anyhow::anyhow!("master: {e}"))),
        Err(e) => return Err(Failure::Other(anyhow::anyhow!("master task: {e}"))),
        Ok(Ok(())) => {}
    }
    match failed {
        Some(e) => Err(Failure::Other(e)),
        None => {
            println!("stopped; data kept in {}", a.data.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_servers_http_port_follows_its_listen_port() {
        let at = |s: &str| s.parse::<SocketAddr>().ok();
        let auto = chunkserver_http_arg("auto").unwrap();
        assert_eq!(
            auto.resolve(at("127.0.0.1:6001").unwrap()),
            at("127.0.0.1:9001")
        );
        assert_eq!(
            auto.resolve(at("0.0.0.0:6003").unwrap()),
            at("127.0.0.1:9003")
        );
        assert_eq!(auto.resolve(at("127.0.0.1:64000").unwrap()), None);
        let off = chunkserver_http_arg("off").unwrap();
        assert_eq!(off.resolve(at("127.0.0.1:6001").unwrap()), None);
        let set = chunkserver_http_arg("127.0.0.1:7000").unwrap();
        assert_eq!(
            set.resolve(at("127.0.0.1:6001").unwrap()),
            at("127.0.0.1:7000")
        );
        assert!(chunkserver_http_arg("nonsense").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(humantime_like("10").unwrap(), Duration::from_secs(10));
        assert_eq!(humantime_like("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(humantime_like("2m").unwrap(), Duration::from_secs(120));
        assert!(humantime_like("2 fortnights").is_err());
    }
}
