//! The chunk server's Prometheus metrics: request counts and latencies, bytes moved,
//! corruption found, and (refreshed when scraped) its disk, replicas, load and journal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_common::telemetry::RpcMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::server::ChunkServer;

/// One chunk server's registry and metric handles.
pub struct ChunkMetrics {
    pub registry: Registry,
    pub rpc: Arc<RpcMetrics>,
    /// Data bytes received by chain writes (staged on this replica).
    pub written_bytes: Counter,
    /// Verified data bytes sent to readers and peers.
    pub read_bytes: Counter,
    /// Replicas found corrupt (by a read or the scrubber) and removed.
    pub corrupt_replicas: Counter,
    capacity: Gauge,
    used: Gauge,
    free: Gauge,
    replica_bytes: Gauge,
    replicas: Gauge,
    active: Gauge,
    registered: Gauge,
    journal_records: Gauge,
    journal_syncs: Gauge,
    /// Scrubber and re-replication figures (`scrub.rs`, `replicate.rs`).
    background: [(Gauge, Reader); 10],
}

/// Reads one figure off the server.
type Reader = fn(&ChunkServer) -> u64;
/// `(name, help, read)` of the scrubber's and re-replication's figures.
type Figure = (&'static str, &'static str, Reader);

const BACKGROUND: [Figure; 10] = [
    (
        "scrub_passes",
        "Scrub passes completed (every replica verified)",
        |s| s.scrub.passes.load(Ordering::Relaxed),
    ),
    (
        "scrub_verified_replicas",
        "Replicas the scrubber verified, all passes",
        |s| s.scrub.replicas_verified.load(Ordering::Relaxed),
    ),
    (
        "scrub_verified_bytes",
        "Bytes the scrubber verified, all passes",
        |s| s.scrub.bytes_verified.load(Ordering::Relaxed),
    ),
    (
        "scrub_corrupt_replicas",
        "Replicas the scrubber found corrupt and removed",
        |s| s.scrub.corrupt_found.load(Ordering::Relaxed),
    ),
    (
        "scrub_errors",
        "Replicas the scrubber could not read (I/O errors)",
        |s| s.scrub.errors.load(Ordering::Relaxed),
    ),
    (
        "scrub_pass_done_replicas",
        "Replicas checked so far in the current pass",
        |s| s.scrub.pass_done.load(Ordering::Relaxed),
    ),
    (
        "scrub_pass_total_replicas",
        "Replicas in the current pass",
        |s| s.scrub.pass_total.load(Ordering::Relaxed),
    ),
    (
        "scrub_last_pass_seconds",
        "Duration of the last complete pass",
        |s| s.scrub.last_pass_ms.load(Ordering::Relaxed) / 1000,
    ),
    (
        "replication_copies_in_progress",
        "Re-replication copies into this server running now",
        |s| s.replication.in_progress() as u64,
    ),
    (
        "replication_received_bytes",
        "Bytes received by re-replication copies since start",
        |s| s.replication.bytes_copied.load(Ordering::Relaxed),
    ),
];

fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    r.register(name, help, c.clone());
    c
}

fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    r.register(name, help, g.clone());
    g
}

impl ChunkMetrics {
    /// Registers every chunk server metric under the `cairn_chunkserver` prefix.
    pub fn new(slow: Duration, enabled: bool) -> ChunkMetrics {
        let mut registry = Registry::with_prefix("cairn_chunkserver");
        let rpc = RpcMetrics::register(&mut registry, slow, enabled);
        let r = &mut registry;
        ChunkMetrics {
            rpc,
            written_bytes: counter(r, "written_bytes", "Data bytes received by chain writes"),
            read_bytes: counter(
                r,
                "read_bytes",
                "Verified data bytes sent to readers and peers",
            ),
            corrupt_replicas: counter(r, "corrupt_replicas", "Replicas found corrupt and removed"),
            capacity: gauge(
                r,
                "capacity_bytes",
                "Size of the data directory's file system",
            ),
            used: gauge(
                r,
                "used_bytes",
                "Used bytes on the data directory's file system",
            ),
            free: gauge(
                r,
                "free_bytes",
                "Free bytes on the data directory's file system",
            ),
            replica_bytes: gauge(r, "replica_bytes", "Bytes held in replicas"),
            replicas: gauge(r, "replicas", "Replicas held"),
            active: gauge(r, "active_requests", "Data-path requests being served"),
            registered: gauge(r, "registered", "1 once registered with the master"),
            journal_records: gauge(
                r,
                "journal_records",
                "Mutation records in the replica journal since start",
            ),
            journal_syncs: gauge(
                r,
                "journal_syncs",
                "Journal fsyncs since start (group commits)",
            ),
            background: BACKGROUND.map(|(name, help, read)| (gauge(r, name, help), read)),
            registry,
        }
    }

    /// Refreshes the gauges from the server's state and encodes everything.
    pub fn render(&self, server: &ChunkServer) -> String {
        if let Ok(c) = server.store.capacity() {
            self.capacity.set(c.total_bytes as i64);
            self.used.set(c.used_bytes as i64);
            self.free.set(c.free_bytes as i64);
            self.replica_bytes.set(c.replica_bytes as i64);
        }
        self.replicas.set(server.store.replicas().len() as i64);
        self.active
            .set(i64::from(server.active_requests.load(Ordering::Relaxed)));
        self.registered
            .set(i64::from(server.registration().is_some()));
        let s = server.store.stats();
        self.journal_records.set(s.journal_records as i64);
        self.journal_syncs.set(s.journal_syncs as i64);
        for (g, read) in &self.background {
            g.set(read(server).min(i64::MAX as u64) as i64);
        }
        cairn_common::telemetry::encode(&self.registry)
    }
}
