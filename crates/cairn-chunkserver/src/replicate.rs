//! Re-replication on the chunk server: copying a replica from a peer on the master's order.
//!
//! For an order `(chunk, version, source)` the target:
//! 1. asks the source for the replica's `(version, serial, length)` and refuses if the
//!    version is not the ordered one;
//! 2. streams the replica with the ordinary `Read` RPC (every block verified by the source,
//!    every piece checked against its CRC32C here) into a staged new replica, paced by a
//!    bandwidth limit shared by all copies on this server;
//! 3. asks the source again and discards the copy unless it still has the same
//!    `(version, serial, length)` (the master made the chunk immutable during the copy; this
//!    checks it);
//! 4. installs the replica atomically at the source's `(version, serial)` (it is never
//!    visible before its data and checksums are durable) and reports it as added. A failure
//!    is reported in the next beat, so the master can order the copy elsewhere.
//!
//! Invariants:
//! - At most one copy per chunk runs; an order for a newer version cancels an older copy.
//! - Memory per copy is bounded by a couple of ~1 MiB pieces; copies running at once are
//!   bounded by `replication_concurrency`.
//! - A copy never touches an existing local replica at the same or a newer version.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_chunk_store::ReplicaInfo;
use cairn_common::CancellationToken;
use cairn_proto::{ErrorKind, pb};
use tokio::sync::Semaphore;
use tokio::task::spawn_blocking;
use tonic::Status;

use crate::error::{join_status, store_status};
use crate::server::ChunkServer;
use crate::throttle::Throttle;

/// Longest wait for a control answer or for the next piece from the source.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Copies in progress and their figures.
pub struct Replication {
    /// Running copies: chunk -> (ordered version, cancel switch).
    running: Mutex<HashMap<u64, (u64, CancellationToken)>>,
    /// Failures not yet reported to the master.
    failures: Mutex<Vec<pb::ReplicationFailure>>,
    permits: Semaphore,
    throttle: Throttle,
    /// Copies completed since start.
    pub copies_done: AtomicU64,
    /// Copies failed since start.
    pub copies_failed: AtomicU64,
    /// Bytes received by completed and running copies since start.
    pub bytes_copied: AtomicU64,
}

impl Replication {
    /// Copy limits: at most `concurrency` at once, `bytes_per_sec` together (0: no limit).
    pub fn new(concurrency: usize, bytes_per_sec: u64) -> Replication {
        Replication {
            running: Mutex::new(HashMap::new()),
            failures: Mutex::new(Vec::new()),
            permits: Semaphore::new(concurrency.max(1)),
            throttle: Throttle::new(bytes_per_sec),
            copies_done: AtomicU64::new(0),
            copies_failed: AtomicU64::new(0),
            bytes_copied: AtomicU64::new(0),
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<u64, (u64, CancellationToken)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Failures to report in the next beat.
    pub fn take_failures(&self) -> Vec<pb::ReplicationFailure> {
        std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Copies running now.
    pub fn in_progress(&self) -> usize {
        self.running().len()
    }
}

impl ChunkServer {
    /// Starts carrying out a replicate order in the background.
    pub(crate) fn start_copy(self: &Arc<Self>, order: pb::ReplicateOrder) {
        let (chunk, version) = (order.chunk_id, order.version);
        let cancel = CancellationToken::new();
        {
            let mut running = self.replication.running();
            if let Some((v, old)) = running.get(&chunk) {
                if *v >= version {
                    return; // already copying this (or a newer) version
                }
                old.cancel();
            }
            running.insert(chunk, (version, cancel.clone()));
        }
        let server = self.clone();
        tokio::spawn(async move {
            let result = {
                let _permit = server.replication.permits.acquire().await;
                tokio::select! {
                    _ = cancel.cancelled() => Err(ErrorKind::Stale.status("a newer order replaced this copy")),
                    r = server.copy_replica(&order) => r,
                }
            };
            {
                let mut running = server.replication.running();
                if running.get(&chunk).is_some_and(|(v, _)| *v == version) {
                    running.remove(&chunk);
                }
            }
            let r = &server.replication;
            match result {
                Ok(info) => {
                    r.copies_done.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(chunk, version, length = info.length, "replica copied");
                    server.report_added(info);
                }
                Err(_) if cancel.is_cancelled() => {}
                Err(e) => {
                    r.copies_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(chunk, version, error = %e.message(), "re-replication copy failed");
                    r.failures.lock().unwrap_or_else(|p| p.into_inner()).push(
                        pb::ReplicationFailure {
                            chunk_id: chunk,
                            version,
                            reason: e.message().to_string(),
                            no_space: ErrorKind::of_status(&e) == ErrorKind::NoSpace,
                        },
                    );
                    server.events_ready.notify_one();
                }
            }
        });
    }

    /// Copies one replica from the order's source; returns the installed replica.
    async fn copy_replica(&self, order: &pb::ReplicateOrder) -> Result<ReplicaInfo, Status> {
        let chunk = order.chunk_id;
        let source = order.source.as_ref().ok_or_else(|| {
            ErrorKind::InvalidArgument.status("a replicate order without a source")
        })?;
        let reg = self
            .registration()
            .ok_or_else(|| ErrorKind::Unavailable.status("not registered with the master yet"))?;
        if let Some(info) = self
            .store
            .info(chunk)
            .filter(|i| i.version >= order.version)
        {
            return Ok(info);
        }
        let mut peer = self.peer(&source.addr)?;
        let state_req = pb::ReplicaStateRequest {
            chunk_id: chunk,
            with_checksum: false,
        };
        let before = within(peer.replica_state(state_req)).await?.into_inner();
        if before.version != order.version {
            return Err(ErrorKind::Stale.status(format!(
                "the source holds version {}, the order says {}",
                before.version, order.version
            )));
        }
        let store = self.store.clone();
        let mut staged = spawn_blocking(move || store.stage(chunk, 0, reg.chunk_size))
            .await
            .map_err(join_status)?
            .map_err(|e| store_status(&e))?;
        let read = pb::ReadRequest {
            chunk_id: chunk,
            version: before.version,
            offset: 0,
            length: before.length,
        };
        let mut stream = within(peer.read(read)).await?.into_inner();
        let mut received = 0u64;
        while let Some(piece) = within(stream.message()).await? {
            if crc32c::crc32c(&piece.data) != piece.crc32c {
                return Err(ErrorKind::Corrupt.status("a piece failed its checksum in transit"));
            }
            if piece.data.is_empty() {
                continue;
            }
            let n = piece.data.len() as u64;
            if received + n > before.length {
                return Err(
                    ErrorKind::Internal.status("the source sent more than the replica holds")
                );
            }
            self.replication.throttle.take(n).await;
            staged = spawn_blocking(move || staged.write(&piece.data).map(|()| staged))
                .await
                .map_err(join_status)?
                .map_err(|e| store_status(&e))?;
            received += n;
            self.replication
                .bytes_copied
                .fetch_add(n, Ordering::Relaxed);
        }
        if received != before.length {
            return Err(ErrorKind::Unavailable.status(format!(
                "the source sent {received} of {} bytes",
                before.length
            )));
        }
        let after = within(peer.replica_state(state_req)).await?.into_inner();
        if (after.version, after.serial, after.length)
            != (before.version, before.serial, before.length)
        {
            return Err(ErrorKind::Stale.status(format!(
                "the source changed during the copy (version {} serial {} -> version {} serial {})",
                before.version, before.serial, after.version, after.serial
            )));
        }
        let lock = self.chunk_lock(chunk);
        let _order = lock.lock().await;
        if let Some(info) = self
            .store
            .info(chunk)
            .filter(|i| i.version >= before.version)
        {
            return Ok(info);
        }
        let store = self.store.clone();
        spawn_blocking(move || store.install(staged, before.version, before.serial))
            .await
            .map_err(join_status)?
            .map_err(|e| store_status(&e))
    }
}

/// Bounds one call to the source by [`PEER_TIMEOUT`].
async fn within<T>(
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(PEER_TIMEOUT, call)
        .await
        .map_err(|_| ErrorKind::Unavailable.status("the source did not answer in time"))?
}
