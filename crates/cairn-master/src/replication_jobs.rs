//! The re-replication scheduler's bookkeeping (`replication.rs`): copy jobs in flight,
//! per-server copy load, the chunks to look at again and their retry backoff, and recent
//! completions for the rate. Plain data under the scheduler's mutex: no I/O, no locks of
//! its own, never awaited across.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::cluster::{ChunkId, ServerId};

/// One copy job: a chunk copied to one or more targets from one source.
pub(crate) struct Job {
    /// Chunk version the targets copy; `None` until the chunk has moved to it.
    pub(crate) version: Option<u64>,
    pub(crate) source: ServerId,
    /// Targets that have not reported yet.
    pub(crate) targets: Vec<ServerId>,
    /// Bytes each copy moves (from the file length).
    pub(crate) bytes: u64,
    pub(crate) started: Instant,
    /// Some target failed or timed out.
    pub(crate) failed: bool,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) jobs: HashMap<ChunkId, Job>,
    pub(crate) incoming: HashMap<ServerId, usize>,
    pub(crate) outgoing: HashMap<ServerId, usize>,
    /// Chunks to look at again (not finished with at the last tick).
    pub(crate) queue: HashSet<ChunkId>,
    /// When a chunk under goal was first seen with a write lease.
    pub(crate) leased_since: HashMap<ChunkId, Instant>,
    /// Chunks whose last job failed: not before this, and how many failures in a row.
    pub(crate) retry: HashMap<ChunkId, (Instant, u32)>,
    pub(crate) last_full_scan: Option<Instant>,
    /// Recent completed copies, for the rate.
    pub(crate) completed: VecDeque<(Instant, u64)>,
    /// Start of the current busy period, for the rate.
    pub(crate) busy_since: Option<Instant>,
}

impl State {
    pub(crate) fn add_load(&mut self, source: ServerId, targets: &[ServerId]) {
        *self.outgoing.entry(source).or_default() += 1;
        for t in targets {
            *self.incoming.entry(*t).or_default() += 1;
        }
    }

    pub(crate) fn release_target(&mut self, target: ServerId) {
        if let Some(n) = self.incoming.get_mut(&target) {
            *n = n.saturating_sub(1);
        }
    }

    pub(crate) fn release_source(&mut self, source: ServerId) {
        if let Some(n) = self.outgoing.get_mut(&source) {
            *n = n.saturating_sub(1);
        }
    }

    /// Ends a job: frees its slots, queues the chunk for another look, and backs off a
    /// chunk whose job failed.
    pub(crate) fn finish(&mut self, chunk: ChunkId, job: Job, backoff: Duration) {
        self.release_source(job.source);
        for t in &job.targets {
            self.release_target(*t);
        }
        self.queue.insert(chunk);
        if job.failed {
            let fails = self.retry.get(&chunk).map_or(0, |(_, n)| *n) + 1;
            let wait = backoff * (1u32 << (fails - 1).min(5));
            self.retry.insert(chunk, (Instant::now() + wait, fails));
        } else {
            self.retry.remove(&chunk);
        }
    }
}
