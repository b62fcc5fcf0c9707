//! Test clusters: a real master and real chunk servers, in-process on loopback listeners
//! (ports chosen by [`ports`]), each with its own data directory under one temp dir.
//!
//! `kill_*` aborts a node's tasks without any shutdown work (what `kill -9` leaves behind
//! on disk: whatever was made durable); `restart_*` starts it again on the same data
//! directory and address. Readiness is always awaited by polling the master's status until
//! a deadline, never by fixed sleeps. Dropping the cluster stops every node and removes the
//! temp dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_chunkserver::ChunkServerConfig;
use cairn_client::{Client, ClientConfig};
use cairn_common::CancellationToken;
use cairn_master::MasterConfig;
use tokio::net::TcpListener;

pub mod http;
pub mod ports;
pub mod process;

/// Default chunk size of test clusters: small, so tests cross chunk boundaries cheaply.
pub const TEST_CHUNK_SIZE: u64 = 1 << 20;

/// One server on its own tokio runtime, so that killing it drops every task it started
/// (connections included), as a crashed process would.
struct Node {
    addr: SocketAddr,
    /// Where the node serves HTTP (/healthz, /metrics, /status).
    http: SocketAddr,
    dir: PathBuf,
    running: Option<Running>,
}

/// A free loopback address for a node's HTTP endpoints.
fn free_http_addr() -> anyhow::Result<SocketAddr> {
    Ok(ports::bind_listener()?.local_addr()?)
}

/// Binds a node's HTTP address again (std sets SO_REUSEADDR, so a restart can reuse it at
/// once); a node that cannot get it runs without HTTP.
fn bind_http(addr: SocketAddr) -> Option<std::net::TcpListener> {
    match std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "test node runs without HTTP");
            None
        }
    }
}

struct Running {
    runtime: tokio::runtime::Runtime,
    token: CancellationToken,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Node {
    /// Starts `serve` on a fresh runtime, handing it a listener bound to `addr`.
    fn start<F, Fut>(
        &mut self,
        name: &str,
        listener: std::net::TcpListener,
        serve: F,
    ) -> anyhow::Result<()>
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("{name}-rt"))
            .enable_all()
            .build()?;
        let token = CancellationToken::new();
        let (tx, done) = tokio::sync::oneshot::channel();
        let t = token.clone();
        listener.set_nonblocking(true)?;
        runtime.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(l) => serve(l, t).await,
                Err(e) => tracing::error!(error = %e, "cannot adopt a test listener"),
            }
            let _ = tx.send(());
        });
        self.running = Some(Running {
            runtime,
            token,
            done,
        });
        Ok(())
    }

    /// Stops the node: cleanly (shutdown token, wait) or abruptly (drop every task).
    async fn stop(&mut self, graceful: bool) {
        let Some(r) = self.running.take() else { return };
        if graceful {
            r.token.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), r.done).await;
        }
        // Blocking work of the node (disk I/O) may still finish, like writes a kernel
        // completes after a process dies; wait for it so the data dir is free again.
        let rt = r.runtime;
        let _ =
            tokio::task::spawn_blocking(move || rt.shutdown_timeout(Duration::from_secs(10))).await;
    }
}

/// Configures a [`TestCluster`].
pub struct Builder {
    chunkservers: usize,
    chunk_size: u64,
    goal: u8,
    tweak_master: Box<dyn Fn(&mut MasterConfig) + Send + Sync>,
    tweak_chunkserver: Box<dyn Fn(&mut ChunkServerConfig) + Send + Sync>,
}

impl Builder {
    pub fn chunkservers(mut self, n: usize) -> Self {
        self.chunkservers = n;
        self
    }

    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes;
        self
    }

    pub fn goal(mut self, goal: u8) -> Self {
        self.goal = goal;
        self
    }

    /// Adjusts the master's config (timeouts and the like).
    pub fn master_config(mut self, f: impl Fn(&mut MasterConfig) + Send + Sync + 'static) -> Self {
        self.tweak_master = Box::new(f);
        self
    }

    /// Adjusts every chunk server's config.
    pub fn chunkserver_config(
        mut self,
        f: impl Fn(&mut ChunkServerConfig) + Send + Sync + 'static,
    ) -> Self {
        self.tweak_chunkserver = Box::new(f);
        self
    }

    /// Starts the nodes and waits until every chunk server has registered.
    pub async fn start(self) -> anyhow::Result<TestCluster> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-test-")
            .tempdir()
            .context("create temp dir")?;
        let master_listener = ports::bind_listener()?;
        let master = Node {
            addr: master_listener.local_addr()?,
            http: free_http_addr()?,
            dir: dir.path().join("master"),
            running: None,
        };
        let mut cluster = TestCluster {
            master,
            chunkservers: Vec::new(),
            builder: self,
            dir: Some(dir),
        };
        cluster.spawn_master(master_listener)?;
        for i in 0..cluster.builder.chunkservers {
            let listener = ports::bind_listener()?;
            let root = cluster.root().to_path_buf();
            cluster.chunkservers.push(Node {
                addr: listener.local_addr()?,
                http: free_http_addr()?,
                dir: root.join(format!("cs{}", i + 1)),
                running: None,
            });
            cluster.spawn_chunkserver(i, listener)?;
        }
        cluster
            .wait_for_servers(cluster.builder.chunkservers, Duration::from_secs(20))
            .await?;
        Ok(cluster)
    }
}

/// A running test cluster.
pub struct TestCluster {
    master: Node,
    chunkservers: Vec<Node>,
    builder: Builder,
    dir: Option<tempfile::TempDir>,
}

impl TestCluster {
    pub fn builder() -> Builder {
        Builder {
            chunkservers: 3,
            chunk_size: TEST_CHUNK_SIZE,
            goal: 3,
            tweak_master: Box::new(|_| {}),
            tweak_chunkserver: Box::new(|_| {}),
        }
    }

    /// Root of every node's data directory.
    pub fn root(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    pub fn master_addr(&self) -> String {
        self.master.addr.to_string()
    }

    /// The master's HTTP address (/healthz, /metrics, /status, the dashboard).
    pub fn master_http_addr(&self) -> String {
        self.master.http.to_string()
    }

    /// A chunk server's HTTP address.
    pub fn chunkserver_http_addr(&self, i: usize) -> String {
        self.chunkservers[i].http.to_string()
    }

    pub fn chunkserver_addr(&self, i: usize) -> String {
        self.chunkservers[i].addr.to_string()
    }

    pub fn chunkserver_dir(&self, i: usize) -> &Path {
        &self.chunkservers[i].dir
    }

    pub fn chunkserver_count(&self) -> usize {
        self.chunkservers.len()
    }

    fn master_config(&self) -> MasterConfig {
        let mut c = MasterConfig::new(self.master.dir.clone());
        c.chunk_size = self.builder.chunk_size;
        c.default_goal = self.builder.goal;
        c.safe_mode_timeout = Duration::from_secs(5);
        (self.builder.tweak_master)(&mut c);
        c
    }

    fn spawn_master(&mut self, listener: std::net::TcpListener) -> anyhow::Result<()> {
        let config = self.master_config();
        let http = bind_http(self.master.http);
        self.master
            .start("master", listener, move |l, token| async move {
                let http = http.and_then(|h| tokio::net::TcpListener::from_std(h).ok());
                if let Err(e) = cairn_master::run_with_http(config, l, http, token).await {
                    tracing::error!(error = %e, "test master stopped with an error");
                }
            })
    }

    fn spawn_chunkserver(
        &mut self,
        i: usize,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<()> {
        let mut config =
            ChunkServerConfig::new(self.chunkservers[i].dir.clone(), self.master_addr());
        config.full_report_interval = Duration::from_secs(30);
        (self.builder.tweak_chunkserver)(&mut config);
        let http = bind_http(self.chunkservers[i].http);
        self.chunkservers[i].start(
            &format!("cs{}", i + 1),
            listener,
            move |l, token| async move {
                let http = http.and_then(|h| tokio::net::TcpListener::from_std(h).ok());
                if let Err(e) = cairn_chunkserver::run_with_http(config, l, http, token).await {
                    tracing::error!(error = %e, "test chunk server stopped with an error");
                }
            },
        )
    }

    /// A client with a short deadline, suitable for tests.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let mut c = ClientConfig::new(self.master_addr());
        c.deadline = Duration::from_secs(20);
        c.attempt_timeout = Duration::from_secs(5);
        Ok(Client::connect(c).await?)
    }

    /// A client with a custom config.
    pub async fn client_with(&self, f: impl FnOnce(&mut ClientConfig)) -> anyhow::Result<Client> {
        let mut c = ClientConfig::new(self.master_addr());
        f(&mut c);
        Ok(Client::connect(c).await?)
    }

    /// Stops the master abruptly (nothing but what is durable survives).
    pub async fn kill_master(&mut self) {
        self.master.stop(false).await;
    }

    /// Stops the master cleanly (it writes a final checkpoint).
    pub async fn stop_master(&mut self) {
        self.master.stop(true).await;
    }

    /// Starts the master again on the same address and data directory.
    pub async fn restart_master(&mut self) -> anyhow::Result<()> {
        self.master.stop(false).await;
        let listener = bind_again(self.master.addr).await?;
        self.spawn_master(listener)
    }

    /// Stops a chunk server abruptly.
    pub async fn kill_chunkserver(&mut self, i: usize) {
        self.chunkservers[i].stop(false).await;
    }

    /// Starts a chunk server again on the same address and data directory.
    pub async fn restart_chunkserver(&mut self, i: usize) -> anyhow::Result<()> {
        self.chunkservers[i].stop(false).await;
        let listener = bind_again(self.chunkservers[i].addr).await?;
        self.spawn_chunkserver(i, listener)
    }

    /// Waits until the master reports `n` live chunk servers.
    pub async fn wait_for_servers(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let client = self
            .client_with(|c| {
                c.deadline = Duration::from_secs(2);
                c.attempt_timeout = Duration::from_secs(1);
            })
            .await?;
        wait_until(timeout, "chunk servers to register", || async {
            match client.status().await {
                Ok(s) => s.servers.iter().filter(|v| v.state == "alive").count() >= n,
                Err(_) => false,
            }
        })
        .await
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // The master first, so it does not log every chunk server leaving.
        for node in std::iter::once(&mut self.master).chain(self.chunkservers.iter_mut()) {
            if let Some(r) = node.running.take() {
                r.token.cancel();
                r.runtime.shutdown_background();
            }
        }
        if std::env::var_os("CAIRN_KEEP_TEST_DIRS").is_some()
            && let Some(d) = self.dir.take()
        {
            eprintln!("keeping test data in {}", d.keep().display());
        }
    }
}

/// Binds an address a stopped node used, retrying briefly while the kernel releases it.
async fn bind_again(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%addr, error = %e, "address still busy");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!("bind {addr} again: {e}"),
        }
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 20 s) until the first chunk of `path` has three replicas at a version
/// above `version`: the master repaired it, which moves the chunk to a new version.
pub async fn wait_for_repair(client: &Client, path: &str, version: u64) -> anyhow::Result<()> {
    wait_until(
        Duration::from_secs(20),
        &format!("the first chunk of {path} repaired at a version above {version}"),
        || async {
            client.chunks(path).await.is_ok_and(|(_, c)| {
                c.first()
                    .is_some_and(|c| c.replicas.len() == 3 && c.version > version)
            })
        },
    )
    .await
}

/// Deterministic pseudo-random bytes (xorshift), so data is non-trivial and reproducible.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Installs a test log subscriber once (respects `RUST_LOG`, default warnings only).
pub fn init_logging() {
    cairn_common::logging::init(cairn_common::logging::LogFormat::Text, "warn");
}
