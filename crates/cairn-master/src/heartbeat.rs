//! Chunk server heartbeats: registration, chunk reports, liveness.
//!
//! Each chunk server holds one bidirectional stream open. Its first messages register it
//! with a full report of its replicas; then it beats every second with capacity and the
//! replicas that changed. The master answers on the same stream: first a `Welcome` with the
//! lease key, later commands (delete, replicate). The server is dead the moment the stream
//! ends, or when it has been silent for the dead timeout (a hung process keeps its TCP
//! connection open), whichever comes first.

use std::sync::Arc;
use std::time::Instant;

use cairn_proto::ErrorKind;
use cairn_proto::pb;
use cairn_proto::pb::heartbeat_request::Msg;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::Streaming;

use crate::cluster::{ChunkId, Outgoing, Server, ServerId};
use crate::events::Level;
use crate::master::Master;

/// What the master makes of one reported replica.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Current,
    /// Reported at a version above the master's: the master crashed after replicas moved
    /// to a new version but before it logged that version. The replicas win.
    Ahead,
    Stale,
    Orphan,
}

impl Master {
    /// Serves one heartbeat stream until it ends, then marks the server dead.
    pub async fn serve_heartbeats(
        self: Arc<Self>,
        mut incoming: Streaming<pb::HeartbeatRequest>,
        out: mpsc::UnboundedSender<Outgoing>,
    ) {
        let session = self.new_session_id();
        let mut server_id: Option<ServerId> = None;
        let mut pending_report: Vec<pb::ReplicaReport> = Vec::new();
        let shutdown = self.shutdown_token();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = incoming.next() => next,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "heartbeat stream broke");
                    break;
                }
                None => break,
            };
            match msg.msg {
                Some(Msg::Register(r)) => {
                    if server_id.is_some_and(|id| id != r.server_id) {
                        let _ = out.send(Err(ErrorKind::InvalidArgument
                            .status("a heartbeat stream belongs to one server id")));
                        break;
                    }
                    pending_report.extend(r.replicas.iter().copied());
                    if r.more {
                        server_id = Some(r.server_id);
                        continue;
                    }
                    let report = std::mem::take(&mut pending_report);
                    if server_id.is_none()
                        || self
                            .cluster()
                            .servers
                            .get(&r.server_id)
                            .is_none_or(|s| s.session != session)
                    {
                        if let Err(msg) = self.register(&r, session, out.clone()) {
                            tracing::warn!(server = r.server_id, addr = %r.addr, "{msg}");
                            let _ = out.send(Err(ErrorKind::AlreadyExists.status(msg)));
                            break;
                        }
                        let welcome = pb::Welcome {
                            lease_key: self.lease_key().to_vec().into(),
                            chunk_size: self.chunk_size(),
                        };
                        let _ = out.send(Ok(pb::HeartbeatResponse {
                            msg: Some(pb::heartbeat_response::Msg::Welcome(welcome)),
                        }));
                    }
                    server_id = Some(r.server_id);
                    self.full_report(r.server_id, &report).await;
                }
                Some(Msg::Beat(b)) => {
                    let Some(id) = server_id else {
                        let _ = out.send(Err(
                            ErrorKind::InvalidArgument.status("register before beating")
                        ));
                        break;
                    };
                    if !self.beat(id, session, &b).await {
                        // Marked dead while it was silent (a hang, a partition): it must
                        // register again, so its full report is classified afresh.
                        let _ = out.send(Err(ErrorKind::Unavailable
                            .status("this chunk server was marked dead; register again")));
                        break;
                    }
                }
                None => {}
            }
        }
        if let Some(id) = server_id {
            let mut cluster = self.cluster();
            if cluster
                .servers
                .get(&id)
                .is_some_and(|s| s.session == session && s.alive)
            {
                let lost = cluster.mark_dead(id);
                let addr = cluster.addr(id).unwrap_or_default().to_string();
                tracing::warn!(
                    server = id,
                    replicas = lost.len(),
                    "chunk server disconnected; marked dead"
                );
                let msg = format!(
                    "{addr} disconnected; marked dead ({} replicas lost)",
                    lost.len()
                );
                self.events.push(Level::Warn, "server_dead", msg);
            }
        }
    }

    fn register(
        &self,
        r: &pb::Register,
        session: u64,
        out: mpsc::UnboundedSender<Outgoing>,
    ) -> Result<(), String> {
        let mut cluster = self.cluster();
        if let Some(s) = cluster.servers.get(&r.server_id)
            && s.alive
            && s.addr != r.addr
        {
            return Err(format!(
                "server id {} is already registered from {}; refusing {} (copied data directory?)",
                r.server_id, s.addr, r.addr
            ));
        }
        // A previous stream from the same server (a restart before the old stream was
        // noticed closing) is superseded: forget what it reported.
        cluster.mark_dead(r.server_id);
        cluster.servers.insert(
            r.server_id,
            Server {
                id: r.server_id,
                addr: r.addr.clone(),
                capacity: r.capacity.unwrap_or_default(),
                last_beat: Instant::now(),
                alive: true,
                active_requests: 0,
                commands: Some(out),
                session,
                http_addr: r.http_addr.clone(),
            },
        );
        tracing::info!(server = r.server_id, addr = %r.addr, "chunk server registered");
        self.events.push(
            Level::Info,
            "server_registered",
            format!("{} registered", r.addr),
        );
        Ok(())
    }

    /// Replaces what the master believes `server` holds with a full report.
    async fn full_report(&self, server: ServerId, report: &[pb::ReplicaReport]) {
        self.cluster().forget_replicas_of(server);
        self.apply_added(server, report).await;
        tracing::info!(server, replicas = report.len(), "chunk report received");
    }

    /// Applies one beat. Returns false if the server is no longer registered under this
    /// stream (it was marked dead), and the beat was ignored.
    async fn beat(&self, server: ServerId, session: u64, b: &pb::Beat) -> bool {
        {
            let mut cluster = self.cluster();
            let Some(s) = cluster.servers.get_mut(&server) else {
                return false;
            };
            if !s.alive || s.session != session {
                return false;
            }
            s.last_beat = Instant::now();
            s.active_requests = b.active_requests;
            if let Some(c) = b.capacity {
                s.capacity = c;
            }
            for c in b.removed.iter().chain(&b.corrupt) {
                cluster.remove_replica(*c, server);
            }
            if !b.corrupt.is_empty() {
                self.replicator.count_corrupt(b.corrupt.len() as u64);
                tracing::warn!(server, chunks = ?b.corrupt, "chunk server found corrupt replicas");
                let addr = cluster.addr(server).unwrap_or_default().to_string();
                let msg = format!(
                    "{addr} found corrupt replicas of chunks {:?}; removed",
                    b.corrupt
                );
                self.events.push(Level::Error, "replica_corrupt", msg);
            }
        }
        if !b.replication_failed.is_empty() {
            self.replicator
                .copies_failed(self, server, &b.replication_failed);
        }
        if !b.added.is_empty() {
            self.apply_added(server, &b.added).await;
        }
        true
    }

    async fn apply_added(&self, server: ServerId, replicas: &[pb::ReplicaReport]) {
        let mut adopt = Vec::new();
        let mut current = Vec::new();
        {
            // Lock order: the namespace before the cluster, never the reverse.
            let meta = self.meta.read();
            let mut cluster = self.cluster();
            for r in replicas {
                match verdict(&meta, r.chunk_id, r.version) {
                    Verdict::Current => {
                        cluster.orphans.remove(&(server, r.chunk_id));
                        cluster.add_replica(r.chunk_id, server, r.version);
                        current.push((r.chunk_id, r.version));
                    }
                    Verdict::Ahead => {
                        cluster.add_replica(r.chunk_id, server, r.version);
                        adopt.push((r.chunk_id, r.version));
                    }
                    Verdict::Stale => {
                        cluster.remove_replica(r.chunk_id, server);
                        cluster.send_delete(server, r.chunk_id, r.version);
                    }
                    Verdict::Orphan => {
                        cluster
                            .orphans
                            .entry((server, r.chunk_id))
                            .or_insert_with(Instant::now);
                    }
                }
            }
        }
        self.replicator.copies_done(server, &current);
        for (chunk_id, version) in adopt {
            tracing::info!(
                chunk_id,
                version,
                server,
                "adopting a replica version ahead of the log"
            );
            let cmd = cairn_meta::MetaCommand::SetChunkVersion { chunk_id, version };
            if let Err(e) = self.meta.propose(None, cmd).await {
                tracing::warn!(chunk_id, error = %e, "could not adopt a reported version");
            }
        }
    }

    /// Marks servers dead that stopped beating, forgets prepared chunks whose commit never
    /// came and leases long expired, and deletes orphans past their grace.
    pub fn check_liveness(&self) {
        self.expire_prepared();
        let meta = self.meta.read();
        let mut cluster = self.cluster();
        let lease_ms = self.config.lease_duration.as_millis() as u64;
        cluster.drop_expired_leases(cairn_common::time::unix_ms(), lease_ms);
        for id in cluster.silent_servers(self.config.dead_timeout) {
            let lost = cluster.mark_dead(id);
            tracing::warn!(server = id, replicas = lost.len(), timeout = ?self.config.dead_timeout,
                "chunk server silent past the dead timeout; marked dead");
            let addr = cluster.addr(id).unwrap_or_default().to_string();
            let msg = format!(
                "{addr} silent for {:?}; marked dead ({} replicas lost)",
                self.config.dead_timeout,
                lost.len()
            );
            self.events.push(Level::Warn, "server_dead", msg);
        }
        let grace = self.config.gc_grace;
        let due: Vec<(ServerId, ChunkId)> = cluster
            .orphans
            .iter()
            .filter(|(_, seen)| seen.elapsed() >= grace)
            .map(|(k, _)| *k)
            .collect();
        for (server, chunk) in due {
            if self.prepared.contains(chunk) {
                // It joins the namespace when its write is committed; looked at again
                // once it is bound or forgotten.
                continue;
            }
            cluster.orphans.remove(&(server, chunk));
            if meta.chunk(chunk).is_none() {
                tracing::info!(server, chunk, "deleting an orphan replica");
                cluster.send_delete(server, chunk, 0);
            }
        }
    }
}

/// Classifies a reported replica against the namespace.
fn verdict(meta: &cairn_meta::MetaState, chunk: ChunkId, version: u64) -> Verdict {
    match meta.chunk(chunk) {
        None => Verdict::Orphan,
        Some(c) if c.version == version => Verdict::Current,
        Some(c) if c.version < version => Verdict::Ahead,
        Some(_) => Verdict::Stale,
    }
}
