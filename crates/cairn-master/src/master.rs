//! The master's shared state and its namespace operations.
//!
//! `Master` ties the durable namespace ([`MetaStore`]) to the soft cluster state
//! ([`Cluster`]). Handlers turn RPCs into `MetaCommand`s; everything that needs a clock, an
//! id or randomness is decided here, before the command is logged, never inside `apply`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cairn_common::time::now_ns;
use cairn_meta::{Attr, CairnPath, FileType, MetaCommand, MetaResponse, RequestId};
use cairn_proto::pb;
use cairn_proto::pb::chunk_service_client::ChunkServiceClient;
use tonic::transport::Channel;

use crate::MasterConfig;
use crate::cluster::{ChunkId, Cluster};
use crate::error::MasterError;
use crate::metastore::MetaStore;
use crate::sessions::session;

/// Arguments of a file creation.
pub struct CreateArgs {
    pub path: CairnPath,
    pub overwrite: bool,
    pub mode: u32,
    pub goal: u32,
    pub session_id: u64,
    /// Answer a lease for the new file's first chunk too.
    pub prepare_write: bool,
}

/// The master: durable namespace plus soft cluster state.
pub struct Master {
    pub config: MasterConfig,
    pub meta: MetaStore,
    cluster: Mutex<Cluster>,
    /// Serializes lease grants per chunk (a grant talks to replicas, so it is async).
    grant_locks: Mutex<HashMap<ChunkId, Arc<tokio::sync::Mutex<()>>>>,
    peers: Mutex<HashMap<String, ChunkServiceClient<Channel>>>,
    pub started: Instant,
    /// Fixed by `Format` and never changed after: read here, not from the namespace, so
    /// that code holding the cluster lock never needs the namespace's lock (lock order).
    chunk_size: u64,
    lease_key: [u8; 32],
    safe_mode: AtomicBool,
    next_session: AtomicU64,
    pub(crate) sessions: crate::sessions::SessionTable,
    /// Recent events for the dashboard and `cairn status`.
    pub events: crate::events::EventLog,
    /// Re-replication: jobs in flight and progress counters.
    pub replicator: crate::replication::Replicator,
    /// First chunks placed with new files, not yet bound to them.
    pub prepared: crate::prepared::PreparedChunks,
    /// Fires when the master stops; long-lived streams end on it.
    shutdown: Mutex<cairn_common::CancellationToken>,
}

/// Converts a namespace attribute to its wire form.
pub fn attr_to_pb(a: &Attr) -> pb::Attr {
    pb::Attr {
        inode: a.inode,
        file_type: match a.file_type {
            FileType::File => pb::FileType::File,
            FileType::Directory => pb::FileType::Directory,
            FileType::Symlink => pb::FileType::Symlink,
        } as i32,
        size: a.size,
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
        atime_ns: a.atime_ns,
        mtime_ns: a.mtime_ns,
        ctime_ns: a.ctime_ns,
        nlink: a.nlink,
        goal: u32::from(a.goal),
        chunk_count: a.chunk_count,
    }
}

/// Converts a wire request id; client 0 means "no de-duplication".
pub fn request_id(r: Option<pb::RequestId>) -> Option<RequestId> {
    r.filter(|r| r.client_id != 0).map(|r| RequestId {
        client_id: r.client_id,
        seq: r.seq,
    })
}

/// Validates a path from the wire.
pub fn parse_path(s: &str) -> Result<CairnPath, MasterError> {
    Ok(CairnPath::new(s)?)
}

fn expect_attr(r: MetaResponse) -> Result<Attr, MasterError> {
    match r {
        MetaResponse::Attr(a) => Ok(a),
        MetaResponse::Created { attr, .. } => Ok(attr),
        MetaResponse::Truncated { attr, .. } => Ok(attr),
        other => Err(MasterError::Internal(format!(
            "unexpected response {other:?}"
        ))),
    }
}

impl Master {
    /// Opens the namespace (formatting a new one if the directory is empty).
    pub async fn open(config: MasterConfig) -> Result<Arc<Master>, MasterError> {
        let (meta, report) = MetaStore::open(&config.data_dir, config.checkpoint.clone())?;
        tracing::info!(
            checkpoint = report.checkpoint_index,
            replayed = report.replayed,
            torn_tail_cut = report.torn_tail_cut,
            "metadata loaded"
        );
        if !meta.read().is_formatted() {
            let mut lease_key = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut lease_key);
            let cmd = MetaCommand::Format {
                chunk_size: config.chunk_size,
                default_goal: config.default_goal,
                lease_key,
                now_ns: now_ns(),
            };
            meta.propose(None, cmd).await?;
            tracing::info!(
                chunk_size = config.chunk_size,
                goal = config.default_goal,
                "formatted a new file system"
            );
        } else if meta.read().chunk_size() != config.chunk_size {
            tracing::info!(
                chunk_size = meta.read().chunk_size(),
                "using the chunk size the file system was formatted with"
            );
        }
        let (has_chunks, chunk_size, lease_key) = {
            let m = meta.read();
            (m.totals().chunks > 0, m.chunk_size(), m.lease_key())
        };
        let replicator = crate::replication::Replicator::new(config.replication.clone());
        // Bindable for a second lease's length: a write finishes under the lease and its
        // commit follows at once.
        let prepared = crate::prepared::PreparedChunks::new(config.lease_duration * 2);
        Ok(Arc::new(Master {
            config,
            meta,
            cluster: Mutex::new(Cluster::default()),
            grant_locks: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            started: Instant::now(),
            chunk_size,
            lease_key,
            safe_mode: AtomicBool::new(has_chunks),
            next_session: AtomicU64::new(1),
            shutdown: Mutex::new(cairn_common::CancellationToken::new()),
            sessions: Default::default(),
            events: Default::default(),
            replicator,
            prepared,
        }))
    }

    /// The soft cluster state. Never hold the guard across an `.await`, and never take
    /// the namespace's lock (`meta.read()`) while holding it: the order is namespace
    /// first, then cluster. The reverse deadlocks against a thread that holds the
    /// namespace and waits for the cluster once the committer queues for the write lock
    /// (std's `RwLock` makes new readers wait behind a queued writer).
    pub fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file system's chunk size (fixed when it was formatted).
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// The key that signs write leases (fixed when the file system was formatted).
    pub fn lease_key(&self) -> [u8; 32] {
        self.lease_key
    }

    pub(crate) fn set_shutdown(&self, token: cairn_common::CancellationToken) {
        *self.shutdown.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// Fires when the master is shutting down.
    pub fn shutdown_token(&self) -> cairn_common::CancellationToken {
        self.shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the master is still waiting for chunk reports after a start.
    pub fn in_safe_mode(&self) -> bool {
        if !self.safe_mode.load(Ordering::Relaxed) {
            return false;
        }
        let total = self.meta.read().totals().chunks as usize;
        let located = self.cluster().located_chunks();
        let timed_out = self.started.elapsed() >= self.config.safe_mode_timeout;
        if located >= total || timed_out {
            self.safe_mode.store(false, Ordering::Relaxed);
            tracing::info!(located, total, timed_out, "left safe mode");
            let how = if timed_out {
                "timed out waiting for chunk reports"
            } else {
                "every chunk reported"
            };
            let msg = format!("left safe mode: {located} of {total} chunks located ({how})");
            self.events
                .push(crate::events::Level::Info, "safe_mode_left", msg);
            return false;
        }
        true
    }

    /// A client for the chunk server at `addr`, connecting lazily and reused.
    pub fn peer(&self, addr: &str) -> Result<ChunkServiceClient<Channel>, MasterError> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let ch = cairn_common::grpc::lazy_channel(addr, Duration::from_secs(2))
            .map_err(|e| MasterError::Unavailable(format!("chunk server {addr}: {e}")))?;
        let c = ChunkServiceClient::new(ch)
            .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES);
        peers.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    pub(crate) fn grant_lock(&self, chunk: ChunkId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.grant_locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(chunk).or_default().clone()
    }

    /// Tells chunk servers to delete replicas of chunks no file references any more.
    pub(crate) fn release_chunks(&self, freed: &[(ChunkId, u64)]) {
        if freed.is_empty() {
            return;
        }
        let mut cluster = self.cluster();
        for (chunk, _) in freed {
            for r in cluster.forget_chunk(*chunk) {
                cluster.send_delete(r.server, *chunk, r.version);
            }
        }
    }

    // ---- namespace operations

    pub async fn mkdir(
        &self,
        req: Option<RequestId>,
        path: CairnPath,
        parents: bool,
        mode: u32,
    ) -> Result<Attr, MasterError> {
        let mode = if mode == 0 { 0o755 } else { mode & 0o7777 };
        let cmd = MetaCommand::Mkdir {
            path,
            parents,
            mode,
            uid: 0,
            gid: 0,
            now_ns: now_ns(),
        };
        expect_attr(self.meta.propose(req, cmd).await?)
    }

    /// Creates a file; with `overwrite`, an existing file is emptied (its chunks freed).
    pub async fn create(
        &self,
        req: Option<RequestId>,
        c: CreateArgs,
    ) -> Result<(Attr, Option<pb::PrepareWriteResponse>), MasterError> {
        let prepare = c.prepare_write;
        let mode = if c.mode == 0 { 0o644 } else { c.mode & 0o7777 };
        let goal = u8::try_from(c.goal)
            .map_err(|_| MasterError::InvalidArgument(format!("goal {} is too large", c.goal)))?;
        let cmd = MetaCommand::Create {
            path: c.path,
            overwrite: c.overwrite,
            mode,
            uid: 0,
            gid: 0,
            goal,
            session: session(c.session_id),
            now_ns: now_ns(),
        };
        let r = self.meta.propose(req, cmd).await?;
        self.settle(&r);
        let attr = expect_attr(r)?;
        let first = if prepare {
            self.prepare_first_chunk(&attr).await
        } else {
            None
        };
        Ok((attr, first))
    }

    pub async fn delete(
        &self,
        req: Option<RequestId>,
        path: CairnPath,
        recursive: bool,
        session_id: u64,
    ) -> Result<(), MasterError> {
        let cmd = MetaCommand::Delete {
            path,
            recursive,
            session: session(session_id),
            now_ns: now_ns(),
        };
        let r = self.meta.propose(req, cmd).await?;
        self.settle(&r);
        Ok(())
    }

    pub async fn rename(
        &self,
        req: Option<RequestId>,
        from: CairnPath,
        to: CairnPath,
        no_replace: bool,
        session_id: u64,
    ) -> Result<(), MasterError> {
        let cmd = MetaCommand::Rename {
            from,
            to,
            no_replace,
            session: session(session_id),
            now_ns: now_ns(),
        };
        let r = self.meta.propose(req, cmd).await?;
        self.settle(&r);
        Ok(())
    }

    /// Extends a file's length; chunks written under a prepared lease (`new_chunks`) join
    /// the file in the same logged command.
    pub async fn commit_write(
        &self,
        req: Option<RequestId>,
        inode: u64,
        end: u64,
        session_id: u64,
        new_chunks: Vec<(u64, ChunkId)>,
    ) -> Result<Attr, MasterError> {
        if new_chunks.is_empty() {
            let cmd = MetaCommand::CommitWrite {
                inode,
                end,
                session: session(session_id),
                now_ns: now_ns(),
            };
            return expect_attr(self.meta.propose(req, cmd).await?);
        }
        // A chunk already in its slot was bound by an earlier attempt of this commit (its
        // answer was lost); the others must still be prepared here.
        let pending: Vec<(u64, ChunkId)> = {
            let meta = self.meta.read();
            new_chunks
                .iter()
                .copied()
                .filter(|&(index, chunk)| {
                    let bound = meta
                        .file_chunks(inode, index, 1)
                        .is_ok_and(|(_, refs)| refs.first().is_some_and(|r| r.chunk_id == chunk));
                    !bound
                })
                .collect()
        };
        self.prepared.begin_bind(inode, &pending)?;
        let cmd = MetaCommand::CommitWriteNew {
            inode,
            end,
            new_chunks,
            session: session(session_id),
            now_ns: now_ns(),
        };
        let r = self.meta.propose(req, cmd).await;
        self.prepared.end_bind(&pending, r.is_ok());
        expect_attr(r?)
    }

    pub async fn truncate(
        &self,
        req: Option<RequestId>,
        inode: u64,
        size: u64,
        session_id: u64,
    ) -> Result<Attr, MasterError> {
        let cmd = MetaCommand::Truncate {
            inode,
            size,
            session: session(session_id),
            now_ns: now_ns(),
        };
        let r = self.meta.propose(req, cmd).await?;
        self.settle(&r);
        expect_attr(r)
    }

    /// Acts on what a namespace change left behind: chunks nobody references any more are
    /// deleted from chunk servers, and lock waiters it granted or dropped are woken.
    pub(crate) fn settle(&self, r: &MetaResponse) {
        match r {
            MetaResponse::Freed(freed)
            | MetaResponse::Created { freed, .. }
            | MetaResponse::Truncated { freed, .. } => self.release_chunks(freed),
            MetaResponse::Removed { freed, .. } => self.release_chunks(freed),
            _ => {}
        }
        self.wake_from(r);
    }

    pub fn stat(&self, path: &CairnPath) -> Result<Attr, MasterError> {
        Ok(self.meta.read().lookup(path)?)
    }

    /// One lookup per path, in order, under one hold of the namespace's read lock: the
    /// answers are one consistent view, and a batch pays for the lock once.
    pub fn stat_many(&self, paths: &[String]) -> Vec<Result<Attr, MasterError>> {
        let meta = self.meta.read();
        paths
            .iter()
            .map(|p| Ok(meta.lookup(&parse_path(p)?)?))
            .collect()
    }

    pub fn list(
        &self,
        path: &CairnPath,
        start_after: &str,
        limit: u32,
    ) -> Result<(Vec<(String, Attr)>, bool), MasterError> {
        let limit = if limit == 0 {
            1000
        } else {
            limit.min(10_000) as usize
        };
        Ok(self.meta.read().list(path, start_after, limit)?)
    }
}
