//! The durable namespace: the `cairn-meta` state machine behind the operation log.
//!
//! Every mutation goes through [`MetaStore::propose`]: a single committer thread takes all
//! proposals waiting at that moment, appends them to the log with one `fdatasync` (group
//! commit), then applies them in log order and answers each. So a reply is only ever sent
//! for a command that is durable, and readers (under the read lock) only ever see durable
//! state. The committer also takes checkpoints and truncates the log behind them.
//!
//! If the log cannot be written, the store stops accepting mutations (a half-written log
//! after a failed fsync cannot be trusted) and says so in every answer and in its health.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::thread;
use std::time::Instant;

use cairn_meta::{MetaCommand, MetaError, MetaResponse, MetaState, RequestId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint;
use crate::error::MasterError;
use crate::oplog::OpLog;

/// Most proposals written with one fsync.
const MAX_BATCH: usize = 1024;

/// One log record: a command and the request it came from.
#[derive(Serialize, Deserialize)]
struct LogEntry {
    req: Option<RequestId>,
    cmd: MetaCommand,
}

type Reply = oneshot::Sender<Result<MetaResponse, MasterError>>;

/// What the committer is asked to do.
enum Work {
    Apply {
        req: Option<RequestId>,
        cmd: MetaCommand,
    },
    Checkpoint,
}

struct Proposal {
    work: Work,
    reply: Reply,
}

/// Counters about the log, for status and metrics.
#[derive(Debug)]
pub struct LogStats {
    /// Index of the last applied record.
    pub applied_index: AtomicU64,
    /// Index the newest durable checkpoint covers.
    pub checkpoint_index: AtomicU64,
    /// Bytes in live log segments.
    pub log_bytes: AtomicU64,
    /// Records appended since start.
    pub appends: Counter,
    /// Write+fsync batches since start (group commits).
    pub batches: Counter,
    /// Time of each batch's write+fsync.
    pub fsync_seconds: Histogram,
    /// Records per batch.
    pub batch_size: Histogram,
    /// The log failed; no more mutations are accepted.
    pub failed: AtomicBool,
}

impl Default for LogStats {
    fn default() -> Self {
        LogStats {
            applied_index: AtomicU64::new(0),
            checkpoint_index: AtomicU64::new(0),
            log_bytes: AtomicU64::new(0),
            appends: Counter::default(),
            batches: Counter::default(),
            fsync_seconds: Histogram::new(cairn_common::telemetry::latency_buckets()),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            failed: AtomicBool::new(false),
        }
    }
}

/// Checkpoint policy.
#[derive(Clone, Debug)]
pub struct CheckpointPolicy {
    /// Take a checkpoint after this many records.
    pub every_records: u64,
    /// Checkpoints to keep on disk.
    pub keep: usize,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every_records: 100_000,
            keep: 2,
        }
    }
}

/// What opening the store found on disk.
#[derive(Debug)]
pub struct OpenReport {
    pub checkpoint_index: u64,
    pub replayed: usize,
    pub torn_tail_cut: bool,
}

/// The namespace state plus the log that makes it durable.
#[derive(Clone)]
pub struct MetaStore {
    state: Arc<RwLock<MetaState>>,
    tx: mpsc::Sender<Proposal>,
    stats: Arc<LogStats>,
}

impl MetaStore {
    /// Loads the newest checkpoint, replays the log after it and starts the committer.
    pub fn open(
        dir: &Path,
        policy: CheckpointPolicy,
    ) -> Result<(MetaStore, OpenReport), MasterError> {
        let io = |what: &'static str| {
            move |e: std::io::Error| MasterError::Storage(format!("{what}: {e}"))
        };
        cairn_common::fsutil::create_dir_durable(dir).map_err(io("create metadata directory"))?;
        let (mut state, ckpt_index) = match checkpoint::load_newest(dir)
            .map_err(io("read checkpoint"))?
        {
            Some((index, payload)) => {
                let state: MetaState = postcard::from_bytes(&payload)
                    .map_err(|e| MasterError::Storage(format!("decode checkpoint {index}: {e}")))?;
                (state, index)
            }
            None => (MetaState::new(), 0),
        };
        state.check_invariants().map_err(|e| {
            MasterError::Storage(format!("checkpoint {ckpt_index} is inconsistent: {e}"))
        })?;
        let log_dir = dir.join("oplog");
        let (log, replay) = OpLog::open(&log_dir, ckpt_index).map_err(io("open operation log"))?;
        let replayed = replay.records.len();
        for (index, payload) in replay.records {
            let entry: LogEntry = postcard::from_bytes(&payload)
                .map_err(|e| MasterError::Storage(format!("decode log record {index}: {e}")))?;
            // Results are ignored: a command that failed when first applied fails the same
            // way now, because apply is deterministic and atomic.
            let _ = state.apply(entry.req, &entry.cmd);
        }
        let stats = Arc::new(LogStats::default());
        stats
            .applied_index
            .store(log.next_index() - 1, Ordering::Relaxed);
        stats.checkpoint_index.store(ckpt_index, Ordering::Relaxed);
        stats.log_bytes.store(log.size_bytes(), Ordering::Relaxed);
        let state = Arc::new(RwLock::new(state));
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let committer = Committer {
            dir: dir.to_path_buf(),
            log,
            state: state.clone(),
            rx,
            stats: stats.clone(),
            policy,
            since_checkpoint: replayed as u64,
            checkpointer: None,
        };
        thread::Builder::new()
            .name("cairn-oplog".into())
            .spawn(move || committer.run())
            .map_err(|e| MasterError::Storage(format!("start log committer: {e}")))?;
        let report = OpenReport {
            checkpoint_index: ckpt_index,
            replayed,
            torn_tail_cut: replay.torn_tail_cut,
        };
        Ok((MetaStore { state, tx, stats }, report))
    }

    /// Makes `cmd` durable, applies it, and returns its result.
    pub async fn propose(
        &self,
        req: Option<RequestId>,
        cmd: MetaCommand,
    ) -> Result<MetaResponse, MasterError> {
        self.submit(Work::Apply { req, cmd }).await
    }

    async fn submit(&self, work: Work) -> Result<MetaResponse, MasterError> {
        if self.stats.failed.load(Ordering::Relaxed) {
            return Err(MasterError::LogFailed);
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal { work, reply })
            .await
            .map_err(|_| MasterError::ShuttingDown)?;
        rx.await.map_err(|_| MasterError::ShuttingDown)?
    }

    /// Read access to the current (durable) state. Keep the guard short: the committer
    /// waits for it to apply the next batch.
    pub fn read(&self) -> RwLockReadGuard<'_, MetaState> {
        // A panic while holding the lock would be a bug in apply; the state is still the
        // last fully applied one because apply is atomic, so reading on is sound.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Log counters.
    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// Asks the committer to checkpoint now and waits until the checkpoint is durable.
    pub async fn checkpoint_now(&self) -> Result<u64, MasterError> {
        self.submit(Work::Checkpoint).await?;
        Ok(self.stats.checkpoint_index.load(Ordering::Relaxed))
    }
}

/// Turns a meta error into the master's error.
impl From<MetaError> for MasterError {
    fn from(e: MetaError) -> Self {
        MasterError::Meta(e)
    }
}

struct Committer {
    dir: PathBuf,
    log: OpLog,
    state: Arc<RwLock<MetaState>>,
    rx: mpsc::Receiver<Proposal>,
    stats: Arc<LogStats>,
    policy: CheckpointPolicy,
    since_checkpoint: u64,
    checkpointer: Option<thread::JoinHandle<std::io::Result<u64>>>,
}

impl Committer {
    fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
        // Every sender is gone. A clean shutdown already asked for a checkpoint; after a
        // crash there is nothing more to do: the log holds everything.
        if let Some(h) = self.checkpointer.take() {
            let _ = h.join();
        }
    }

    fn commit(&mut self, batch: Vec<Proposal>) {
        if self.stats.failed.load(Ordering::Relaxed) {
            for p in batch {
                let _ = p.reply.send(Err(MasterError::LogFailed));
            }
            return;
        }
        let mut wants_checkpoint = Vec::new();
        let mut logged = Vec::with_capacity(batch.len());
        let mut payloads = Vec::with_capacity(batch.len());
        for p in batch {
            let (req, cmd) = match p.work {
                Work::Checkpoint => {
                    wants_checkpoint.push(p.reply);
                    continue;
                }
                Work::Apply { req, cmd } => (req, cmd),
            };
            let entry = LogEntry { req, cmd };
            match postcard::to_stdvec(&entry) {
                Ok(bytes) => {
                    payloads.push(bytes);
                    logged.push((entry, p.reply));
                }
                Err(e) => {
                    let _ = p
                        .reply
                        .send(Err(MasterError::Internal(format!("encode command: {e}"))));
                }
            }
        }
        if !payloads.is_empty() {
            let started = Instant::now();
            if let Err(e) = self.log.append(&payloads) {
                tracing::error!(error = %e, "operation log write failed; refusing further mutations");
                self.stats.failed.store(true, Ordering::Relaxed);
                for (_, reply) in logged {
                    let _ = reply.send(Err(MasterError::LogFailed));
                }
                for r in wants_checkpoint {
                    let _ = r.send(Err(MasterError::LogFailed));
                }
                return;
            }
            self.stats
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            self.stats.batch_size.observe(payloads.len() as f64);
            self.stats.batches.inc();
            self.stats.appends.inc_by(payloads.len() as u64);
            self.stats
                .log_bytes
                .store(self.log.size_bytes(), Ordering::Relaxed);
            let mut results = Vec::with_capacity(logged.len());
            {
                let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
                for (entry, _) in &logged {
                    results.push(
                        state
                            .apply(entry.req, &entry.cmd)
                            .map_err(MasterError::from),
                    );
                }
            }
            self.stats
                .applied_index
                .store(self.log.next_index() - 1, Ordering::Relaxed);
            for ((_, reply), r) in logged.into_iter().zip(results) {
                let _ = reply.send(r);
            }
            self.since_checkpoint += payloads.len() as u64;
        }
        if !wants_checkpoint.is_empty() {
            let result = self
                .checkpoint(true)
                .map_err(|e| MasterError::Storage(format!("checkpoint: {e}")));
            for r in wants_checkpoint {
                let _ = r.send(result.clone().map(|_| MetaResponse::Unit));
            }
        } else if self.since_checkpoint >= self.policy.every_records
            && let Err(e) = self.checkpoint(false)
        {
            tracing::warn!(error = %e, "checkpoint failed; will retry later");
        }
    }

    /// Serializes the state, rotates the log, and writes the checkpoint (in the background
    /// unless `wait`). Log segments it covers are removed once it is durable.
    fn checkpoint(&mut self, wait: bool) -> std::io::Result<()> {
        if let Some(h) = self.checkpointer.take() {
            if !h.is_finished() && !wait {
                self.checkpointer = Some(h);
                return Ok(());
            }
            self.finish_checkpoint(h)?;
        }
        let index = self.log.next_index() - 1;
        if index == self.stats.checkpoint_index.load(Ordering::Relaxed) {
            return Ok(());
        }
        let payload = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            postcard::to_stdvec(&*state)
                .map_err(|e| std::io::Error::other(format!("encode state: {e}")))?
        };
        self.log.rotate()?;
        self.since_checkpoint = 0;
        let dir = self.dir.clone();
        let keep = self.policy.keep;
        let h = thread::Builder::new()
            .name("cairn-checkpoint".into())
            .spawn(move || {
                checkpoint::write(&dir, index, &payload)?;
                checkpoint::prune(&dir, keep)?;
                // The payload is as large as the namespace; without this the allocator
                // keeps it (and the serializer's growth steps) as resident slack.
                drop(payload);
                cairn_common::memory::release_free_memory();
                Ok(index)
            })?;
        if wait {
            self.finish_checkpoint(h)
        } else {
            self.checkpointer = Some(h);
            Ok(())
        }
    }

    fn finish_checkpoint(
        &mut self,
        h: thread::JoinHandle<std::io::Result<u64>>,
    ) -> std::io::Result<()> {
        let index = h
            .join()
            .map_err(|_| std::io::Error::other("checkpoint thread panicked"))??;
        self.stats.checkpoint_index.store(index, Ordering::Relaxed);
        self.log.remove_covered(index)?;
        self.stats
            .log_bytes
            .store(self.log.size_bytes(), Ordering::Relaxed);
        tracing::info!(index, "checkpoint written");
        Ok(())
    }
}
