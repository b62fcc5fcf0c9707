//! Request telemetry for gRPC servers, and the metrics registry every node exposes.
//!
//! [`TelemetryLayer`] wraps a tonic server: for every request it counts the call by method
//! and gRPC status code, observes its latency in a histogram, and writes one log line: at
//! DEBUG normally, at INFO when the call failed or took longer than the slow threshold. The
//! line carries the method, the duration, the outcome and a `subject` (the path or chunk the
//! call touched) that handlers record on the current span with [`record_subject`].
//!
//! For a streaming response, the latency is the time until the response starts; for a
//! streaming request (a chain write), it is the whole call.
//!
//! Every node has its own [`prometheus_client::registry::Registry`]: `cairn local` runs four
//! nodes in one process, and each node's `/metrics` must show that node only, so there is no
//! global recorder. Metric names follow `cairn_<role>_<what>_<unit>` (`_seconds`, `_bytes`,
//! `_total` for counters).

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

/// Buckets for request latencies: 50 µs to ~52 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 21)
}

/// Labels of a finished call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub method: String,
    pub code: String,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

/// Per-method request counts and latencies of one server.
pub struct RpcMetrics {
    requests: Family<CallLabels, Counter>,
    duration: Family<MethodLabels, Histogram>,
    /// Calls at least this slow are logged at INFO.
    pub slow: Duration,
    enabled: AtomicBool,
}

impl RpcMetrics {
    /// Registers `<prefix>_rpc_requests_total` and `<prefix>_rpc_duration_seconds`.
    pub fn register(registry: &mut Registry, slow: Duration, enabled: bool) -> Arc<RpcMetrics> {
        let m = RpcMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            slow,
            enabled: AtomicBool::new(enabled),
        };
        registry.register(
            "rpc_requests",
            "Requests served, by method and gRPC status code",
            m.requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "Request latency by method",
            m.duration.clone(),
        );
        Arc::new(m)
    }

    fn observe(&self, method: &str, code: &str, elapsed: Duration) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        self.requests
            .get_or_create(&CallLabels {
                method: method.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&MethodLabels {
                method: method.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// Records what a request touched (a path, a chunk) on the current request's span, so its
/// log line names it.
pub fn record_subject(subject: impl Display) {
    tracing::Span::current().record("subject", tracing::field::display(subject));
}

/// A tower layer adding telemetry to a gRPC server.
#[derive(Clone)]
pub struct TelemetryLayer {
    metrics: Arc<RpcMetrics>,
    role: &'static str,
}

impl TelemetryLayer {
    pub fn new(role: &'static str, metrics: Arc<RpcMetrics>) -> TelemetryLayer {
        TelemetryLayer { metrics, role }
    }
}

impl<S> tower_layer::Layer<S> for TelemetryLayer {
    type Service = Telemetry<S>;
    fn layer(&self, inner: S) -> Telemetry<S> {
        Telemetry {
            inner,
            metrics: self.metrics.clone(),
            role: self.role,
        }
    }
}

/// The service [`TelemetryLayer`] wraps around a server.
#[derive(Clone)]
pub struct Telemetry<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
    role: &'static str,
}

/// The gRPC status code of a response whose status came in its headers ("trailers-only",
/// how tonic answers errors); `OK` otherwise.
fn grpc_code<B>(res: &http::Response<B>) -> String {
    match res
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(code) => format!("{:?}", tonic::Code::from_i32(code)),
        None => "Ok".to_string(),
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Telemetry<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Display,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = req
            .uri()
            .path()
            .trim_start_matches('/')
            .trim_start_matches("cairn.v1.")
            .to_string();
        let span = tracing::info_span!("rpc", role = self.role, method = %method, subject = tracing::field::Empty);
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let fut = {
            let _enter = span.enter();
            inner.call(req)
        };
        Box::pin(
            async move {
                let res = fut.await;
                let elapsed = start.elapsed();
                let code = match &res {
                    Ok(r) => grpc_code(r),
                    Err(_) => "TransportError".to_string(),
                };
                metrics.observe(&method, &code, elapsed);
                let ms = elapsed.as_secs_f64() * 1000.0;
                if code != "Ok" {
                    tracing::info!(duration_ms = ms, outcome = %code, "request failed");
                } else if elapsed >= metrics.slow {
                    tracing::info!(duration_ms = ms, outcome = "Ok", "slow request");
                } else {
                    tracing::debug!(duration_ms = ms, outcome = "Ok", "request");
                }
                res
            }
            .instrument(span),
        )
    }
}

/// The registry's metrics in the Prometheus/OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "could not encode metrics");
    }
    out
}

/// Serves an HTTP router on `listener` until `shutdown` fires.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: crate::CancellationToken,
) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, "HTTP serving");
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(%addr, error = %e, "HTTP server stopped");
    }
}

/// A plain-text HTTP answer with a status code.
pub fn text(status: u16, body: impl Into<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let code = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body.into(),
    )
        .into_response()
}

/// The `/metrics` answer for a registry.
pub fn metrics_response(registry: &Registry) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        encode(registry),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tower_layer::Layer;
    use tower_service::Service;

    /// A service answering with a fixed gRPC status after a delay.
    #[derive(Clone)]
    struct Fake {
        code: Option<i32>,
        delay: Duration,
    }

    impl Service<http::Request<()>> for Fake {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<http::Response<()>, Self::Error>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let (code, delay) = (self.code, self.delay);
            Box::pin(async move {
                record_subject("/some/path");
                tokio::time::sleep(delay).await;
                let mut b = http::Response::builder();
                if let Some(c) = code {
                    b = b.header("grpc-status", c.to_string());
                }
                Ok(b.body(()).expect("valid response"))
            })
        }
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn call(metrics: &Arc<RpcMetrics>, path: &str, code: Option<i32>, delay: Duration) {
        let mut svc = TelemetryLayer::new("test", metrics.clone()).layer(Fake { code, delay });
        let req = http::Request::builder()
            .uri(path)
            .body(())
            .expect("valid request");
        let _ = svc.call(req).await;
    }

    #[tokio::test]
    async fn logs_fast_calls_at_debug_and_slow_or_failed_ones_at_info_and_counts_them() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut registry = Registry::default();
        let metrics = RpcMetrics::register(&mut registry, Duration::from_millis(30), true);
        call(&metrics, "/cairn.v1.Master/Stat", None, Duration::ZERO).await;
        call(&metrics, "/cairn.v1.Master/Create", Some(5), Duration::ZERO).await;
        call(
            &metrics,
            "/cairn.v1.Master/List",
            None,
            Duration::from_millis(60),
        )
        .await;
        let out =
            String::from_utf8(capture.0.lock().expect("capture lock").clone()).expect("utf-8 log");
        assert!(
            !out.contains("Master/Stat"),
            "a fast call is DEBUG only: {out}"
        );
        assert!(
            out.contains("Master/Create")
                && out.contains("NotFound")
                && out.contains("request failed"),
            "{out}"
        );
        assert!(
            out.contains("Master/List") && out.contains("slow request"),
            "{out}"
        );
        assert!(
            out.contains("subject=/some/path"),
            "the subject is on the line: {out}"
        );
        let text = encode(&registry);
        assert!(
            text.contains(r#"rpc_requests_total{method="Master/Create",code="NotFound"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rpc_requests_total{method="Master/Stat",code="Ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rpc_duration_seconds_count{method="Master/List"} 1"#),
            "{text}"
        );
    }
}
