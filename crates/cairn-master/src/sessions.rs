//! Client sessions and locks on the master.
//!
//! Sessions and locks are durable namespace state (`cairn-meta`); liveness is not: the
//! master remembers when it last heard from each session in memory and logs an
//! `ExpireSession` once a session has been silent for the session timeout. After a master
//! restart every session gets a fresh timeout (its client may be alive and simply could not
//! reach the master).
//!
//! A lock request that must wait is queued in the namespace (fair FIFO order) and its RPC
//! stays open: the caller sees its queue position, then the grant; or, when its wait ends
//! first, the wait is withdrawn and it gets `Timeout`. Every command that can grant waiters
//! returns them, and the master wakes their RPCs. Waiters register their wake-up before the
//! lock is proposed, so a grant can never slip between "queued" and "waiting".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::time::now_ns;
use cairn_meta::{
    Grant, InodeId, LockKind, LockOutcome, MetaCommand, MetaResponse, RequestId, SessionId,
};
use cairn_proto::pb;
use tokio::sync::{Notify, mpsc};
use tonic::Status;

use crate::error::MasterError;
use crate::master::{Master, parse_path};

/// How often a queued waiter re-reads its position.
const POSITION_POLL: Duration = Duration::from_millis(500);

/// In-memory liveness of sessions, and the wake-ups of waiting lock calls.
#[derive(Default)]
pub struct SessionTable {
    last_seen: Mutex<HashMap<SessionId, Instant>>,
    waiters: Mutex<HashMap<(SessionId, u64), Arc<Notify>>>,
    next_waiter: AtomicU64,
}

fn lock_of<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Turns a wire session id (0: none) into the namespace's.
pub fn session(id: u64) -> Option<SessionId> {
    (id != 0).then_some(id)
}

impl SessionTable {
    fn touch(&self, id: SessionId) {
        lock_of(&self.last_seen).insert(id, Instant::now());
    }

    fn register(&self, session: SessionId) -> (u64, Arc<Notify>) {
        let waiter_id = self.next_waiter.fetch_add(1, Ordering::Relaxed) + 1;
        let notify = Arc::new(Notify::new());
        lock_of(&self.waiters).insert((session, waiter_id), notify.clone());
        (waiter_id, notify)
    }

    fn unregister(&self, session: SessionId, waiter_id: u64) {
        lock_of(&self.waiters).remove(&(session, waiter_id));
    }
}

impl Master {
    /// Wakes the lock calls of waiters a command granted or dropped.
    fn wake(&self, grants: &[Grant]) {
        let waiters = lock_of(&self.sessions.waiters);
        for g in grants {
            if let Some(n) = waiters.get(&(g.session_id, g.waiter_id)) {
                n.notify_one();
            }
        }
    }

    /// Wakes whoever a command's answer says was granted or dropped.
    pub(crate) fn wake_from(&self, r: &MetaResponse) {
        match r {
            MetaResponse::Released { granted } | MetaResponse::LockResult { granted, .. } => {
                self.wake(granted)
            }
            MetaResponse::Removed { dropped, .. } => self.wake(dropped),
            _ => {}
        }
    }

    pub async fn open_session(
        &self,
        req: Option<RequestId>,
        owner: String,
    ) -> Result<pb::OpenSessionResponse, MasterError> {
        let owner: String = owner.chars().take(256).collect();
        match self
            .meta
            .propose(
                req,
                MetaCommand::OpenSession {
                    owner,
                    now_ns: now_ns(),
                },
            )
            .await?
        {
            MetaResponse::Session { session_id } => {
                self.sessions.touch(session_id);
                Ok(pb::OpenSessionResponse {
                    session_id,
                    timeout_ms: self.config.session_timeout.as_millis() as u64,
                })
            }
            other => Err(MasterError::Internal(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    pub fn keep_alive(&self, id: SessionId) -> Result<(), MasterError> {
        if !self.meta.read().sessions().iter().any(|s| s.id == id) {
            return Err(MasterError::NotFound(format!(
                "session {id} has expired or never existed"
            )));
        }
        self.sessions.touch(id);
        Ok(())
    }

    pub async fn close_session(&self, id: SessionId) -> Result<(), MasterError> {
        let r = self
            .meta
            .propose(None, MetaCommand::CloseSession { session_id: id })
            .await?;
        self.wake_from(&r);
        lock_of(&self.sessions.last_seen).remove(&id);
        Ok(())
    }

    /// Expires sessions silent for longer than the session timeout, releasing their locks.
    pub async fn expire_sessions(&self) {
        let live = self.meta.read().sessions();
        let timeout = self.config.session_timeout;
        let due: Vec<SessionId> = {
            let mut seen = lock_of(&self.sessions.last_seen);
            let now = Instant::now();
            seen.retain(|id, _| live.iter().any(|s| s.id == *id));
            live.iter()
                .filter(|s| now.duration_since(*seen.entry(s.id).or_insert(now)) > timeout)
                .map(|s| s.id)
                .collect()
        };
        for id in due {
            match self
                .meta
                .propose(None, MetaCommand::ExpireSession { session_id: id })
                .await
            {
                Ok(r) => {
                    tracing::info!(
                        session = id,
                        ?timeout,
                        "session expired; its locks are released"
                    );
                    self.wake_from(&r);
                    lock_of(&self.sessions.last_seen).remove(&id);
                    let msg =
                        format!("session {id} silent for {timeout:?}; expired, its locks released");
                    self.events
                        .push(crate::events::Level::Info, "session_expired", msg);
                }
                Err(e) => tracing::warn!(session = id, error = %e, "could not expire a session"),
            }
        }
    }

    fn lock_inode(&self, path: &str, inode: u64) -> Result<InodeId, MasterError> {
        if inode != 0 {
            return Ok(inode);
        }
        Ok(self.meta.read().lookup(&parse_path(path)?)?.inode)
    }

    /// Takes a lock, answering with a stream of events (queue positions, then the grant).
    pub async fn lock(
        self: &Arc<Self>,
        r: pb::LockRequest,
    ) -> Result<mpsc::Receiver<Result<pb::LockEvent, Status>>, MasterError> {
        let inode = self.lock_inode(&r.path, r.inode)?;
        let session_id = r.session_id;
        let kind = match pb::LockKind::try_from(r.kind) {
            Ok(pb::LockKind::Shared) => LockKind::Shared,
            Ok(pb::LockKind::Exclusive) => LockKind::Exclusive,
            _ => {
                return Err(MasterError::InvalidArgument(
                    "lock kind must be shared or exclusive".into(),
                ));
            }
        };
        let end = if r.end == 0 { u64::MAX } else { r.end };
        self.sessions.touch(session_id);
        let wait = r.wait_ms > 0;
        let (waiter_id, notify) = self.sessions.register(session_id);
        let cmd = MetaCommand::Lock {
            session_id,
            inode,
            owner: r.owner,
            kind,
            start: r.start,
            end,
            mandatory: r.mandatory,
            wait,
            waiter_id,
        };
        let result = self.meta.propose(None, cmd).await;
        let (tx, rx) = mpsc::channel(8);
        let outcome = match result {
            Ok(MetaResponse::LockResult { outcome, granted }) => {
                self.wake(&granted);
                outcome
            }
            Ok(other) => {
                self.sessions.unregister(session_id, waiter_id);
                return Err(MasterError::Internal(format!(
                    "unexpected response {other:?}"
                )));
            }
            Err(e) => {
                self.sessions.unregister(session_id, waiter_id);
                return Err(e);
            }
        };
        match outcome {
            LockOutcome::Granted | LockOutcome::Cancelled => {
                self.sessions.unregister(session_id, waiter_id);
                let _ = tx.try_send(Ok(pb::LockEvent {
                    granted: true,
                    position: 0,
                }));
            }
            LockOutcome::Queued { position } => {
                let deadline = tokio::time::Instant::now() + Duration::from_millis(r.wait_ms);
                let master = self.clone();
                let waiting = Waiting {
                    session_id,
                    waiter_id,
                    inode,
                    owner: r.owner,
                    start: r.start,
                    end,
                };
                let position = u32::try_from(position).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    master
                        .wait_for_grant(waiting, position, notify, deadline, tx)
                        .await
                });
            }
        }
        Ok(rx)
    }

    async fn wait_for_grant(
        self: Arc<Self>,
        w: Waiting,
        mut position: u32,
        notify: Arc<Notify>,
        deadline: tokio::time::Instant,
        tx: mpsc::Sender<Result<pb::LockEvent, Status>>,
    ) {
        let _ = tx
            .send(Ok(pb::LockEvent {
                granted: false,
                position,
            }))
            .await;
        let mut poll = tokio::time::interval(POSITION_POLL);
        poll.tick().await;
        loop {
            tokio::select! {
                _ = notify.notified() => {}
                _ = poll.tick() => {}
                _ = tx.closed() => {
                    // The caller stopped listening: withdraw, and give back a lock that was
                    // granted in the meantime, since nobody knows it holds it.
                    if self.withdraw(&w).await {
                        let _ = self.unlock(w.session_id, w.inode, w.owner, w.start, w.end).await;
                    }
                    break;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let granted = self.withdraw(&w).await;
                    let ev = if granted {
                        Ok(pb::LockEvent { granted: true, position: 0 })
                    } else {
                        Err(cairn_proto::ErrorKind::Timeout.status("waited in the queue until the wait ended; the lock is still held"))
                    };
                    let _ = tx.send(ev).await;
                    break;
                }
            }
            self.sessions.touch(w.session_id);
            let status = self.meta.read().lock_status(w.session_id, w.waiter_id);
            match status {
                Some(LockOutcome::Granted) => {
                    let _ = tx
                        .send(Ok(pb::LockEvent {
                            granted: true,
                            position: 0,
                        }))
                        .await;
                    break;
                }
                Some(LockOutcome::Queued { position: p }) if u64::from(position) != p => {
                    position = u32::try_from(p).unwrap_or(u32::MAX);
                    let _ = tx
                        .send(Ok(pb::LockEvent {
                            granted: false,
                            position,
                        }))
                        .await;
                }
                Some(_) => {}
                None => {
                    let e =
                        cairn_proto::ErrorKind::NotFound.status("the file or the session is gone");
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
        self.sessions.unregister(w.session_id, w.waiter_id);
    }

    /// Withdraws a queued wait; true if it had been granted meanwhile.
    async fn withdraw(&self, w: &Waiting) -> bool {
        let cmd = MetaCommand::CancelWait {
            session_id: w.session_id,
            waiter_id: w.waiter_id,
        };
        match self.meta.propose(None, cmd).await {
            Ok(r) => {
                self.wake_from(&r);
                matches!(
                    r,
                    MetaResponse::LockResult {
                        outcome: LockOutcome::Granted,
                        ..
                    }
                )
            }
            Err(e) => {
                tracing::warn!(session = w.session_id, error = %e, "could not withdraw a lock wait");
                false
            }
        }
    }

    pub async fn unlock(
        &self,
        session_id: SessionId,
        inode: InodeId,
        owner: u64,
        start: u64,
        end: u64,
    ) -> Result<(), MasterError> {
        self.sessions.touch(session_id);
        let r = self
            .meta
            .propose(
                None,
                MetaCommand::Unlock {
                    session_id,
                    inode,
                    owner,
                    start,
                    end,
                },
            )
            .await?;
        self.wake_from(&r);
        Ok(())
    }

    pub async fn unlock_request(&self, r: pb::UnlockRequest) -> Result<(), MasterError> {
        let inode = self.lock_inode(&r.path, r.inode)?;
        let end = if r.end == 0 { u64::MAX } else { r.end };
        self.unlock(r.session_id, inode, r.owner, r.start, end)
            .await
    }

    pub fn test_lock(&self, r: &pb::TestLockRequest) -> Result<pb::TestLockResponse, MasterError> {
        let kind = match pb::LockKind::try_from(r.kind) {
            Ok(pb::LockKind::Shared) => LockKind::Shared,
            _ => LockKind::Exclusive,
        };
        let end = if r.end == 0 { u64::MAX } else { r.end };
        let conflict =
            self.meta
                .read()
                .test_lock(r.inode, r.session_id, r.owner, kind, r.start, end);
        Ok(pb::TestLockResponse {
            conflict: conflict.map(|l| pb::LockHolder {
                session_id: l.session_id,
                owner: l.owner,
                kind: match l.kind {
                    LockKind::Shared => pb::LockKind::Shared,
                    LockKind::Exclusive => pb::LockKind::Exclusive,
                } as i32,
                start: l.start,
                end: if l.end == u64::MAX { 0 } else { l.end },
            }),
        })
    }

    pub async fn reserve_append(
        &self,
        req: Option<RequestId>,
        inode: InodeId,
        len: u64,
        session_id: u64,
    ) -> Result<u64, MasterError> {
        let cmd = MetaCommand::ReserveAppend {
            inode,
            len,
            session: session(session_id),
        };
        match self.meta.propose(req, cmd).await? {
            MetaResponse::Offset(o) => Ok(o),
            other => Err(MasterError::Internal(format!(
                "unexpected response {other:?}"
            ))),
        }
    }
}

/// A queued lock call.
struct Waiting {
    session_id: SessionId,
    waiter_id: u64,
    inode: InodeId,
    owner: u64,
    start: u64,
    end: u64,
}
