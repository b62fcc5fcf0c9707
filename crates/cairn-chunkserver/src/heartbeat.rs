//! The heartbeat loop: registers with the master (with a full replica report), beats every
//! interval with capacity and replica changes, carries out the master's commands, and
//! reconnects with backoff when the master is away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cairn_common::CancellationToken;
use cairn_proto::pb;
use cairn_proto::pb::heartbeat_request::Msg;
use cairn_proto::pb::heartbeat_response::Msg as Reply;
use cairn_proto::pb::master_client::MasterClient;
use tokio::sync::mpsc;
use tokio::task::spawn_blocking;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::server::{ChunkServer, Registration};

impl ChunkServer {
    /// Runs until `shutdown` fires.
    pub async fn heartbeat_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        // Failures in a row: the first is worth a warning, the retries that follow while
        // the master stays away are not (one line a minute says it is still away).
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.clone().heartbeat_session() => r,
            };
            if started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
                failures = 0;
            }
            failures += 1;
            let master = &self.config.master_addr;
            match result {
                Ok(()) => tracing::info!(%master, "master closed the heartbeat stream"),
                Err(e) if failures == 1 || failures.is_multiple_of(30) => {
                    tracing::warn!(%master, error = %e, failures, "heartbeat stream failed; retrying")
                }
                Err(e) => tracing::debug!(%master, error = %e, failures, "heartbeat stream failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn capacity(&self) -> pb::Capacity {
        match self.store.capacity() {
            Ok(c) => pb::Capacity {
                total_bytes: c.total_bytes,
                used_bytes: c.used_bytes,
                free_bytes: c.free_bytes,
                replica_bytes: c.replica_bytes,
                reserve_bytes: self.config.reserve_bytes.unwrap_or(0),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read disk capacity");
                pb::Capacity::default()
            }
        }
    }

    fn registration_messages(&self) -> Vec<pb::HeartbeatRequest> {
        let replicas: Vec<pb::ReplicaReport> = self
            .store
            .replicas()
            .into_iter()
            .map(|r| pb::ReplicaReport {
                chunk_id: r.chunk_id,
                version: r.version,
                length: r.length,
            })
            .collect();
        let batches: Vec<Vec<pb::ReplicaReport>> = if replicas.is_empty() {
            vec![Vec::new()]
        } else {
            replicas
                .chunks(self.config.report_batch.max(1))
                .map(<[_]>::to_vec)
                .collect()
        };
        let n = batches.len();
        batches
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| pb::HeartbeatRequest {
                msg: Some(Msg::Register(pb::Register {
                    server_id: self.id,
                    addr: self.addr.clone(),
                    capacity: Some(self.capacity()),
                    replicas,
                    more: i + 1 < n,
                    http_addr: self
                        .http_addr
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                })),
            })
            .collect()
    }

    async fn heartbeat_session(self: Arc<Self>) -> Result<(), tonic::Status> {
        let channel =
            cairn_common::grpc::lazy_channel(&self.config.master_addr, Duration::from_secs(2))
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut master =
            MasterClient::new(channel).max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES);
        // Events from before this session are covered by the full report below.
        let _ = self.take_events();
        let registration = self.registration_messages();
        // Room for the whole registration: nothing drains the channel until the call
        // below starts, and a server with many replicas sends many report batches.
        let (tx, rx) = mpsc::channel(16 + registration.len());
        for m in registration {
            tx.send(m)
                .await
                .map_err(|_| tonic::Status::cancelled("stream closed"))?;
        }
        let mut replies = master
            .heartbeat(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let mut tick = tokio::time::interval(self.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_full = Instant::now();
        loop {
            tokio::select! {
                reply = replies.next() => match reply {
                    None => return Ok(()),
                    Some(Err(s)) => return Err(s),
                    Some(Ok(r)) => self.handle_reply(r).await,
                },
                _ = tick.tick() => {
                    if last_full.elapsed() >= self.config.full_report_interval {
                        last_full = Instant::now();
                        for m in self.registration_messages() {
                            tx.send(m).await.map_err(|_| tonic::Status::cancelled("stream closed"))?;
                        }
                    }
                    self.send_beat(&tx).await?;
                }
                _ = self.events_ready.notified() => {
                    // Coalesce a burst of changes into one beat.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    self.send_beat(&tx).await?;
                }
            }
        }
    }

    async fn send_beat(
        &self,
        tx: &mpsc::Sender<pb::HeartbeatRequest>,
    ) -> Result<(), tonic::Status> {
        let ev = self.take_events();
        let beat = pb::Beat {
            capacity: Some(self.capacity()),
            added: ev.added,
            removed: ev.removed,
            corrupt: ev.corrupt,
            active_requests: self.active_requests.load(Ordering::Relaxed),
            replication_failed: self.replication.take_failures(),
        };
        tx.send(pb::HeartbeatRequest {
            msg: Some(Msg::Beat(beat)),
        })
        .await
        .map_err(|_| tonic::Status::cancelled("stream closed"))
    }

    async fn handle_reply(self: &Arc<Self>, r: pb::HeartbeatResponse) {
        match r.msg {
            Some(Reply::Welcome(w)) => match <[u8; 32]>::try_from(w.lease_key.as_ref()) {
                Ok(lease_key) => {
                    self.set_registration(Registration {
                        lease_key,
                        chunk_size: w.chunk_size,
                    });
                    tracing::info!(
                        server = self.id,
                        chunk_size = w.chunk_size,
                        "registered with the master"
                    );
                }
                Err(_) => tracing::error!("the master sent a lease key of the wrong length"),
            },
            Some(Reply::Commands(c)) => {
                for d in c.delete {
                    self.delete_replica(d.chunk_id, d.version).await;
                }
                for order in c.replicate {
                    tracing::debug!(
                        chunk = order.chunk_id,
                        version = order.version,
                        "replication order received"
                    );
                    self.start_copy(order);
                }
            }
            None => {}
        }
    }

    /// Deletes a replica the master no longer wants. Version 0 means any version; else only
    /// that version or older, so a command that raced a version move cannot delete a
    /// current replica.
    async fn delete_replica(&self, chunk: u64, version: u64) {
        let lock = self.chunk_lock(chunk);
        let _order = lock.lock().await;
        let Some(info) = self.store.info(chunk) else {
            return;
        };
        if version != 0 && info.version > version {
            return;
        }
        let store = self.store.clone();
        match spawn_blocking(move || store.delete(chunk)).await {
            Ok(Ok(())) => {
                tracing::debug!(chunk, version = info.version, "replica deleted");
                self.report_removed(chunk);
            }
            Ok(Err(e)) => tracing::warn!(chunk, error = %e, "could not delete a replica"),
            Err(e) => tracing::warn!(chunk, error = %e, "delete task failed"),
        }
    }
}
