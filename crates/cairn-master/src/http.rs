//! The master's HTTP face: `/healthz`, `/metrics` (Prometheus text), `/status` (JSON, the
//! same facts as `cairn status --json`), and the web dashboard at `/`, whose page and
//! script are compiled into the binary (no CDN: it works without internet access).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::master::Master;
use crate::metrics::MasterMetrics;

const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../assets/dashboard.css");

#[derive(Clone)]
struct Web {
    master: Arc<Master>,
    metrics: Arc<MasterMetrics>,
}

/// The master's HTTP routes.
pub fn router(master: Arc<Master>, metrics: Arc<MasterMetrics>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", DASHBOARD_HTML) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_handler))
        .route("/status", get(status))
        .with_state(Web { master, metrics })
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn healthz(State(w): State<Web>) -> Response {
    match w.master.health() {
        Ok(()) => cairn_common::telemetry::text(200, "ok\n"),
        Err(reason) => cairn_common::telemetry::text(503, format!("unhealthy: {reason}\n")),
    }
}

async fn metrics_handler(State(w): State<Web>) -> Response {
    use axum::response::IntoResponse;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        w.metrics.render(&w.master),
    )
        .into_response()
}

async fn status(State(w): State<Web>) -> Response {
    axum::Json(w.master.status()).into_response()
}

impl Master {
    /// Whether the master is serving: its log works, it is out of safe mode, and its data
    /// directory takes writes. `Err` says why not.
    pub fn health(&self) -> Result<(), String> {
        if self
            .meta
            .stats()
            .failed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(
                "the operation log failed; the master refuses changes until restarted".into(),
            );
        }
        if self.in_safe_mode() {
            return Err("safe mode: waiting for chunk servers to report their replicas".into());
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
