//! Coalescing of concurrent `stat`s: while a client already has `MAX_IN_FLIGHT` stat calls
//! on the wire, further stats wait in a queue, and the queue goes to the master as one
//! `StatMany` call when a call returns. An idle client's stat is one plain `Stat`, with no
//! added wait; a busy one (a server answering many requests, many tasks sharing one
//! client) pays one round trip and one request's overhead for up to `MAX_STAT_MANY`
//! lookups, which is what lets one master answer more than 100,000 stats a second.
//!
//! This module never reorders a caller's own calls (a caller waits for its answer) and
//! never answers from a cache: every stat is looked up by the master after it was asked.

use std::sync::{Arc, Mutex, MutexGuard};

use cairn_proto::{ErrorKind, MAX_STAT_MANY, pb};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::{Attr, Inner};

/// Stat calls a client keeps on the wire before it queues further ones. Two, so that one
/// batch can be on its way while the answers of the other are handed out.
const MAX_IN_FLIGHT: usize = 2;

/// A queued stat: the path and where its answer goes.
struct Waiter {
    path: String,
    tx: oneshot::Sender<Result<Attr>>,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    queue: Vec<Waiter>,
}

/// The per-client queue of stats waiting for a free slot.
#[derive(Default)]
pub(crate) struct StatBatcher {
    state: Mutex<State>,
}

impl StatBatcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two plain fields updated in one statement each: a panic elsewhere
        // cannot leave it half-changed, so a poisoned lock is still good.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Holds one of the client's in-flight slots; giving it back hands any queued stats to a
/// task that sends them, so that a cancelled caller cannot strand the queue.
struct Slot {
    inner: Arc<Inner>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.inner.stats.lock();
        if s.queue.is_empty() {
            s.in_flight -= 1;
            return;
        }
        drop(s);
        // The slot passes to the flusher, which returns it when the queue is empty.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(flush(self.inner.clone()));
            }
            Err(_) => {
                // No runtime left to send them: fail the queued stats rather than leave
                // them waiting forever.
                let mut s = self.inner.stats.lock();
                s.in_flight -= 1;
                for w in s.queue.drain(..) {
                    let _ = w.tx.send(Err(Error::new(
                        ErrorKind::Unavailable,
                        "the client is shutting down",
                    )));
                }
            }
        }
    }
}

enum Turn {
    /// A slot was free: send this stat now.
    Send(String),
    /// Queued: the answer comes from a batch.
    Wait(oneshot::Receiver<Result<Attr>>),
}

/// Looks `path` (already validated) up on the master, coalescing with concurrent stats.
pub(crate) async fn stat(inner: &Arc<Inner>, path: String) -> Result<Attr> {
    // Deciding and queueing happen under one hold of the lock: a slot given back in
    // between would otherwise find the queue empty and strand this stat.
    let turn = {
        let mut s = inner.stats.lock();
        if s.in_flight < MAX_IN_FLIGHT {
            s.in_flight += 1;
            Turn::Send(path)
        } else {
            let (tx, rx) = oneshot::channel();
            s.queue.push(Waiter { path, tx });
            Turn::Wait(rx)
        }
    };
    match turn {
        Turn::Wait(rx) => rx.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Unavailable,
                "the client stopped before the master answered",
            ))
        }),
        Turn::Send(path) => {
            let _slot = Slot {
                inner: inner.clone(),
            };
            stat_one(inner, path).await
        }
    }
}

async fn stat_one(inner: &Inner, path: String) -> Result<Attr> {
    let r = inner
        .master
        .call("stat", rpc!(stat, pb::StatRequest { path }))
        .await?;
    Attr::from_pb(r.attr)
}

/// Sends queued stats in batches until the queue is empty, then gives the slot back.
async fn flush(inner: Arc<Inner>) {
    loop {
        let batch: Vec<Waiter> = {
            let mut s = inner.stats.lock();
            // Callers that gave up no longer need an answer.
            s.queue.retain(|w| !w.tx.is_closed());
            if s.queue.is_empty() {
                s.in_flight -= 1;
                return;
            }
            let n = s.queue.len().min(MAX_STAT_MANY);
            s.queue.drain(..n).collect()
        };
        let paths: Vec<String> = batch.iter().map(|w| w.path.clone()).collect();
        match stat_many_call(&inner, paths).await {
            Ok(results) => {
                for (w, r) in batch.into_iter().zip(results) {
                    let _ = w.tx.send(r);
                }
            }
            Err(e) => {
                for w in batch {
                    let _ = w.tx.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One `StatMany` call for at most `MAX_STAT_MANY` validated paths: one result per path.
pub(crate) async fn stat_many_call(inner: &Inner, paths: Vec<String>) -> Result<Vec<Result<Attr>>> {
    let n = paths.len();
    let r = inner
        .master
        .call("stat", rpc!(stat_many, pb::StatManyRequest { paths }))
        .await?;
    if r.results.len() != n {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "the master answered {} stats for {n} paths",
                r.results.len()
            ),
        ));
    }
    Ok(r.results.into_iter().map(result).collect())
}

fn result(r: pb::StatResult) -> Result<Attr> {
    if r.error.is_empty() {
        return Attr::from_pb(r.attr);
    }
    let kind = ErrorKind::from_wire_name(&r.error).unwrap_or(ErrorKind::Internal);
    let message = if r.message.is_empty() {
        kind.description().to_string()
    } else {
        r.message
    };
    Err(Error::new(kind, message))
}
