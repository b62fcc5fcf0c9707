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
mod heartbeat;
pub mod master;
pub mod metastore;
pub mod oplog;
mod service;
mod sessions;
mod status;

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
    pub checkpoint: CheckpointPolicy,
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
            checkpoint: CheckpointPolicy::default(),
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
    let master = Master::open(config).await?;
    serve(master, listener, shutdown).await
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
    let result = cairn_common::grpc::server()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stopped)
        .await;
    liveness.abort();
    expiry.abort();
    if let Err(e) = master.meta.checkpoint_now().await {
        tracing::warn!(error = %e, "shutdown checkpoint failed; the log still holds everything");
    }
    result.map_err(|e| MasterError::Internal(format!("gRPC server: {e}")))
}
