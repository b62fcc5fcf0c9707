//! The chunk server's shared state: its identity, its replica store, what it learned from
//! the master (lease key, chunk size), per-chunk mutation locks, and the replica changes
//! waiting to be reported in the next heartbeat.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_chunk_store::{ChunkStore, ReplicaInfo};
use cairn_common::lease::LEASE_KEY_LEN;
use cairn_proto::pb;
use cairn_proto::pb::chunk_service_client::ChunkServiceClient;
use tokio::sync::Notify;
use tonic::transport::Channel;

use crate::ChunkServerConfig;

/// Replica changes not yet reported to the master.
#[derive(Default)]
pub struct Events {
    pub added: Vec<pb::ReplicaReport>,
    pub removed: Vec<u64>,
    pub corrupt: Vec<u64>,
}

impl Events {
    /// Drops earlier news of `chunk`, before newer news replaces it.
    fn forget(&mut self, chunk: u64) {
        self.added.retain(|r| r.chunk_id != chunk);
        self.removed.retain(|c| *c != chunk);
        self.corrupt.retain(|c| *c != chunk);
    }
}

/// What the master told this server when it registered.
#[derive(Clone, Copy)]
pub struct Registration {
    pub lease_key: [u8; LEASE_KEY_LEN],
    pub chunk_size: u64,
}

/// One chunk server.
pub struct ChunkServer {
    pub id: u64,
    /// Address peers and clients reach this server at.
    pub addr: String,
    pub config: ChunkServerConfig,
    pub store: Arc<ChunkStore>,
    registration: Mutex<Option<Registration>>,
    chunk_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// `(chunk, version)` pairs whose last mutation failed somewhere in the chain: this
    /// server, as primary, orders no more mutations at that version.
    broken: Mutex<HashSet<(u64, u64)>>,
    events: Mutex<Events>,
    /// Wakes the heartbeat loop early when something worth reporting happened.
    pub events_ready: Notify,
    pub active_requests: AtomicU32,
    peers: Mutex<HashMap<String, ChunkServiceClient<Channel>>>,
    pub metrics: crate::metrics::ChunkMetrics,
    /// Where this server's HTTP endpoints are (empty if none); told to the master.
    pub http_addr: Mutex<String>,
    /// Re-replication copies into this server: limits, running copies, figures.
    pub replication: crate::replicate::Replication,
    /// What the scrubber has verified and found.
    pub scrub: crate::scrub::ScrubStats,
}

fn config_slow(c: &ChunkServerConfig) -> std::time::Duration {
    c.slow_request
}

/// Reads the server id from `dir/server.id`, creating a random one on first start. The id
/// lives with the data: a wiped disk is a new server.
pub fn load_or_create_id(dir: &Path) -> std::io::Result<u64> {
    let path = dir.join("server.id");
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a server id", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = loop {
                let id: u64 = rand::random();
                if id != 0 {
                    break id;
                }
            };
            cairn_common::fsutil::create_dir_durable(dir)?;
            cairn_common::fsutil::write_atomic(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

impl ChunkServer {
    pub fn new(
        id: u64,
        addr: String,
        config: ChunkServerConfig,
        store: Arc<ChunkStore>,
    ) -> ChunkServer {
        ChunkServer {
            id,
            addr,
            store,
            registration: Mutex::new(None),
            chunk_locks: Mutex::new(HashMap::new()),
            broken: Mutex::new(HashSet::new()),
            events: Mutex::new(Events::default()),
            events_ready: Notify::new(),
            active_requests: AtomicU32::new(0),
            peers: Mutex::new(HashMap::new()),
            metrics: crate::metrics::ChunkMetrics::new(config_slow(&config), config.metrics),
            http_addr: Mutex::new(String::new()),
            replication: crate::replicate::Replication::new(
                config.replication_concurrency,
                config.replication_bandwidth,
            ),
            scrub: Default::default(),
            config,
        }
    }

    pub fn registration(&self) -> Option<Registration> {
        *lock(&self.registration)
    }

    pub fn set_registration(&self, r: Registration) {
        *lock(&self.registration) = Some(r);
    }

    /// The mutex that orders mutations (commits, truncates, version moves) of one chunk.
    pub fn chunk_lock(&self, chunk: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.chunk_locks);
        if locks.len() > 4096 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(chunk).or_default().clone()
    }

    pub fn is_broken(&self, chunk: u64, version: u64) -> bool {
        lock(&self.broken).contains(&(chunk, version))
    }

    pub fn mark_broken(&self, chunk: u64, version: u64) {
        let mut b = lock(&self.broken);
        b.retain(|(c, v)| *c != chunk || *v >= version);
        b.insert((chunk, version));
    }

    /// Queues a replica creation or version change for the next heartbeat. Each chunk
    /// appears in at most one list of a beat, with its latest state: a beat that said both
    /// "added" and "corrupt" would leave the master to guess the order.
    pub fn report_added(&self, info: ReplicaInfo) {
        let mut ev = lock(&self.events);
        ev.forget(info.chunk_id);
        ev.added.push(pb::ReplicaReport {
            chunk_id: info.chunk_id,
            version: info.version,
            length: info.length,
        });
        drop(ev);
        self.events_ready.notify_one();
    }

    pub fn report_removed(&self, chunk: u64) {
        let mut ev = lock(&self.events);
        ev.forget(chunk);
        ev.removed.push(chunk);
        drop(ev);
        self.events_ready.notify_one();
    }

    pub fn report_corrupt(&self, chunk: u64) {
        let mut ev = lock(&self.events);
        ev.forget(chunk);
        ev.corrupt.push(chunk);
        drop(ev);
        self.events_ready.notify_one();
    }

    pub fn take_events(&self) -> Events {
        std::mem::take(&mut *lock(&self.events))
    }

    /// A client for a peer chunk server, reused across calls.
    pub fn peer(&self, addr: &str) -> Result<ChunkServiceClient<Channel>, tonic::Status> {
        let mut peers = lock(&self.peers);
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let ch = cairn_common::grpc::lazy_channel(addr, Duration::from_secs(2))
            .map_err(|e| cairn_proto::ErrorKind::Unavailable.status(format!("peer {addr}: {e}")))?;
        let c = ChunkServiceClient::new(ch)
            .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES);
        peers.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Counts a data-path request for the load figure while the guard lives.
    pub fn track(&self) -> ActiveGuard<'_> {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(&self.active_requests)
    }
}

/// Decrements the active request count on drop.
pub struct ActiveGuard<'a>(&'a AtomicU32);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
