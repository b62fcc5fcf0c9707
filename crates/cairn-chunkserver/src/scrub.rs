//! The scrubber: re-verifies every replica's checksums in the background, at a bounded
//! rate, so that corruption of data nobody reads is found and repaired before the other
//! copies are lost too.
//!
//! A pass walks a snapshot of the replica list in chunk order and verifies every block of
//! each replica (`ChunkStore::verify`), paced by `scrub_bandwidth` (the average holds; one
//! replica is verified at disk speed, then the scrubber waits for its cost). A replica that
//! fails is deleted and reported as corrupt in the next beat; the master then copies the
//! chunk from a good replica. A new pass starts at most every `scrub_interval`; the first one
//! a minute after start (or after `scrub_interval`, if shorter).
//!
//! Invariants:
//! - The scrubber never deletes a replica it did not just see fail, and never one that
//!   changed (version, serial or length) since it was listed (an install may have replaced
//!   it).
//! - Figures ([`ScrubStats`]) only grow, except the current pass's progress, which restarts
//!   at 0 with each pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_chunk_store::{ReplicaInfo, StoreError};
use cairn_common::CancellationToken;
use tokio::task::spawn_blocking;

use crate::server::ChunkServer;
use crate::throttle::Throttle;

/// Longest pause before the first pass.
const FIRST_PASS_DELAY: Duration = Duration::from_secs(60);

/// What the scrubber has done, for metrics and status pages.
#[derive(Debug, Default)]
pub struct ScrubStats {
    /// Full passes completed.
    pub passes: AtomicU64,
    /// Replicas verified (all passes).
    pub replicas_verified: AtomicU64,
    /// Bytes verified (all passes).
    pub bytes_verified: AtomicU64,
    /// Replicas found corrupt and removed.
    pub corrupt_found: AtomicU64,
    /// Replicas that could not be read for another reason (I/O errors).
    pub errors: AtomicU64,
    /// Replicas checked so far in the current pass, and in the whole pass.
    pub pass_done: AtomicU64,
    pub pass_total: AtomicU64,
    /// Duration of the last complete pass, in milliseconds.
    pub last_pass_ms: AtomicU64,
}

impl ChunkServer {
    /// Runs scrub passes until `shutdown` fires. Does nothing if the bandwidth is 0.
    pub async fn scrub_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let rate = self.config.scrub_bandwidth;
        if rate == 0 {
            tracing::info!("scrubber disabled");
            return;
        }
        let throttle = Throttle::new(rate);
        let interval = self.config.scrub_interval;
        let mut next_pass = Instant::now() + interval.min(FIRST_PASS_DELAY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next_pass.into()) => {}
            }
            let started = Instant::now();
            next_pass = started + interval;
            let replicas = self.store.replicas();
            let s = &self.scrub;
            s.pass_total.store(replicas.len() as u64, Ordering::Relaxed);
            s.pass_done.store(0, Ordering::Relaxed);
            for info in replicas {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = throttle.take(info.length) => {}
                }
                self.scrub_one(info).await;
                s.pass_done.fetch_add(1, Ordering::Relaxed);
            }
            s.passes.fetch_add(1, Ordering::Relaxed);
            let took = started.elapsed();
            s.last_pass_ms
                .store(took.as_millis() as u64, Ordering::Relaxed);
            tracing::debug!(?took, "scrub pass complete");
        }
    }

    /// Verifies one replica; deletes and reports it if it is corrupt.
    async fn scrub_one(&self, info: ReplicaInfo) {
        let store = self.store.clone();
        let chunk = info.chunk_id;
        let s = &self.scrub;
        match spawn_blocking(move || store.verify(chunk)).await {
            Ok(Ok(bytes)) => {
                s.replicas_verified.fetch_add(1, Ordering::Relaxed);
                s.bytes_verified.fetch_add(bytes, Ordering::Relaxed);
            }
            Ok(Err(StoreError::NotFound(_))) => {} // deleted since the pass began
            Ok(Err(e @ StoreError::Corrupt { .. })) => {
                tracing::error!(chunk, error = %e, "scrubber found a corrupt replica; removing it");
                s.corrupt_found.fetch_add(1, Ordering::Relaxed);
                self.discard_corrupt(info).await;
            }
            Ok(Err(e)) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(chunk, error = %e, "scrubber could not verify a replica");
            }
            Err(e) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(chunk, error = %e, "scrub task failed");
            }
        }
    }

    /// Deletes a replica that failed verification (unless it changed since `seen`) and
    /// reports it to the master as corrupt.
    pub(crate) async fn discard_corrupt(&self, seen: ReplicaInfo) {
        let chunk = seen.chunk_id;
        let lock = self.chunk_lock(chunk);
        let _order = lock.lock().await;
        let now = self.store.info(chunk);
        if now.is_some_and(|i| {
            (i.version, i.serial, i.length) != (seen.version, seen.serial, seen.length)
        }) {
            return; // replaced (a re-replication installed a fresh copy) in the meantime
        }
        if now.is_some() {
            let store = self.store.clone();
            match spawn_blocking(move || store.delete(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(chunk, error = %e, "could not delete a corrupt replica")
                }
                Err(e) => tracing::warn!(chunk, error = %e, "delete task failed"),
            }
        }
        self.metrics.corrupt_replicas.inc();
        self.report_corrupt(chunk);
    }
}
