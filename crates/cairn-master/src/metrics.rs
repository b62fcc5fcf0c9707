//! The master's Prometheus metrics.
//!
//! Counters and histograms on hot paths (requests, op-log batches) are updated as they
//! happen; everything that describes state (servers, chunks by replication state, namespace
//! totals, sessions and locks) is a gauge refreshed from the master's state when `/metrics`
//! is scraped, so watching the cluster costs the request path nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_common::telemetry::RpcMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::master::Master;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabel {
    server: String,
}

/// Gauges refreshed at scrape time.
struct Gauges {
    chunkservers: Family<StateLabel, Gauge>,
    chunks: Family<StateLabel, Gauge>,
    files: Gauge,
    directories: Gauge,
    symlinks: Gauge,
    bytes: Gauge,
    sessions: Gauge,
    locks_held: Gauge,
    lock_waiters: Gauge,
    safe_mode: Gauge,
    oplog_index: Gauge,
    oplog_bytes: Gauge,
    checkpoint_index: Gauge,
    log_failed: Gauge,
    server_capacity: Family<ServerLabel, Gauge>,
    server_used: Family<ServerLabel, Gauge>,
    server_free: Family<ServerLabel, Gauge>,
    server_replicas: Family<ServerLabel, Gauge>,
    server_load: Family<ServerLabel, Gauge>,
    events: Family<KindLabel, Counter>,
    replication: ReplicationGauges,
    resident: Gauge,
    heap: Gauge,
}

/// Re-replication progress (`replication.rs`), as `cairn_master_replication_*`.
struct ReplicationGauges {
    remaining: Gauge,
    in_flight: Gauge,
    rate: Gauge,
    eta: Gauge,
    copies: Family<OutcomeLabel, Counter>,
    surplus: Counter,
    corrupt: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

impl ReplicationGauges {
    fn register(r: &mut Registry) -> ReplicationGauges {
        let copies = Family::<OutcomeLabel, Counter>::default();
        r.register(
            "replication_copies",
            "Re-replication copies by outcome (done, failed)",
            copies.clone(),
        );
        let (surplus, corrupt) = (Counter::default(), Counter::default());
        r.register(
            "replication_surplus_removed",
            "Surplus replicas deleted",
            surplus.clone(),
        );
        r.register(
            "replication_corrupt_replicas",
            "Corrupt replicas reported by chunk servers",
            corrupt.clone(),
        );
        ReplicationGauges {
            remaining: gauge(
                r,
                "replication_remaining_bytes",
                "Bytes still to copy until every chunk is at its goal",
            ),
            in_flight: gauge(
                r,
                "replication_in_flight",
                "Re-replication copies ordered and not finished",
            ),
            rate: gauge(
                r,
                "replication_rate_bytes",
                "Bytes per second copied over the last few seconds",
            ),
            eta: gauge(
                r,
                "replication_eta_seconds",
                "Estimated seconds until every chunk is at its goal (0: none or unknown)",
            ),
            copies,
            surplus,
            corrupt,
        }
    }

    fn set(&self, s: &cairn_proto::pb::ClusterStatusResponse) {
        let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
        self.remaining.set(clamp(s.replication_bytes_left));
        self.in_flight.set(clamp(s.replications_in_flight));
        self.rate.set(clamp(s.replication_rate_bytes));
        self.eta.set(clamp(s.replication_eta_ms.div_ceil(1000)));
        for (outcome, n) in [
            ("done", s.replications_done),
            ("failed", s.replications_failed),
        ] {
            let c = self.copies.get_or_create(&OutcomeLabel { outcome });
            c.inc_by(n.saturating_sub(c.get()));
        }
        self.surplus.inc_by(
            s.surplus_replicas_removed
                .saturating_sub(self.surplus.get()),
        );
        self.corrupt
            .inc_by(s.corrupt_replicas_found.saturating_sub(self.corrupt.get()));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// The master's registry and the handles to its metrics.
pub struct MasterMetrics {
    pub registry: Registry,
    pub rpc: Arc<RpcMetrics>,
    gauges: Gauges,
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

fn family<
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<L, Gauge> {
    let f = Family::<L, Gauge>::default();
    registry.register(name, help, f.clone());
    f
}

impl MasterMetrics {
    /// Registers every master metric under the `cairn_master` prefix; the op log's own
    /// counters and histograms are shared with it.
    pub fn new(log: &crate::metastore::LogStats, slow: Duration, enabled: bool) -> MasterMetrics {
        let mut root = Registry::with_prefix("cairn_master");
        let rpc = RpcMetrics::register(&mut root, slow, enabled);
        let r = &mut root;
        r.register(
            "oplog_appends",
            "Records appended to the operation log",
            log.appends.clone(),
        );
        r.register(
            "oplog_batches",
            "Group commits (one write and fsync each)",
            log.batches.clone(),
        );
        r.register(
            "oplog_fsync_duration_seconds",
            "Write+fsync time of each group commit",
            log.fsync_seconds.clone(),
        );
        r.register(
            "oplog_batch_size_records",
            "Records per group commit",
            log.batch_size.clone(),
        );
        let gauges = Gauges {
            chunkservers: family(r, "chunkservers", "Chunk servers by state"),
            chunks: family(
                r,
                "chunks",
                "Chunks by replication state (at_goal, under_goal, over_goal, lost)",
            ),
            files: gauge(r, "namespace_files", "Files in the namespace"),
            directories: gauge(r, "namespace_directories", "Directories in the namespace"),
            symlinks: gauge(r, "namespace_symlinks", "Symbolic links in the namespace"),
            bytes: gauge(r, "namespace_bytes", "Sum of file lengths"),
            sessions: gauge(r, "sessions", "Open client sessions"),
            locks_held: gauge(r, "locks_held", "Lock ranges held"),
            lock_waiters: gauge(r, "lock_waiters", "Lock requests waiting in queues"),
            safe_mode: gauge(
                r,
                "safe_mode",
                "1 while waiting for chunk reports after a start",
            ),
            oplog_index: gauge(r, "oplog_index", "Index of the last applied log record"),
            oplog_bytes: gauge(r, "oplog_size_bytes", "Bytes in live log segments"),
            checkpoint_index: gauge(
                r,
                "checkpoint_index",
                "Log index the newest checkpoint covers",
            ),
            log_failed: gauge(
                r,
                "oplog_failed",
                "1 if the operation log failed and mutations are refused",
            ),
            server_capacity: family(
                r,
                "chunkserver_capacity_bytes",
                "Disk size of each chunk server's data directory",
            ),
            server_used: family(
                r,
                "chunkserver_used_bytes",
                "Used bytes on each chunk server's disk",
            ),
            server_free: family(
                r,
                "chunkserver_free_bytes",
                "Free bytes on each chunk server's disk",
            ),
            server_replicas: family(
                r,
                "chunkserver_replicas",
                "Replicas each chunk server holds",
            ),
            server_load: family(
                r,
                "chunkserver_active_requests",
                "Data-path requests each chunk server is serving",
            ),
            events: {
                let f = Family::<KindLabel, Counter>::default();
                let help = "Cluster events since the master started, by kind (replica_corrupt counts corrupt replicas found)";
                r.register("events", help, f.clone());
                f
            },
            replication: ReplicationGauges::register(r),
            resident: gauge(
                r,
                "resident_memory_bytes",
                "Resident memory of the master process",
            ),
            heap: gauge(
                r,
                "heap_in_use_bytes",
                "Heap blocks the master process has in use (the rest of its resident memory is code, stacks and allocator free space)",
            ),
        };
        MasterMetrics {
            registry: root,
            rpc,
            gauges,
        }
    }

    /// Refreshes the gauges from the master's state and encodes everything.
    pub fn render(&self, master: &Master) -> String {
        let s = master.status();
        let g = &self.gauges;
        let alive = s.servers.iter().filter(|v| v.state == "alive").count() as i64;
        g.chunkservers
            .get_or_create(&StateLabel { state: "alive" })
            .set(alive);
        g.chunkservers
            .get_or_create(&StateLabel { state: "dead" })
            .set(s.servers.len() as i64 - alive);
        for (state, n) in [
            ("at_goal", s.chunks_at_goal),
            ("under_goal", s.chunks_under_goal),
            ("over_goal", s.chunks_over_goal),
            ("lost", s.chunks_lost),
        ] {
            g.chunks.get_or_create(&StateLabel { state }).set(n as i64);
        }
        g.files.set(s.files as i64);
        g.directories.set(s.directories as i64);
        g.symlinks.set(s.symlinks as i64);
        g.bytes.set(s.total_bytes.min(i64::MAX as u64) as i64);
        g.sessions.set(s.sessions as i64);
        g.locks_held.set(s.locks_held as i64);
        g.lock_waiters.set(s.lock_waiters as i64);
        g.safe_mode.set(i64::from(s.safe_mode));
        g.oplog_index.set(s.oplog_index as i64);
        g.oplog_bytes.set(s.oplog_bytes as i64);
        g.checkpoint_index.set(s.last_checkpoint_index as i64);
        g.log_failed.set(i64::from(
            master.meta.stats().failed.load(Ordering::Relaxed),
        ));
        for f in [
            &g.server_capacity,
            &g.server_used,
            &g.server_free,
            &g.server_replicas,
            &g.server_load,
        ] {
            f.clear();
        }
        for v in s.servers.iter().filter(|v| v.state == "alive") {
            let l = ServerLabel {
                server: v.addr.clone(),
            };
            g.server_capacity
                .get_or_create(&l)
                .set(v.capacity_bytes as i64);
            g.server_used.get_or_create(&l).set(v.used_bytes as i64);
            g.server_free.get_or_create(&l).set(v.free_bytes as i64);
            g.server_replicas.get_or_create(&l).set(v.replicas as i64);
            g.server_load
                .get_or_create(&l)
                .set(i64::from(v.active_requests));
        }
        g.replication.set(&s);
        g.resident
            .set(s.master_resident_bytes.min(i64::MAX as u64) as i64);
        g.heap.set(s.master_heap_bytes.min(i64::MAX as u64) as i64);
        for (kind, n) in master.events.totals() {
            let c = g.events.get_or_create(&KindLabel { kind });
            c.inc_by(n.saturating_sub(c.get()));
        }
        cairn_common::telemetry::encode(&self.registry)
    }
}
