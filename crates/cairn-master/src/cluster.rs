//! Soft state about the cluster: chunk servers, where replicas live, and write leases.
//!
//! None of this is logged. After a master restart it is rebuilt from chunk servers'
//! registrations and reports, as in GFS. All methods are short and synchronous; callers
//! hold the mutex around a `Cluster` only briefly and never across an `.await`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cairn_proto::pb;
use rand::seq::SliceRandom;
use tokio::sync::mpsc;

pub type ServerId = u64;
pub type ChunkId = u64;
/// What travels to a chunk server on its heartbeat stream.
pub type Outgoing = Result<pb::HeartbeatResponse, tonic::Status>;

/// One registered chunk server.
pub struct Server {
    pub id: ServerId,
    pub addr: String,
    pub capacity: pb::Capacity,
    pub last_beat: Instant,
    pub alive: bool,
    pub active_requests: u32,
    /// Commands to the server ride on its heartbeat stream; `None` while it is dead.
    pub commands: Option<mpsc::UnboundedSender<Outgoing>>,
    /// Identifies one heartbeat stream, so a stale stream's end does not kill a newer one.
    pub session: u64,
    /// Where its HTTP endpoints are (empty if it serves none).
    pub http_addr: String,
}

/// A replica as reported by a chunk server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replica {
    pub server: ServerId,
    pub version: u64,
}

/// The master's permission for a primary to order writes to one chunk version.
#[derive(Clone, Debug)]
pub struct LeaseState {
    pub version: u64,
    pub primary: ServerId,
    pub chain: Vec<ServerId>,
    pub expiry_ms: u64,
    pub create: bool,
}

/// Servers, replica locations and leases.
#[derive(Default)]
pub struct Cluster {
    pub servers: HashMap<ServerId, Server>,
    locations: HashMap<ChunkId, Vec<Replica>>,
    by_server: HashMap<ServerId, HashSet<ChunkId>>,
    pub leases: HashMap<ChunkId, LeaseState>,
    /// Replicas of chunks the namespace does not know, with when they were first seen.
    pub orphans: HashMap<(ServerId, ChunkId), Instant>,
    /// Chunks whose replica set changed since the re-replication scheduler last looked.
    pub attention: HashSet<ChunkId>,
    /// Servers that reported a full disk take no new replicas until then.
    cooldown: HashMap<ServerId, Instant>,
}

impl Cluster {
    /// Live servers, most free space first; ties are shuffled so that primaries and chain
    /// heads spread over equal servers. Servers below `reserve` free bytes (or below their
    /// own reserve), and servers cooling down after a full disk, are left out.
    pub fn placement(&self, n: usize, exclude: &[ServerId], reserve: u64) -> Vec<ServerId> {
        let now = Instant::now();
        let mut live: Vec<&Server> = self
            .servers
            .values()
            .filter(|s| {
                s.alive
                    && !exclude.contains(&s.id)
                    && s.capacity.free_bytes >= reserve.max(s.capacity.reserve_bytes)
                    && self.cooldown.get(&s.id).is_none_or(|until| *until <= now)
            })
            .collect();
        live.shuffle(&mut rand::rng());
        // Bucket free space by 1 GiB so that tiny differences do not pin one server first.
        live.sort_by_key(|s| std::cmp::Reverse(s.capacity.free_bytes >> 30));
        live.into_iter().take(n).map(|s| s.id).collect()
    }

    /// Keeps `server` out of placement for `period` (it reported a full disk).
    pub fn cool_down(&mut self, server: ServerId, period: Duration) {
        self.cooldown.insert(server, Instant::now() + period);
    }

    pub fn is_alive(&self, id: ServerId) -> bool {
        self.servers.get(&id).is_some_and(|s| s.alive)
    }

    pub fn addr(&self, id: ServerId) -> Option<&str> {
        self.servers.get(&id).map(|s| s.addr.as_str())
    }

    pub fn server_ref(&self, id: ServerId) -> Option<pb::ServerRef> {
        self.addr(id).map(|a| pb::ServerRef {
            server_id: id,
            addr: a.to_string(),
        })
    }

    /// Every replica of a chunk the master knows about, any version, live or not.
    pub fn replicas(&self, chunk: ChunkId) -> &[Replica] {
        self.locations.get(&chunk).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Live servers holding `chunk` at exactly `version`.
    pub fn current(&self, chunk: ChunkId, version: u64) -> Vec<ServerId> {
        self.replicas(chunk)
            .iter()
            .filter(|r| r.version == version && self.is_alive(r.server))
            .map(|r| r.server)
            .collect()
    }

    /// Records that `server` holds `chunk` at `version` (replacing what it held before).
    pub fn add_replica(&mut self, chunk: ChunkId, server: ServerId, version: u64) {
        let list = self.locations.entry(chunk).or_default();
        match list.iter_mut().find(|r| r.server == server) {
            Some(r) => r.version = version,
            None => list.push(Replica { server, version }),
        }
        self.by_server.entry(server).or_default().insert(chunk);
        self.attention.insert(chunk);
    }

    /// Forgets that `server` holds `chunk`.
    pub fn remove_replica(&mut self, chunk: ChunkId, server: ServerId) {
        self.attention.insert(chunk);
        if let Some(list) = self.locations.get_mut(&chunk) {
            list.retain(|r| r.server != server);
            if list.is_empty() {
                self.locations.remove(&chunk);
            }
        }
        if let Some(set) = self.by_server.get_mut(&server) {
            set.remove(&chunk);
        }
    }

    /// Forgets every replica of `chunk` (its file is gone); returns who held it.
    pub fn forget_chunk(&mut self, chunk: ChunkId) -> Vec<Replica> {
        self.leases.remove(&chunk);
        let list = self.locations.remove(&chunk).unwrap_or_default();
        for r in &list {
            if let Some(set) = self.by_server.get_mut(&r.server) {
                set.remove(&chunk);
            }
        }
        list
    }

    /// Chunks `server` holds, per the master's map.
    pub fn chunks_of(&self, server: ServerId) -> Vec<ChunkId> {
        self.by_server
            .get(&server)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn replica_count(&self, server: ServerId) -> usize {
        self.by_server.get(&server).map_or(0, HashSet::len)
    }

    /// Marks a server dead: its replicas leave the location map and its leases go.
    /// Returns the chunks it held.
    pub fn mark_dead(&mut self, server: ServerId) -> Vec<ChunkId> {
        if let Some(s) = self.servers.get_mut(&server) {
            s.alive = false;
            s.commands = None;
        }
        let chunks = self.by_server.remove(&server).unwrap_or_default();
        self.attention.extend(chunks.iter().copied());
        for c in &chunks {
            if let Some(list) = self.locations.get_mut(c) {
                list.retain(|r| r.server != server);
                if list.is_empty() {
                    self.locations.remove(c);
                }
            }
        }
        self.leases.retain(|_, l| !l.chain.contains(&server));
        self.orphans.retain(|(s, _), _| *s != server);
        chunks.into_iter().collect()
    }

    /// Queues commands on a server's heartbeat stream. Dropped silently if it is dead: a
    /// returning server's full report brings the same work back.
    pub fn send(&self, server: ServerId, commands: pb::Commands) {
        if let Some(tx) = self.servers.get(&server).and_then(|s| s.commands.as_ref()) {
            let _ = tx.send(Ok(pb::HeartbeatResponse {
                msg: Some(pb::heartbeat_response::Msg::Commands(commands)),
            }));
        }
    }

    /// Tells a server to delete one replica.
    pub fn send_delete(&self, server: ServerId, chunk: ChunkId, version: u64) {
        self.send(
            server,
            pb::Commands {
                delete: vec![pb::ReplicaRef {
                    chunk_id: chunk,
                    version,
                }],
                replicate: vec![],
            },
        );
    }

    /// Servers silent for longer than `timeout`, still marked alive.
    pub fn silent_servers(&self, timeout: Duration) -> Vec<ServerId> {
        let now = Instant::now();
        self.servers
            .values()
            .filter(|s| s.alive && now.duration_since(s.last_beat) > timeout)
            .map(|s| s.id)
            .collect()
    }

    /// Number of chunks with at least one live replica at any version.
    pub fn located_chunks(&self) -> usize {
        self.locations
            .values()
            .filter(|l| l.iter().any(|r| self.is_alive(r.server)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: ServerId, free_gib: u64) -> Server {
        Server {
            id,
            addr: format!("127.0.0.1:{}", 6000 + id),
            capacity: pb::Capacity {
                free_bytes: free_gib << 30,
                ..Default::default()
            },
            last_beat: Instant::now(),
            alive: true,
            active_requests: 0,
            commands: None,
            session: 0,
            http_addr: String::new(),
        }
    }

    #[test]
    fn placement_prefers_free_space_and_skips_excluded_dead_and_full() {
        let mut c = Cluster::default();
        for (id, free) in [(1, 10), (2, 50), (3, 30), (4, 100), (5, 0)] {
            c.servers.insert(id, server(id, free));
        }
        c.servers.get_mut(&4).unwrap().alive = false;
        assert_eq!(c.placement(2, &[], 1 << 30), vec![2, 3]);
        assert_eq!(c.placement(3, &[2], 1 << 30), vec![3, 1]);
        assert_eq!(c.placement(9, &[], 0).len(), 4);
    }

    #[test]
    fn death_drops_replicas_and_leases() {
        let mut c = Cluster::default();
        c.servers.insert(1, server(1, 1));
        c.servers.insert(2, server(2, 1));
        c.add_replica(7, 1, 3);
        c.add_replica(7, 2, 3);
        c.leases.insert(
            7,
            LeaseState {
                version: 3,
                primary: 1,
                chain: vec![1, 2],
                expiry_ms: 0,
                create: false,
            },
        );
        assert_eq!(c.current(7, 3), vec![1, 2]);
        assert_eq!(c.mark_dead(1), vec![7]);
        assert_eq!(c.current(7, 3), vec![2]);
        assert!(c.leases.is_empty());
        assert_eq!(c.located_chunks(), 1);
        c.remove_replica(7, 2);
        assert_eq!(c.located_chunks(), 0);
    }
}
