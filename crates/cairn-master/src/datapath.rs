//! Data-path metadata: where a file's chunks live (reads), and leases with replica chains
//! (writes).
//!
//! Lease rules (GFS, with one addition):
//! - A fresh chunk (no replica exists anywhere) gets a `create` lease on newly placed
//!   servers at its current version; no replica needs to be contacted.
//! - An existing chunk gets a new lease only after the master asks its replicas for their
//!   (version, serial), keeps those at the current version with the highest serial, and
//!   moves exactly those to version + 1 with a `SetVersion` that carries the expected
//!   serial. A replica that applied a mutation in between refuses and drops out; a replica
//!   that missed one is left behind at the old version, stale. The master logs the new
//!   version only after the replicas hold it, so a crash in between leaves replicas ahead
//!   of the master, which adopts their version when they report.
//! - Because of that serial check, a new lease never needs to wait for the old one to
//!   expire: any replica the old primary could still reach is either in the new set (and
//!   rejects old-version commits) or stale.

use std::time::Duration;

use cairn_common::time::unix_ms;
use cairn_meta::{ChunkRef, MetaCommand, MetaResponse};
use cairn_proto::pb;

use crate::cluster::{ChunkId, LeaseState, ServerId};
use crate::error::MasterError;
use crate::master::{Master, attr_to_pb};
use crate::version_bump::Bump;

/// A lease with less than this left is renewed rather than handed out as is.
const RENEW_MARGIN_MS: u64 = 10_000;
/// A server that reported a full disk takes no new replicas for this long (its heartbeats
/// say when it has room again only once it is above its reserve).
const NO_SPACE_COOLDOWN: Duration = Duration::from_secs(30);

impl Master {
    /// Chunk locations of a file range, for readers.
    pub fn get_chunks(
        &self,
        req: &pb::GetChunksRequest,
    ) -> Result<pb::GetChunksResponse, MasterError> {
        // Before the locks: it takes the namespace's and the cluster's itself.
        let safe_mode = self.in_safe_mode();
        let (attr, refs, chunk_size) = {
            let meta = self.meta.read();
            let inode = if req.inode != 0 {
                req.inode
            } else {
                let path = crate::master::parse_path(&req.path)?;
                let attr = meta.lookup(&path)?;
                if attr.file_type != cairn_meta::FileType::File {
                    return Err(cairn_meta::MetaError::IsADirectory(path.to_string()).into());
                }
                attr.inode
            };
            let (attr, refs) = meta.file_chunks(inode, req.first_index, req.count)?;
            (attr, refs, meta.chunk_size())
        };
        let cluster = self.cluster();
        let chunks = refs
            .iter()
            .map(|r: &ChunkRef| {
                let mut servers: Vec<&crate::cluster::Server> = if r.chunk_id == 0 {
                    Vec::new()
                } else {
                    cluster
                        .current(r.chunk_id, r.version)
                        .into_iter()
                        .filter_map(|id| cluster.servers.get(&id))
                        .collect()
                };
                // Least busy first spreads readers over replicas.
                servers.sort_by_key(|s| s.active_requests);
                pb::ChunkLocation {
                    index: r.index,
                    chunk_id: r.chunk_id,
                    version: r.version,
                    replicas: servers
                        .into_iter()
                        .map(|s| pb::ServerRef {
                            server_id: s.id,
                            addr: s.addr.clone(),
                        })
                        .collect(),
                }
            })
            .collect::<Vec<pb::ChunkLocation>>();
        // Right after a start, "no replica" only means "not reported yet": a reader told
        // so would fail; Unavailable makes it retry until the reports are in (or safe
        // mode times out and a chunk nobody reported is answered as it is).
        if let Some(c) = chunks
            .iter()
            .find(|c| c.chunk_id != 0 && c.replicas.is_empty())
        {
            if safe_mode {
                return Err(MasterError::Unavailable(format!(
                    "chunk {} has not been reported yet (the master is in safe mode)",
                    c.chunk_id
                )));
            }
            // Mid-move the logged version can be ahead of the recorded replicas for a
            // moment; the reader retries instead of failing.
            if cluster.moving.contains(&c.chunk_id) {
                return Err(MasterError::Unavailable(format!(
                    "chunk {} is moving to a new version; retry",
                    c.chunk_id
                )));
            }
        }
        Ok(pb::GetChunksResponse {
            attr: Some(attr_to_pb(&attr)),
            chunk_size,
            chunks,
        })
    }

    /// Allocates the chunk at `index` of file `inode` if needed and returns a lease and
    /// the replica chain to write through.
    /// Refused with `Locked` while another session holds an exclusive-writer lock.
    pub async fn prepare_write(
        &self,
        inode: u64,
        index: u64,
        session_id: u64,
    ) -> Result<pb::PrepareWriteResponse, MasterError> {
        let slot = {
            let meta = self.meta.read();
            meta.check_write(inode, crate::sessions::session(session_id))?;
            let (_, refs) = meta.file_chunks(inode, index, 1)?;
            refs.first().filter(|r| r.chunk_id != 0).map(|r| r.chunk_id)
        };
        let (chunk_id, fresh) = match slot {
            Some(id) => (id, false),
            None => match self
                .meta
                .propose(None, MetaCommand::AllocChunk { inode, index })
                .await?
            {
                MetaResponse::Chunk {
                    chunk_id, fresh, ..
                } => (chunk_id, fresh),
                other => {
                    return Err(MasterError::Internal(format!(
                        "unexpected response {other:?}"
                    )));
                }
            },
        };
        let lock = self.grant_lock(chunk_id);
        let _guard = lock.lock().await;
        // A copy in flight must not miss a mutation: writers wait (and retry) until it ends.
        if let Some(why) = self.replicator.blocks_writes(chunk_id) {
            return Err(MasterError::Unavailable(why));
        }
        let (version, covered) = {
            let meta = self.meta.read();
            let chunk = meta
                .chunk(chunk_id)
                .ok_or_else(|| MasterError::NotFound(format!("chunk {chunk_id} was deleted")))?;
            let attr = meta.attr(inode)?;
            (
                chunk.version,
                attr.size > index.saturating_mul(meta.chunk_size()),
            )
        };
        let now = unix_ms();
        // 1. A valid lease on the current version with a live chain is shared.
        if let Some(resp) = self.reuse_lease(chunk_id, index, version, now) {
            return Ok(resp);
        }
        let current = self.cluster().current(chunk_id, version);
        if current.is_empty() && !fresh {
            if covered {
                return Err(MasterError::Unavailable(if self.in_safe_mode() {
                    format!(
                        "chunk {chunk_id} has not been reported yet (the master is in safe mode)"
                    )
                } else {
                    format!("no live replica of chunk {chunk_id} at version {version}")
                }));
            }
            // No acknowledged byte lives in this chunk: start it over under a new version,
            // so that any replica the master has not heard of yet is stale.
            let next = self.start_over(chunk_id, version).await?;
            return self.grant_fresh(chunk_id, index, next, now);
        }
        if fresh {
            return self.grant_fresh(chunk_id, index, version, now);
        }
        let min = self.config.min_replicas.max(1);
        if current.len() < min && !self.in_safe_mode() {
            // The classic COPY_ERROR: too few replicas remain for a write to be durable.
            return Err(MasterError::ReplicationFailed(format!(
                "chunk {chunk_id} has {} live replica(s), fewer than the minimum of {min}",
                current.len()
            )));
        }
        // 2. Existing replicas: pick the up-to-date ones and move them to a new version.
        self.grant_existing(chunk_id, index, version, current, covered, now)
            .await
    }

    fn reuse_lease(
        &self,
        chunk_id: ChunkId,
        index: u64,
        version: u64,
        now: u64,
    ) -> Option<pb::PrepareWriteResponse> {
        let mut cluster = self.cluster();
        let lease = cluster.leases.get(&chunk_id)?.clone();
        if lease.version != version || !lease.chain.iter().all(|s| cluster.is_alive(*s)) {
            cluster.leases.remove(&chunk_id);
            return None;
        }
        let mut lease = lease;
        if lease.expiry_ms < now + RENEW_MARGIN_MS {
            lease.expiry_ms = now + self.config.lease_duration.as_millis() as u64;
            cluster.leases.insert(chunk_id, lease.clone());
        }
        Some(self.lease_response(&cluster, chunk_id, index, &lease))
    }

    fn grant_fresh(
        &self,
        chunk_id: ChunkId,
        index: u64,
        version: u64,
        now: u64,
    ) -> Result<pb::PrepareWriteResponse, MasterError> {
        let goal = {
            let meta = self.meta.read();
            let c = meta
                .chunk(chunk_id)
                .ok_or_else(|| MasterError::NotFound(format!("chunk {chunk_id}")))?;
            meta.attr(c.inode)
                .map(|a| a.goal)
                .unwrap_or(meta.default_goal())
        };
        self.grant_placed(chunk_id, index, version, goal, now)
    }

    /// Places a chunk no replica of which exists yet on `goal` servers and grants a
    /// `create` lease on them.
    fn grant_placed(
        &self,
        chunk_id: ChunkId,
        index: u64,
        version: u64,
        goal: u8,
        now: u64,
    ) -> Result<pb::PrepareWriteResponse, MasterError> {
        let mut cluster = self.cluster();
        let chain = cluster.placement(goal as usize, &[], self.config.reserve_bytes);
        if chain.len() < self.config.min_replicas.max(1) {
            let live = cluster.servers.values().filter(|s| s.alive).count();
            let (mut cooling, mut low) = (0, 0);
            for s in cluster.servers.values().filter(|s| s.alive) {
                if cluster.is_cooling_down(s.id) {
                    cooling += 1;
                } else if s.capacity.free_bytes
                    < self.config.reserve_bytes.max(s.capacity.reserve_bytes)
                {
                    low += 1;
                }
            }
            return Err(if live == 0 {
                MasterError::Unavailable("no chunk server is registered".into())
            } else {
                // Say which reason holds: after freeing space, a user otherwise reads
                // "below the reserve" while the servers report plenty free.
                MasterError::NoSpace(format!(
                    "no chunk server can take a new replica ({live} live: {cooling} reported a \
                     full disk and take none for up to {}s, {low} below the free-space \
                     reserve; {} needed)",
                    NO_SPACE_COOLDOWN.as_secs(),
                    self.config.min_replicas.max(1)
                ))
            });
        }
        if chain.len() < goal as usize {
            tracing::warn!(
                chunk_id,
                goal,
                servers = chain.len(),
                "placing a chunk under its goal"
            );
        }
        // Optimistic locations: readers only reach this chunk once a write through the
        // whole chain has been acknowledged and the file length covers it.
        for s in &chain {
            cluster.add_replica(chunk_id, *s, version);
        }
        let lease = LeaseState {
            version,
            primary: chain[0],
            chain,
            expiry_ms: now + self.config.lease_duration.as_millis() as u64,
            create: true,
        };
        cluster.leases.insert(chunk_id, lease.clone());
        Ok(self.lease_response(&cluster, chunk_id, index, &lease))
    }

    async fn grant_existing(
        &self,
        chunk_id: ChunkId,
        index: u64,
        version: u64,
        current: Vec<ServerId>,
        covered: bool,
        now: u64,
    ) -> Result<pb::PrepareWriteResponse, MasterError> {
        let min = self.config.min_replicas.max(1);
        let (next, bumped) = match self
            .advance_version(chunk_id, version, &current, min)
            .await?
        {
            Bump::Moved { version, servers } => (version, servers),
            Bump::NoReplica if !covered => {
                // The chunk's first write landed nowhere (a server of its chain failed before
                // the commit, e.g. with a full disk): start over on servers placed afresh.
                let next = self.start_over(chunk_id, version).await?;
                return self.grant_fresh(chunk_id, index, next, now);
            }
            Bump::NoReplica => {
                return Err(MasterError::Unavailable(format!(
                    "no replica of chunk {chunk_id} holds its data at version {version}"
                )));
            }
        };
        let mut cluster = self.cluster();
        let mut chain = bumped;
        chain.sort_by_key(|s| {
            std::cmp::Reverse(
                cluster
                    .servers
                    .get(s)
                    .map_or(0, |x| x.capacity.free_bytes >> 30),
            )
        });
        let lease = LeaseState {
            version: next,
            primary: chain[0],
            chain,
            expiry_ms: now + self.config.lease_duration.as_millis() as u64,
            create: false,
        };
        cluster.leases.insert(chunk_id, lease.clone());
        tracing::debug!(
            chunk_id,
            version = next,
            primary = lease.primary,
            "lease granted"
        );
        Ok(self.lease_response(&cluster, chunk_id, index, &lease))
    }

    fn lease_response(
        &self,
        cluster: &crate::cluster::Cluster,
        chunk_id: ChunkId,
        index: u64,
        l: &LeaseState,
    ) -> pb::PrepareWriteResponse {
        let chain: Vec<pb::ServerRef> = l
            .chain
            .iter()
            .filter_map(|s| cluster.server_ref(*s))
            .collect();
        let mut lease = pb::Lease {
            chunk_id,
            version: l.version,
            primary_id: l.primary,
            expiry_unix_ms: l.expiry_ms,
            create: l.create,
            mac: Default::default(),
        };
        cairn_common::lease::sign(&self.lease_key(), &mut lease);
        pb::PrepareWriteResponse {
            chunk_size: self.chunk_size(),
            chunk: Some(pb::ChunkLocation {
                index,
                chunk_id,
                version: l.version,
                replicas: chain.clone(),
            }),
            lease: Some(lease),
            chain,
        }
    }

    /// Places the first chunk of a file just created for writing and grants a lease on it
    /// (`prepared.rs`); `None` when the file already has data or no chunk could be placed
    /// (the write then goes through `PrepareWrite` as usual).
    pub async fn prepare_first_chunk(
        &self,
        attr: &cairn_meta::Attr,
    ) -> Option<pb::PrepareWriteResponse> {
        if attr.file_type != cairn_meta::FileType::File || attr.size > 0 || attr.chunk_count > 0 {
            return None;
        }
        let chunk_id = match self.prepared.take_id(&self.meta).await {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(error = %e, "no chunk id for a prepared lease");
                return None;
            }
        };
        match self.grant_placed(chunk_id, 0, 1, attr.goal, unix_ms()) {
            Ok(resp) => {
                self.prepared.insert(chunk_id, attr.inode, 0);
                Some(resp)
            }
            Err(e) => {
                tracing::debug!(error = %e, "no placement for a prepared lease");
                None
            }
        }
    }

    /// Forgets prepared chunks whose commit never came: their locations and leases go,
    /// and replicas written under them are collected as orphans.
    pub fn expire_prepared(&self) {
        let due = self.prepared.expire(std::time::Instant::now());
        if due.is_empty() {
            return;
        }
        let mut cluster = self.cluster();
        for chunk in due {
            cluster.forget_chunk(chunk);
        }
    }

    /// A client or primary saw a replica fail. The replica leaves the chunk's set and the
    /// lease is dropped, so the next writer gets a new version without it.
    pub fn report_failure(&self, req: &pb::ReportFailureRequest) {
        let kind = pb::FailureKind::try_from(req.kind).unwrap_or(pb::FailureKind::Unspecified);
        tracing::warn!(chunk_id = req.chunk_id, version = req.version, server = req.server_id, ?kind,
            detail = %req.detail, "replica failure reported");
        let mut cluster = self.cluster();
        if kind == pb::FailureKind::NoSpace {
            cluster.cool_down(req.server_id, NO_SPACE_COOLDOWN);
        }
        if kind == pb::FailureKind::Stale && cluster.moving.contains(&req.chunk_id) {
            // A replica that already moved answers `Stale` to a reader of the old version;
            // the move itself drops any replica that did not follow.
            return;
        }
        let holds = cluster
            .replicas(req.chunk_id)
            .iter()
            .any(|r| r.server == req.server_id && r.version <= req.version);
        if !holds {
            return;
        }
        cluster.remove_replica(req.chunk_id, req.server_id);
        let addr = cluster.addr(req.server_id).unwrap_or_default().to_string();
        if kind == pb::FailureKind::Corrupt {
            cluster.send_delete(req.server_id, req.chunk_id, req.version);
            let msg = format!(
                "replica of chunk {} on {addr} is corrupt: {}",
                req.chunk_id, req.detail
            );
            self.events
                .push(crate::events::Level::Error, "replica_corrupt", msg);
        } else {
            let msg = format!(
                "replica of chunk {} on {addr} failed ({kind:?}): {}",
                req.chunk_id, req.detail
            );
            self.events
                .push(crate::events::Level::Warn, "replica_failed", msg);
        }
        if cluster
            .leases
            .get(&req.chunk_id)
            .is_some_and(|l| l.version <= req.version)
        {
            cluster.leases.remove(&req.chunk_id);
        }
    }
}
