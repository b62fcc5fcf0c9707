//! The cluster's state as operators see it: servers, replication health, namespace totals,
//! and the master's own state.

use std::sync::atomic::Ordering;
use std::time::Instant;

use cairn_proto::pb;

use crate::master::Master;

impl Master {
    /// A snapshot for `cairn status`, the dashboard and metrics.
    pub fn status(&self) -> pb::ClusterStatusResponse {
        let meta = self.meta.read();
        let totals = meta.totals();
        let chunk_size = meta.chunk_size();
        let cluster = self.cluster();
        let (mut at_goal, mut under, mut over, mut lost) = (0u64, 0u64, 0u64, 0u64);
        let mut bytes_left = 0u64;
        for (id, chunk, goal) in meta.chunks() {
            let live = cluster.current(id, chunk.version).len();
            match live {
                // Past the file's end: its first write never completed, nothing is lost.
                0 if crate::replication::chunk_length(&meta, &chunk) == 0 => {}
                0 => lost += 1,
                n if n < goal as usize => {
                    under += 1;
                    let missing = (goal as usize - n) as u64;
                    bytes_left += missing * crate::replication::chunk_length(&meta, &chunk);
                }
                n if n > goal as usize => over += 1,
                _ => at_goal += 1,
            }
        }
        drop(meta);
        let now = Instant::now();
        let mut servers: Vec<pb::ServerStatus> = cluster
            .servers
            .values()
            .map(|s| {
                let c = s.capacity;
                pb::ServerStatus {
                    server_id: s.id,
                    addr: s.addr.clone(),
                    state: if s.alive { "alive" } else { "dead" }.to_string(),
                    capacity_bytes: c.total_bytes,
                    used_bytes: c.used_bytes,
                    free_bytes: c.free_bytes,
                    replicas: cluster.replica_count(s.id) as u64,
                    last_heartbeat_ms_ago: now.duration_since(s.last_beat).as_millis() as u64,
                    active_requests: s.active_requests,
                    http_addr: s.http_addr.clone(),
                }
            })
            .collect();
        drop(cluster);
        servers.sort_by(|a, b| a.addr.cmp(&b.addr));
        let stats = self.meta.stats();
        let locks = self.meta.read().lock_counts();
        let mut resp = pb::ClusterStatusResponse {
            servers,
            files: totals.files,
            directories: totals.directories,
            total_bytes: totals.bytes,
            chunks: totals.chunks,
            chunks_at_goal: at_goal,
            chunks_under_goal: under,
            chunks_lost: lost,
            chunks_over_goal: over,
            chunk_size,
            safe_mode: self.in_safe_mode(),
            oplog_index: stats.applied_index.load(Ordering::Relaxed),
            last_checkpoint_index: stats.checkpoint_index.load(Ordering::Relaxed),
            events: self.events.recent(),
            sessions: locks.sessions,
            locks_held: locks.locks_held,
            lock_waiters: locks.waiters,
            oplog_bytes: stats.log_bytes.load(Ordering::Relaxed),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            version: env!("CARGO_PKG_VERSION").to_string(),
            symlinks: totals.symlinks,
            master_resident_bytes: cairn_common::memory::resident_bytes().unwrap_or(0),
            master_heap_bytes: cairn_common::memory::heap_in_use().unwrap_or(0),
            ..Default::default()
        };
        self.replication_status(&mut resp, bytes_left);
        resp
    }
}
