//! The Cairn master: the durable namespace (operation log + checkpoints over the
//! `cairn-meta` state machine), chunk placement, write leases, the chunk server registry
//! and heartbeats.
//!
//! Entry point: [`run`] takes a config, an already-bound listener and a shutdown token, so
//! tests can run masters in-process on ephemeral ports.

pub mod checkpoint;
mod classic;
pub mod cluster;
mod datapath;
pub mod error;
pub mod events;
mod heartbeat;
mod http;
pub mod master;
pub mod metastore;
pub mod metrics;
pub mod oplog;
mod posix;
mod posix_service;
pub mod prepared;
pub mod replication;
mod replication_jobs;
mod service;
mod sessions;
mod status;
mod version_bump;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_common::CancellationToken;
use cairn_common::classic::{ClassicConfig, DRAIN_GRACE};
use cairn_meta::CairnPath;
use cairn_proto::pb::master_server::MasterServer;
use tokio::net::TcpListener;

pub use error::MasterError;
pub use master::Master;
pub use metastore::CheckpointPolicy;
pub use service::MasterService;

/// Default chunk size of a new file system.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;

/// How often the master checks whether freed heap should go back to the system, and the
/// least slack worth a trim (`cairn_common::memory::TrimPolicy`).
const TRIM_CHECK: Duration = Duration::from_secs(10);
const TRIM_MIN_SLACK: u64 = 16 << 20;

/// Everything a master needs to run.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// Where the operation log and checkpoints live.
    pub data_dir: PathBuf,
    /// Chunk size used when formatting a new file system (ignored afterwards).
    pub chunk_size: u64,
    /// Replication goal of new files.
    pub default_goal: u8,
    /// Fewest replicas a write may complete on (the classic COPY_ERROR below it).
    pub min_replicas: usize,
    /// How long a write lease lasts before it must be renewed.
    pub lease_duration: Duration,
    /// A chunk server silent this long is dead.
    pub dead_timeout: Duration,
    /// Longest wait for chunk reports after a start before re-replication begins.
    pub safe_mode_timeout: Duration,
    /// How long an unknown replica is kept before it is deleted as garbage.
    pub gc_grace: Duration,
    /// Servers with less free space take no new replicas.
    pub reserve_bytes: u64,
    /// A client session silent this long expires and its locks are released.
    pub session_timeout: Duration,
    /// Requests at least this slow are logged at INFO (the rest at DEBUG).
    pub slow_request: Duration,
    /// Record request metrics (off only to measure their cost).
    pub metrics: bool,
    pub checkpoint: CheckpointPolicy,
    /// Re-replication limits and timing.
    pub replication: replication::ReplicationConfig,
    /// Directory classic file names live in; created at start if missing.
    pub classic_dir: CairnPath,
    /// The classic protocol, served beside gRPC on the same port.
    pub classic: ClassicConfig,
}

impl MasterConfig {
    /// Defaults for a master keeping its metadata in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> MasterConfig {
        MasterConfig {
            data_dir: data_dir.into(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            default_goal: 3,
            min_replicas: 1,
            lease_duration: Duration::from_secs(60),
            dead_timeout: Duration::from_secs(10),
            safe_mode_timeout: Duration::from_secs(10),
            gc_grace: Duration::from_secs(30),
            reserve_bytes: 0,
            session_timeout: Duration::from_secs(10),
            slow_request: Duration::from_millis(500),
            metrics: true,
            checkpoint: CheckpointPolicy::default(),
            replication: replication::ReplicationConfig::default(),
            classic_dir: CairnPath::root(),
            classic: ClassicConfig::default(),
        }
    }
}

/// Opens the namespace and serves until `shutdown` fires.
pub async fn run(
    config: MasterConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), MasterError> {
    run_with_http(config, listener, None, shutdown).await
}

/// Like [`run`], also serving `/healthz`, `/metrics`, `/status` and the dashboard on `http`.
pub async fn run_with_http(
    config: MasterConfig,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), MasterError> {
    let master = Master::open(config).await?;
    serve_with_http(master, listener, http, shutdown).await
}

/// Serves an opened master on `listener` (gRPC and the classic protocol) until `shutdown`
/// fires. Shutdown order: end heartbeat streams and stop taking classic requests; finish
/// classic requests being executed (at most `DRAIN_GRACE`); stop accepting and finish
/// in-flight gRPC requests; write a checkpoint.
pub async fn serve(
    master: Arc<Master>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), MasterError> {
    serve_with_http(master, listener, None, shutdown).await
}

/// [`serve`], plus the HTTP endpoints on `http` when given.
pub async fn serve_with_http(
    master: Arc<Master>,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), MasterError> {
    let metrics = Arc::new(metrics::MasterMetrics::new(
        master.meta.stats(),
        master.config.slow_request,
        master.config.metrics,
    ));
    let http_task = http.map(|l| {
        let router = http::router(master.clone(), metrics.clone());
        tokio::spawn(cairn_common::telemetry::serve_http(
            l,
            router,
            shutdown.clone(),
        ))
    });
    let addr = listener
        .local_addr()
        .map_err(|e| MasterError::Internal(e.to_string()))?;
    tracing::info!(%addr, "master serving gRPC and the classic protocol");
    classic::ensure_dir(&master).await;
    let liveness = {
        let master = master.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => master.check_liveness(),
                }
            }
        })
    };
    let replicator = tokio::spawn(replication::run(master.clone(), shutdown.clone()));
    let expiry = {
        let master = master.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => master.expire_sessions().await,
                }
            }
        })
    };
    let trimmer = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut policy = cairn_common::memory::TrimPolicy::new(TRIM_MIN_SLACK);
            let mut tick = tokio::time::interval(TRIM_CHECK);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        // A trim holds the allocator's locks for milliseconds: off the
                        // runtime's workers.
                        let checked = tokio::task::spawn_blocking(move || {
                            let freed = policy.check();
                            (policy, freed)
                        })
                        .await;
                        let Ok((p, freed)) = checked else { break };
                        policy = p;
                        if let Some(bytes) = freed {
                            tracing::debug!(bytes, "gave free heap back to the system");
                        }
                    }
                }
            }
        })
    };
    master.set_shutdown(shutdown.clone());
    let service = MasterServer::new(MasterService {
        master: master.clone(),
    })
    .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES);
    let (incoming, classic) = classic::listen(listener, master.clone(), shutdown.clone());
    let stopped = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            classic.drain(DRAIN_GRACE).await;
        }
    };
    let telemetry = cairn_common::telemetry::TelemetryLayer::new("master", metrics.rpc.clone());
    let result = cairn_common::grpc::server()
        .layer(telemetry)
        .add_service(service)
        .add_service(posix_service::FsService::server(master.clone()))
        .serve_with_incoming_shutdown(incoming, stopped)
        .await;
    liveness.abort();
    expiry.abort();
    trimmer.abort();
    replicator.abort();
    if let Some(h) = http_task {
        let _ = h.await;
    }
    if let Err(e) = master.meta.checkpoint_now().await {
        tracing::warn!(error = %e, "shutdown checkpoint failed; the log still holds everything");
    }
    result.map_err(|e| MasterError::Internal(format!("gRPC server: {e}")))
}
