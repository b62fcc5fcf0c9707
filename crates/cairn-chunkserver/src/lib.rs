//! The Cairn chunk server: stores replicas (through `cairn-chunk-store`), takes part in
//! chain writes, serves verified reads, and reports to the master.
//!
//! Entry point: [`run`] takes a config, an already-bound listener and a shutdown token, so
//! tests can run chunk servers in-process on ephemeral ports.

mod classic;
mod control;
pub mod error;
mod heartbeat;
mod http;
pub mod metrics;
mod read;
pub mod replicate;
pub mod scrub;
pub mod server;
mod service;
pub mod space;
pub mod throttle;
mod write;
mod write_small;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_chunk_store::{ChunkStore, StoreConfig};
use cairn_common::CancellationToken;
use cairn_common::classic::{ClassicConfig, DRAIN_GRACE};
use cairn_proto::CairnPath;
use cairn_proto::pb::chunk_service_server::ChunkServiceServer;
use tokio::net::TcpListener;

pub use server::ChunkServer;
pub use service::ChunkServiceImpl;

/// Everything a chunk server needs to run.
#[derive(Clone, Debug)]
pub struct ChunkServerConfig {
    /// Holds `server.id` and the replica store.
    pub data_dir: PathBuf,
    /// The master's RPC address.
    pub master_addr: String,
    /// Address to announce; defaults to the listener's address.
    pub advertise_addr: Option<String>,
    pub heartbeat_interval: Duration,
    /// How often the full replica list is re-sent, to heal any drift.
    pub full_report_interval: Duration,
    /// Replicas per registration message of a full report.
    pub report_batch: usize,
    /// Free space below which no new replicas are taken; `None`: 1 GiB or 5% of the
    /// disk, whichever is smaller.
    pub reserve_bytes: Option<u64>,
    /// Bytes per second all re-replication copies into this server may move together
    /// (0: no limit), so that clients are still served.
    pub replication_bandwidth: u64,
    /// Re-replication copies this server makes at once.
    pub replication_concurrency: usize,
    /// Bytes per second the scrubber verifies (0: no scrubbing).
    pub scrub_bandwidth: u64,
    /// A scrub pass (every replica verified) starts at most this often.
    pub scrub_interval: Duration,
    /// Directory the classic protocol's file names live in.
    pub classic_dir: CairnPath,
    /// The classic protocol, served beside gRPC on the same port.
    pub classic: ClassicConfig,
    /// Requests at least this slow are logged at INFO (the rest at DEBUG).
    pub slow_request: Duration,
    /// Record request metrics (off only to measure their cost).
    pub metrics: bool,
}

impl ChunkServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>, master_addr: impl Into<String>) -> ChunkServerConfig {
        ChunkServerConfig {
            data_dir: data_dir.into(),
            master_addr: master_addr.into(),
            advertise_addr: None,
            heartbeat_interval: Duration::from_secs(1),
            full_report_interval: Duration::from_secs(300),
            report_batch: 10_000,
            reserve_bytes: None,
            replication_bandwidth: 100 << 20,
            replication_concurrency: 4,
            scrub_bandwidth: 8 << 20,
            scrub_interval: Duration::from_secs(24 * 3600),
            classic_dir: CairnPath::root(),
            classic: ClassicConfig::default(),
            slow_request: Duration::from_millis(500),
            metrics: true,
        }
    }
}

/// Errors that stop a chunk server from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum ChunkServerError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("replica store: {0}")]
    Store(#[from] cairn_chunk_store::StoreError),
    #[error("gRPC server: {0}")]
    Serve(String),
}

/// Opens the store and serves gRPC and the classic protocol until `shutdown` fires.
/// Shutdown order: stop taking classic requests and finish those being executed (at most
/// `DRAIN_GRACE`, while gRPC still serves the data path they use); stop accepting and
/// finish in-flight gRPC requests; stop heartbeats (the master then marks this server dead).
pub async fn run(
    config: ChunkServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ChunkServerError> {
    run_with_http(config, listener, None, shutdown).await
}

/// Like [`run`], also serving `/healthz`, `/metrics` and `/status` on `http`.
pub async fn run_with_http(
    config: ChunkServerConfig,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), ChunkServerError> {
    let dir_err = |source| ChunkServerError::DataDir {
        path: config.data_dir.clone(),
        source,
    };
    let id = server::load_or_create_id(&config.data_dir).map_err(dir_err)?;
    let addr = match &config.advertise_addr {
        Some(a) => a.clone(),
        None => listener.local_addr().map_err(dir_err)?.to_string(),
    };
    let reserve =
        space::resolve_reserve(&config.data_dir, config.reserve_bytes).map_err(dir_err)?;
    let mut config = config;
    config.reserve_bytes = Some(reserve);
    let store_cfg = StoreConfig {
        reserve_bytes: reserve,
        ..StoreConfig::default()
    };
    let store_dir = config.data_dir.join("store");
    let (store, report) =
        tokio::task::spawn_blocking(move || ChunkStore::open(&store_dir, store_cfg))
            .await
            .map_err(|e| ChunkServerError::Serve(e.to_string()))??;
    tracing::info!(id, %addr, replicas = report.replicas, replayed = report.journal_records_replayed,
        torn_tail_cut = report.torn_tail_cut, bad = ?report.bad_replicas_removed, "chunk store opened");
    let classic_client = classic::client_config(&config.master_addr, config.classic.timeout);
    let classic_client = cairn_client::Client::connect(classic_client)
        .await
        .map_err(|e| ChunkServerError::Serve(format!("classic protocol client: {e}")))?;
    let server = Arc::new(ChunkServer::new(id, addr, config, Arc::new(store)));
    let http_task = match http {
        Some(l) => {
            if let Ok(a) = l.local_addr() {
                *server.http_addr.lock().unwrap_or_else(|p| p.into_inner()) = a.to_string();
            }
            let router = http::router(server.clone());
            Some(tokio::spawn(cairn_common::telemetry::serve_http(
                l,
                router,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let heartbeats = tokio::spawn(server.clone().heartbeat_loop(shutdown.clone()));
    let scrubber = tokio::spawn(server.clone().scrub_loop(shutdown.clone()));
    let service = ChunkServiceServer::new(ChunkServiceImpl {
        server: server.clone(),
    })
    .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES);
    let (incoming, classic) =
        classic::listen(listener, server.clone(), classic_client, shutdown.clone());
    let stopped = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            classic.drain(DRAIN_GRACE).await;
        }
    };
    let telemetry =
        cairn_common::telemetry::TelemetryLayer::new("chunkserver", server.metrics.rpc.clone());
    let result = cairn_common::grpc::server()
        .layer(telemetry)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stopped)
        .await;
    heartbeats.abort();
    scrubber.abort();
    if let Some(h) = http_task {
        let _ = h.await;
    }
    result.map_err(|e| ChunkServerError::Serve(e.to_string()))
}
