//! Soft state about the cluster: chunk servers, where replicas live, and write leases.
//!
//! None of this is logged. After a master restart it is rebuilt from chunk servers'
//! registrations and reports, as in GFS. All methods are short and synchronous; callers
//! hold the mutex around a `Cluster` only briefly and never across an `.await`.
//!
//! Replica locations (`replica_map`) and the scheduler's work set (`chunk_set`) are kept
//! compact, because they grow with the number of chunks: about 13 bytes per chunk with 3
//! replicas (`tests/memory.rs` measures it).

mod chunk_set;
mod replica_map;
mod replicas;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cairn_proto::pb;
use rand::seq::SliceRandom;
use tokio::sync::mpsc;

pub use chunk_set::ChunkSet;
use replica_map::ReplicaMap;
pub use replicas::{Replica, Replicas};

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
    locations: ReplicaMap,
    pub leases: HashMap<ChunkId, LeaseState>,
    /// Replicas of chunks the namespace does not know, with when they were first seen.
    pub orphans: HashMap<(ServerId, ChunkId), Instant>,
    /// Chunks whose replica set changed since the re-replication scheduler last looked.
    pub attention: ChunkSet,
    /// Chunks whose replicas are moving to a new version right now (`advance_version`).
    /// Until the move is logged and recorded here, the namespace's version and this map's
    /// can disagree, so a reader may be told of no replica, or see a moved one answer
    /// `Stale`; neither means the data is gone.
    pub moving: HashSet<ChunkId>,
    /// Servers that reported a full disk take no new replicas until then.
    cooldown: HashMap<ServerId, Instant>,
    /// When `drop_expired_leases` next scans (unix ms).
    next_lease_sweep_ms: u64,
}

/// How often expired leases are swept: a scan of every lease, so not on every tick.
const LEASE_SWEEP_EVERY_MS: u64 = 5_000;

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

    /// Whether `server` is kept out of placement after reporting a full disk.
    pub fn is_cooling_down(&self, server: ServerId) -> bool {
        self.cooldown
            .get(&server)
            .is_some_and(|until| *until > Instant::now())
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

    /// Every replica of a chunk the master knows about, any version, live or not, in the
    /// order they were first recorded.
    pub fn replicas(&self, chunk: ChunkId) -> Replicas {
        self.locations.get(chunk)
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
        self.locations.add(chunk, server, version);
        self.attention.insert(chunk);
    }

    /// Forgets that `server` holds `chunk`.
    pub fn remove_replica(&mut self, chunk: ChunkId, server: ServerId) {
        self.attention.insert(chunk);
        self.locations.remove(chunk, server);
    }

    /// Forgets leases that expired more than `grace_ms` ago, at most every few seconds;
    /// answers how many went. Without this the map would keep an entry for every chunk
    /// written since the master started. An expired lease grants nothing: the next write
    /// to its chunk moves the replicas to a new version (`advance_version`), as after any
    /// lease loss; within `grace_ms` a writer that comes back still renews it cheaply.
    pub fn drop_expired_leases(&mut self, now_ms: u64, grace_ms: u64) -> usize {
        if now_ms < self.next_lease_sweep_ms {
            return 0;
        }
        self.next_lease_sweep_ms = now_ms.saturating_add(LEASE_SWEEP_EVERY_MS);
        let before = self.leases.len();
        self.leases
            .retain(|_, l| l.expiry_ms.saturating_add(grace_ms) > now_ms);
        // A burst of writes grew the table; give the memory back once it is mostly empty.
        if self.leases.capacity() > 64 && self.leases.len() < self.leases.capacity() / 4 {
            self.leases.shrink_to_fit();
        }
        before - self.leases.len()
    }

    /// Forgets every replica of `chunk` (its file is gone); returns who held it.
    pub fn forget_chunk(&mut self, chunk: ChunkId) -> Vec<Replica> {
        self.leases.remove(&chunk);
        self.locations.remove_chunk(chunk)
    }

    /// Chunks `server` holds, per the master's map, ascending. Scans the whole map: meant
    /// for rare events, not for every beat.
    pub fn chunks_of(&self, server: ServerId) -> Vec<ChunkId> {
        self.locations.chunks_of(server)
    }

    pub fn replica_count(&self, server: ServerId) -> usize {
        self.locations.count(server)
    }

    /// Forgets every replica `server` holds, as `remove_replica` on each of `chunks_of`
    /// would, in one pass. Returns the chunks, ascending.
    pub fn forget_replicas_of(&mut self, server: ServerId) -> Vec<ChunkId> {
        let chunks = self.locations.remove_server(server);
        self.attention.extend(chunks.iter().copied());
        chunks
    }

    /// Marks a server dead: its replicas leave the location map and its leases go.
    /// Returns the chunks it held.
    pub fn mark_dead(&mut self, server: ServerId) -> Vec<ChunkId> {
        if let Some(s) = self.servers.get_mut(&server) {
            s.alive = false;
            s.commands = None;
        }
        let chunks = self.forget_replicas_of(server);
        self.leases.retain(|_, l| !l.chain.contains(&server));
        self.orphans.retain(|(s, _), _| *s != server);
        chunks
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
        self.locations.located(|s| self.is_alive(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: ServerId, free_gib: u64) -> Server {
        Server {
            id,
            addr: format!("127.0.0.1:{}", 6000 + id % 1000),
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
    fn a_server_cools_down_for_its_period_only() {
        let mut c = Cluster::default();
        c.servers.insert(1, server(1, 10));
        c.servers.insert(2, server(2, 10));
        c.cool_down(1, Duration::from_secs(30));
        c.cool_down(2, Duration::ZERO);
        assert!(c.is_cooling_down(1) && !c.is_cooling_down(2) && !c.is_cooling_down(3));
        assert_eq!(c.placement(3, &[], 0), vec![2]);
    }

    #[test]
    fn expired_leases_go_after_their_grace_at_most_every_few_seconds() {
        let mut c = Cluster::default();
        for (chunk, expiry_ms) in [(1, 1_000), (2, 9_000), (3, 20_000)] {
            c.leases.insert(
                chunk,
                LeaseState {
                    version: 1,
                    primary: 1,
                    chain: vec![1],
                    expiry_ms,
                    create: false,
                },
            );
        }
        // Chunk 1 expired 9 s ago, chunk 2 1 s ago (within the 5 s grace), 3 is live.
        assert_eq!(c.drop_expired_leases(10_000, 5_000), 1);
        assert!(!c.leases.contains_key(&1) && c.leases.contains_key(&2));
        // Too soon for another scan, although chunk 2 is now past its grace.
        assert_eq!(c.drop_expired_leases(14_500, 5_000), 0);
        assert_eq!(c.drop_expired_leases(15_000, 5_000), 1);
        assert_eq!(c.leases.keys().copied().collect::<Vec<_>>(), vec![3]);
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

    fn lease(chain: Vec<ServerId>) -> LeaseState {
        LeaseState {
            version: 1,
            primary: chain[0],
            chain,
            expiry_ms: 0,
            create: false,
        }
    }

    #[test]
    fn mark_dead_forgets_only_that_server() {
        let mut c = Cluster::default();
        let big = u64::MAX - 7; // chunk servers pick random 64-bit ids
        for id in [1, 2, big] {
            c.servers.insert(id, server(id, 1));
        }
        for chunk in 1..=100 {
            c.add_replica(chunk, big, 4);
            c.add_replica(chunk, 1, 4);
            if chunk % 10 == 0 {
                c.add_replica(chunk, 2, 4);
            }
        }
        c.add_replica(30, big, 5); // a replica ahead of the others
        c.leases.insert(30, lease(vec![big, 1]));
        c.leases.insert(40, lease(vec![1, 2]));
        c.orphans.insert((big, 999), Instant::now());
        c.orphans.insert((2, 998), Instant::now());
        c.attention.clear();
        assert_eq!(c.replica_count(big), 100);
        assert_eq!(c.replica_count(2), 10);
        assert_eq!(c.chunks_of(2), (1..=10).map(|i| i * 10).collect::<Vec<_>>());

        let lost = c.mark_dead(big);
        assert_eq!(lost, (1..=100).collect::<Vec<_>>());
        assert!(!c.is_alive(big));
        assert_eq!(c.replica_count(big), 0);
        assert!(c.chunks_of(big).is_empty());
        assert_eq!(c.attention.len(), 100);
        assert_eq!(c.leases.keys().copied().collect::<Vec<_>>(), vec![40]);
        assert_eq!(c.orphans.len(), 1);
        assert_eq!(
            &*c.replicas(30),
            &[
                Replica {
                    server: 1,
                    version: 4
                },
                Replica {
                    server: 2,
                    version: 4
                }
            ]
        );
        assert_eq!(c.replica_count(1), 100);
        assert_eq!(c.located_chunks(), 100);
        assert!(c.mark_dead(big).is_empty());
        c.mark_dead(1);
        assert_eq!(c.located_chunks(), 10);
    }

    #[test]
    fn forgetting_a_servers_replicas_is_removing_each() {
        let build = || {
            let mut c = Cluster::default();
            for id in [5, 6] {
                c.servers.insert(id, server(id, 1));
            }
            for chunk in [3, 64, 65, 1_000] {
                c.add_replica(chunk, 5, 2);
                c.add_replica(chunk, 6, if chunk == 65 { 1 } else { 2 });
            }
            c.attention.clear();
            c
        };
        let mut one_by_one = build();
        for chunk in one_by_one.chunks_of(6) {
            one_by_one.remove_replica(chunk, 6);
        }
        let mut at_once = build();
        assert_eq!(at_once.forget_replicas_of(6), vec![3, 64, 65, 1_000]);
        for chunk in [3, 64, 65, 1_000, 7] {
            assert_eq!(&*at_once.replicas(chunk), &*one_by_one.replicas(chunk));
        }
        assert_eq!(at_once.attention, one_by_one.attention);
        assert_eq!(at_once.replica_count(6), 0);
        assert_eq!(at_once.replica_count(5), 4);
        assert!(at_once.is_alive(6), "forgetting replicas is not a death");
    }

    #[test]
    fn forget_chunk_returns_its_replicas_and_drops_its_lease() {
        let mut c = Cluster::default();
        c.add_replica(9, 2, 1);
        c.add_replica(9, 1, 3);
        c.leases.insert(9, lease(vec![2, 1]));
        let gone = c.forget_chunk(9);
        assert_eq!(
            gone,
            vec![
                Replica {
                    server: 2,
                    version: 1
                },
                Replica {
                    server: 1,
                    version: 3
                }
            ]
        );
        assert!(c.leases.is_empty());
        assert!(c.replicas(9).is_empty());
        assert_eq!((c.replica_count(1), c.replica_count(2)), (0, 0));
        assert!(c.forget_chunk(9).is_empty());
    }

    #[test]
    fn the_work_set_empties_when_drained() {
        let mut c = Cluster::default();
        for chunk in 1..=1_000 {
            c.add_replica(chunk, 1, 1);
        }
        c.remove_replica(5_000, 1);
        assert_eq!(c.attention.len(), 1_001);
        let drained: Vec<ChunkId> = c.attention.drain().collect();
        assert_eq!(drained.len(), 1_001);
        assert!(drained.is_sorted());
        assert!(c.attention.is_empty());
    }
}
