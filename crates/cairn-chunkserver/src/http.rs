//! The chunk server's HTTP face: `/healthz`, `/metrics` (Prometheus text) and `/status`
//! (JSON).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::server::ChunkServer;

/// The chunk server's HTTP routes.
pub fn router(server: Arc<ChunkServer>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(server)
}

async fn healthz(State(s): State<Arc<ChunkServer>>) -> Response {
    match s.health() {
        Ok(()) => cairn_common::telemetry::text(200, "ok\n"),
        Err(reason) => cairn_common::telemetry::text(503, format!("unhealthy: {reason}\n")),
    }
}

async fn metrics(State(s): State<Arc<ChunkServer>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(&s),
    )
        .into_response()
}

async fn status(State(s): State<Arc<ChunkServer>>) -> Response {
    let cap = s.store.capacity().ok();
    let stats = s.store.stats();
    axum::Json(serde_json::json!({
        "server_id": s.id,
        "addr": s.addr,
        "master": s.config.master_addr,
        "registered": s.registration().is_some(),
        "healthy": s.health().is_ok(),
        "health": s.health().err(),
        "replicas": s.store.replicas().len(),
        "active_requests": s.active_requests.load(std::sync::atomic::Ordering::Relaxed),
        "capacity_bytes": cap.map(|c| c.total_bytes),
        "used_bytes": cap.map(|c| c.used_bytes),
        "free_bytes": cap.map(|c| c.free_bytes),
        "replica_bytes": cap.map(|c| c.replica_bytes),
        "journal_records": stats.journal_records,
        "journal_syncs": stats.journal_syncs,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

impl ChunkServer {
    /// Whether the server is serving: registered with the master and able to write to its
    /// data directory. `Err` says why not.
    pub fn health(&self) -> Result<(), String> {
        if self.registration().is_none() {
            return Err(format!(
                "not registered with the master at {}",
                self.config.master_addr
            ));
        }
        let probe = self.config.data_dir.join(".healthz-probe");
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                format!(
                    "data directory {} is not writable: {e}",
                    self.config.data_dir.display()
                )
            })
    }
}
