//! Re-replication and surplus removal: every chunk is brought back to its goal number of
//! live replicas at its current version, copied chunk server to chunk server.
//!
//! A scheduler runs every `tick` (never in safe mode, when missing replicas may merely be
//! unreported). It looks at the chunks whose replica set changed since the last tick
//! ([`Cluster::attention`]), the chunks it could not finish with before, and, every
//! `full_scan_interval`, the whole namespace. Chunks under goal are handled fewest live
//! copies first. For each it picks targets (live, holding no replica of the chunk, not
//! full, most free space first) and a source (a live current holder), within the global
//! and per-server limits, and starts a *copy job*:
//!
//! 1. Under the chunk's grant lock, the job moves the chunk's up-to-date replicas to a new
//!    version ([`Master::advance_version`]). No lease exists at that version, and
//!    `PrepareWrite` answers `Unavailable` (clients retry) while the job is in flight, so
//!    nothing can mutate the chunk during the copy: a copy can never miss a mutation. An old
//!    lease's primary can no longer commit either, so a job need not wait for it to expire.
//! 2. It sends each target a `ReplicateOrder` on its heartbeat stream. The target streams
//!    the replica from the source with verified reads, installs it atomically, checks that
//!    the source still holds the same `(version, serial)`, and reports it as added; the
//!    master then counts it like any reported replica.
//! 3. The job ends when every target reported the replica, reported a failure, died, or the
//!    order timed out. A chunk whose job failed waits `retry_backoff` (doubling) before it
//!    is tried again.
//!
//! A chunk with a write lease is left alone for up to `lease_defer` so an active writer is
//! not interrupted, then copied anyway (step 1 makes that safe). Chunks over their goal (a
//! server came back, a late copy) lose replicas on the fullest servers, never below the
//! goal and never while a lease or a copy is active.
//!
//! Invariants:
//! - Lock order: namespace (`meta`), then `cluster`, then the scheduler's own state. The
//!   scheduler never holds a lock across an `.await`.
//! - At most one job per chunk; a job's targets never already hold the chunk.
//! - Progress figures (bytes left, rate, ETA) are estimates from file lengths and recent
//!   completions; they never block anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cairn_common::CancellationToken;
use cairn_common::time::unix_ms;
use cairn_meta::{ChunkMeta, MetaState};
use cairn_proto::pb;

use crate::cluster::{ChunkId, Cluster, ServerId};
use crate::master::Master;
use crate::replication_jobs::{Job, State};
use crate::version_bump::Bump;

/// Completions older than this no longer count toward the copy rate.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Tuning of re-replication.
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// How often the scheduler looks for work.
    pub tick: Duration,
    /// Copies in flight in the whole cluster.
    pub max_in_flight: usize,
    /// Copies one server may receive at once, and, separately, send at once.
    pub max_per_server: usize,
    /// A copy not reported within this is given up (the chunk may be ordered again).
    pub order_timeout: Duration,
    /// How often the whole namespace is scanned (changes are seen within a tick anyway).
    pub full_scan_interval: Duration,
    /// How long a chunk under goal with a write lease waits for its writer to go quiet.
    pub lease_defer: Duration,
    /// Pause before a chunk whose copy failed is tried again; doubles per failure, up to
    /// 32 times this.
    pub retry_backoff: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            tick: Duration::from_millis(100),
            max_in_flight: 64,
            max_per_server: 4,
            order_timeout: Duration::from_secs(60),
            full_scan_interval: Duration::from_secs(30),
            lease_defer: Duration::from_secs(5),
            retry_backoff: Duration::from_secs(1),
        }
    }
}

/// The re-replication scheduler's state and counters.
pub struct Replicator {
    config: ReplicationConfig,
    state: Mutex<State>,
    done: AtomicU64,
    failed: AtomicU64,
    surplus_removed: AtomicU64,
    corrupt_found: AtomicU64,
}

/// A copy the scheduler decided on.
struct Plan {
    chunk: ChunkId,
    version: u64,
    source: ServerId,
    targets: Vec<ServerId>,
}

impl Replicator {
    /// A scheduler with `config`.
    pub fn new(config: ReplicationConfig) -> Replicator {
        Replicator {
            config,
            state: Mutex::default(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            surplus_removed: AtomicU64::new(0),
            corrupt_found: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why a write lease on `chunk` must wait, if it must: a copy of it is in flight.
    pub fn blocks_writes(&self, chunk: ChunkId) -> Option<String> {
        self.state()
            .jobs
            .contains_key(&chunk)
            .then(|| format!("chunk {chunk} is being re-replicated; retry in a moment"))
    }

    /// Counts corrupt replicas chunk servers found.
    pub fn count_corrupt(&self, n: u64) {
        self.corrupt_found.fetch_add(n, Ordering::Relaxed);
    }

    /// A chunk server reports copies it could not make.
    pub(crate) fn copies_failed(
        &self,
        master: &Master,
        server: ServerId,
        failures: &[pb::ReplicationFailure],
    ) {
        if failures.iter().any(|f| f.no_space) {
            master.cluster().cool_down(server, Duration::from_secs(30));
        }
        let mut st = self.state();
        for f in failures {
            tracing::warn!(server, chunk_id = f.chunk_id, version = f.version, reason = %f.reason,
                "a re-replication copy failed");
            let Some(job) = st.jobs.get_mut(&f.chunk_id) else {
                continue;
            };
            if job.version != Some(f.version) || !job.targets.contains(&server) {
                continue;
            }
            job.targets.retain(|t| *t != server);
            job.failed = true;
            self.failed.fetch_add(1, Ordering::Relaxed);
            st.release_target(server);
            self.finish_if_done(&mut st, f.chunk_id);
        }
    }

    /// Targets that reported the copies they were ordered to make, as `(chunk, version)`.
    /// Counted when the report arrives rather than when the scheduler next looks: by then
    /// the new replica may already be gone again (found corrupt, or its server dead), and
    /// the job would wait out `order_timeout` before the chunk could be copied again.
    pub(crate) fn copies_done(&self, server: ServerId, copies: &[(ChunkId, u64)]) {
        let mut st = self.state();
        let now = Instant::now();
        for (chunk, version) in copies {
            let Some(job) = st.jobs.get_mut(chunk) else {
                continue;
            };
            if job.version != Some(*version) || !job.targets.contains(&server) {
                continue;
            }
            job.targets.retain(|t| *t != server);
            let bytes = job.bytes;
            self.done.fetch_add(1, Ordering::Relaxed);
            st.completed.push_back((now, bytes));
            st.release_target(server);
            self.finish_if_done(&mut st, *chunk);
        }
    }

    fn finish_if_done(&self, st: &mut State, chunk: ChunkId) {
        if st.jobs.get(&chunk).is_some_and(|j| j.targets.is_empty())
            && let Some(job) = st.jobs.remove(&chunk)
        {
            st.finish(chunk, job, self.config.retry_backoff);
        }
    }

    /// Progress figures for the status: copies in flight, rate, ETA, counters. `bytes_left`
    /// comes from the caller's scan of the namespace.
    pub fn fill_status(&self, resp: &mut pb::ClusterStatusResponse, bytes_left: u64) {
        let now = Instant::now();
        let mut st = self.state();
        while st
            .completed
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            st.completed.pop_front();
        }
        let recent: u64 = st.completed.iter().map(|(_, b)| *b).sum();
        let span = st.busy_since.map_or(RATE_WINDOW, |since| {
            now.duration_since(since)
                .clamp(Duration::from_secs(1), RATE_WINDOW)
        });
        let rate = (recent as f64 / span.as_secs_f64()) as u64;
        resp.replication_bytes_left = bytes_left;
        resp.replications_in_flight = st.jobs.values().map(|j| j.targets.len() as u64).sum();
        resp.replication_rate_bytes = rate;
        resp.replication_eta_ms = if bytes_left > 0 && rate > 0 {
            bytes_left.saturating_mul(1000) / rate
        } else {
            0
        };
        resp.replications_done = self.done.load(Ordering::Relaxed);
        resp.replications_failed = self.failed.load(Ordering::Relaxed);
        resp.surplus_replicas_removed = self.surplus_removed.load(Ordering::Relaxed);
        resp.corrupt_replicas_found = self.corrupt_found.load(Ordering::Relaxed);
    }
}

/// Bytes of file data chunk `c` holds (what a copy of it moves).
pub fn chunk_length(meta: &MetaState, c: &ChunkMeta) -> u64 {
    let chunk_size = meta.chunk_size();
    let size = meta.attr(c.inode).map_or(0, |a| a.size);
    size.saturating_sub(c.index.saturating_mul(chunk_size))
        .min(chunk_size)
}

/// Runs the scheduler until `shutdown` fires.
pub async fn run(master: Arc<Master>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(master.replicator.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if master.in_safe_mode() {
            continue;
        }
        for plan in master.schedule() {
            let master = master.clone();
            tokio::spawn(async move { master.run_job(plan).await });
        }
    }
}

impl Master {
    /// Fills the re-replication and safe-mode figures of a status answer.
    pub(crate) fn replication_status(&self, resp: &mut pb::ClusterStatusResponse, bytes_left: u64) {
        self.replicator.fill_status(resp, bytes_left);
        if resp.safe_mode {
            let left = self
                .config
                .safe_mode_timeout
                .saturating_sub(self.started.elapsed());
            resp.safe_mode_remaining_ms = left.as_millis() as u64;
        }
    }

    /// One scheduler pass: reaps finished jobs, removes surplus replicas, and returns the
    /// copy jobs to start (already accounted as in flight).
    fn schedule(&self) -> Vec<Plan> {
        let r = &self.replicator;
        let cfg = &r.config;
        let meta = self.meta.read();
        let mut cluster = self.cluster();
        let mut st = r.state();
        let now = Instant::now();
        self.reap(&meta, &cluster, &mut st, now);

        let full = st
            .last_full_scan
            .is_none_or(|t| now.duration_since(t) >= cfg.full_scan_interval);
        let mut candidates: Vec<ChunkId> = if full {
            st.last_full_scan = Some(now);
            cluster.attention.clear();
            meta.chunks().map(|(id, _, _)| id).collect()
        } else {
            let mut v: Vec<ChunkId> = st.queue.drain().collect();
            v.extend(cluster.attention.drain());
            v
        };
        candidates.sort_unstable();
        candidates.dedup();
        st.queue.clear();

        // (live copies, chunk, version, goal, bytes) of chunks under goal.
        let mut under = Vec::new();
        for chunk in candidates {
            let Some(c) = meta.chunk(chunk) else {
                st.leased_since.remove(&chunk);
                st.retry.remove(&chunk);
                continue;
            };
            let goal = meta.attr(c.inode).map_or(0, |a| a.goal as usize);
            if st.jobs.contains_key(&chunk) {
                continue; // looked at again when its job ends
            }
            let live = cluster.current(chunk, c.version);
            if live.is_empty() || goal == 0 {
                continue; // lost (or not a file's chunk): nothing to copy from
            }
            if live.len() > goal {
                if self.remove_surplus(&mut cluster, chunk, c.version, &live) {
                    r.surplus_removed.fetch_add(1, Ordering::Relaxed);
                }
                st.queue.insert(chunk);
            } else if live.len() < goal {
                under.push((live.len(), chunk, c.version, goal, chunk_length(&meta, &c)));
            } else {
                st.leased_since.remove(&chunk);
            }
        }
        under.sort_unstable();

        let mut plans = Vec::new();
        let now_ms = unix_ms();
        let in_flight = |st: &State| st.jobs.values().map(|j| j.targets.len()).sum::<usize>();
        for (live, chunk, version, goal, bytes) in under {
            if in_flight(&st) >= cfg.max_in_flight
                || st.retry.get(&chunk).is_some_and(|(at, _)| *at > now)
            {
                st.queue.insert(chunk);
                continue;
            }
            let leased = cluster
                .leases
                .get(&chunk)
                .is_some_and(|l| l.expiry_ms > now_ms);
            if leased {
                let since = *st.leased_since.entry(chunk).or_insert(now);
                if now.duration_since(since) < cfg.lease_defer {
                    st.queue.insert(chunk);
                    continue;
                }
            }
            let holders: Vec<ServerId> = cluster.replicas(chunk).iter().map(|r| r.server).collect();
            let live_holders = cluster.current(chunk, version);
            let source = live_holders
                .iter()
                .copied()
                .filter(|s| st.outgoing.get(s).copied().unwrap_or(0) < cfg.max_per_server)
                .min_by_key(|s| st.outgoing.get(s).copied().unwrap_or(0));
            let room = cfg.max_in_flight - in_flight(&st);
            let targets: Vec<ServerId> = cluster
                .placement(usize::MAX, &holders, self.config.reserve_bytes)
                .into_iter()
                .filter(|t| st.incoming.get(t).copied().unwrap_or(0) < cfg.max_per_server)
                .take((goal - live).min(room))
                .collect();
            let Some(source) = source.filter(|_| !targets.is_empty()) else {
                st.queue.insert(chunk);
                continue;
            };
            st.leased_since.remove(&chunk);
            st.add_load(source, &targets);
            if st.jobs.is_empty()
                && st
                    .completed
                    .back()
                    .is_none_or(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                st.busy_since = Some(now);
            }
            st.jobs.insert(
                chunk,
                Job {
                    version: None,
                    source,
                    targets: targets.clone(),
                    bytes,
                    started: now,
                    failed: false,
                },
            );
            plans.push(Plan {
                chunk,
                version,
                source,
                targets,
            });
        }
        plans
    }

    /// Ends jobs whose targets all reported, died, or timed out.
    fn reap(&self, meta: &MetaState, cluster: &Cluster, st: &mut State, now: Instant) {
        let r = &self.replicator;
        let chunks: Vec<ChunkId> = st.jobs.keys().copied().collect();
        for chunk in chunks {
            let Some(job) = st.jobs.get_mut(&chunk) else {
                continue;
            };
            let timed_out = now.duration_since(job.started) > r.config.order_timeout;
            let (mut done, mut gave_up) = (Vec::new(), Vec::new());
            if meta.chunk(chunk).is_none() {
                // The file is gone: nothing left to copy.
                gave_up.append(&mut job.targets);
            } else if let Some(v) = job.version {
                job.targets.retain(|t| {
                    let has = cluster
                        .replicas(chunk)
                        .iter()
                        .any(|x| x.server == *t && x.version == v);
                    if has {
                        done.push(*t);
                    } else if !cluster.is_alive(*t) || timed_out {
                        gave_up.push(*t);
                    }
                    !has && cluster.is_alive(*t) && !timed_out
                });
                if !gave_up.is_empty() {
                    job.failed = true;
                    r.failed.fetch_add(gave_up.len() as u64, Ordering::Relaxed);
                }
            } else if timed_out {
                // The version move hung (its calls are bounded; this is a backstop).
                gave_up.append(&mut job.targets);
                job.failed = true;
            }
            let bytes = job.bytes;
            for t in &done {
                r.done.fetch_add(1, Ordering::Relaxed);
                st.completed.push_back((now, bytes));
                st.release_target(*t);
            }
            for t in &gave_up {
                st.release_target(*t);
            }
            r.finish_if_done(st, chunk);
        }
    }

    /// Deletes one replica of an over-goal chunk from the fullest server holding it.
    /// Leaves chunks with a live lease or a job alone. Returns whether it deleted one.
    fn remove_surplus(
        &self,
        cluster: &mut Cluster,
        chunk: ChunkId,
        version: u64,
        live: &[ServerId],
    ) -> bool {
        if cluster
            .leases
            .get(&chunk)
            .is_some_and(|l| l.expiry_ms > unix_ms())
        {
            return false;
        }
        let Some(victim) = live.iter().copied().min_by_key(|s| {
            cluster
                .servers
                .get(s)
                .map_or(u64::MAX, |x| x.capacity.free_bytes)
        }) else {
            return false;
        };
        tracing::info!(
            chunk_id = chunk,
            version,
            server = victim,
            copies = live.len(),
            "removing a surplus replica"
        );
        cluster.remove_replica(chunk, victim);
        cluster.send_delete(victim, chunk, version);
        true
    }

    /// Moves the chunk to a new version and sends the copy orders.
    async fn run_job(self: Arc<Self>, plan: Plan) {
        let Plan {
            chunk,
            version,
            source,
            targets,
        } = plan;
        let moved = {
            let lock = self.grant_lock(chunk);
            let _guard = lock.lock().await;
            let current = {
                let meta = self.meta.read();
                match meta.chunk(chunk) {
                    Some(c) if c.version == version => Some(self.cluster().current(chunk, version)),
                    _ => None,
                }
            };
            match current {
                None => Err("the chunk changed or was deleted".to_string()),
                Some(current) => match self.advance_version(chunk, version, &current, 1).await {
                    Ok(Bump::Moved { version, servers }) => Ok((version, servers)),
                    Ok(Bump::NoReplica) => Err("no replica holds data".into()),
                    Err(e) => Err(e.to_string()),
                },
            }
        };
        let (next, holders) = match moved {
            Ok(m) => m,
            Err(why) => {
                tracing::debug!(chunk_id = chunk, version, %why, "re-replication not started");
                let mut st = self.replicator.state();
                if let Some(mut job) = st.jobs.remove(&chunk) {
                    job.failed = true;
                    st.finish(chunk, job, self.replicator.config.retry_backoff);
                }
                return;
            }
        };
        let cluster = self.cluster();
        // The planned source normally survives the move; otherwise the least busy holder.
        let src = if holders.contains(&source) {
            Some(source)
        } else {
            holders.iter().copied().min_by_key(|s| {
                cluster
                    .servers
                    .get(s)
                    .map_or(u32::MAX, |x| x.active_requests)
            })
        };
        let src_ref = src.and_then(|s| cluster.server_ref(s));
        let mut st = self.replicator.state();
        let Some(job) = st.jobs.get_mut(&chunk) else {
            return;
        };
        job.version = Some(next);
        job.started = Instant::now();
        let Some(src_ref) = src_ref else {
            job.failed = true;
            let job = st.jobs.remove(&chunk).expect("the job was just found");
            st.finish(chunk, job, self.replicator.config.retry_backoff);
            return;
        };
        if src != Some(source) {
            job.source = src_ref.server_id;
            st.release_source(source);
            *st.outgoing.entry(src_ref.server_id).or_default() += 1;
        }
        for t in &targets {
            tracing::debug!(
                chunk_id = chunk,
                version = next,
                target = t,
                source = src_ref.server_id,
                "ordering a copy"
            );
            cluster.send(
                *t,
                pb::Commands {
                    delete: vec![],
                    replicate: vec![pb::ReplicateOrder {
                        chunk_id: chunk,
                        version: next,
                        source: Some(src_ref.clone()),
                    }],
                },
            );
        }
    }
}
