//! Session and lock commands on [`MetaState`] (OpenSession, CloseSession, ExpireSession,
//! Lock, Unlock, CancelWait), the mandatory-lock check every data and namespace change
//! goes through, and the lock queries.
//!
//! The per-inode rules are in `locks.rs`, the session bookkeeping in `sessions.rs`; this
//! module adds what needs the namespace: inode liveness and paths for messages.
//!
//! Invariant kept: a lock command that fails changes nothing; every successful one leaves
//! each touched queue settled (nothing grantable left queued).

use crate::state::MetaState;
use crate::{
    InodeId, LockCounts, LockInfo, LockKind, LockOutcome, MAX_LOCKS_PER_INODE, MAX_SESSION_OWNER,
    MAX_WAITERS_PER_INODE, MetaError, MetaResponse, SessionId, SessionInfo, WaiterInfo,
};

impl MetaState {
    pub(crate) fn open_session(
        &mut self,
        owner: &str,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        if owner.len() > MAX_SESSION_OWNER {
            return Err(MetaError::invalid(
                "session owner",
                "is longer than 256 bytes",
            ));
        }
        let session_id = self.sessions.open(owner, now_ns);
        Ok(MetaResponse::Session { session_id })
    }

    pub(crate) fn close_session(&mut self, id: SessionId) -> Result<MetaResponse, MetaError> {
        self.session_exists(id)?;
        let granted = self.sessions.close(id);
        Ok(MetaResponse::Released { granted })
    }

    pub(crate) fn lock(
        &mut self,
        inode: InodeId,
        req: LockInfo,
        wait: bool,
        waiter_id: u64,
    ) -> Result<MetaResponse, MetaError> {
        self.session_exists(req.session_id)?;
        let node = self.live(inode)?;
        if req.start >= req.end {
            return Err(MetaError::invalid(
                format_args!("lock range {}..{}", req.start, req.end),
                "is empty",
            ));
        }
        if req.mandatory {
            if node.as_file().is_none() {
                return Err(MetaError::invalid(
                    format_args!("inode {inode}"),
                    "mandatory locks are for files only",
                ));
            }
            if req.kind != LockKind::Exclusive || req.start != 0 || req.end != u64::MAX {
                return Err(MetaError::invalid(
                    "mandatory lock",
                    "must be exclusive over the whole file",
                ));
            }
        }
        let duplicate = self
            .sessions
            .by_id
            .get(&req.session_id)
            .is_some_and(|s| s.waits.contains_key(&waiter_id));
        if wait && duplicate {
            return Err(MetaError::invalid(
                format_args!("session {} waiter {waiter_id}", req.session_id),
                "is already queued",
            ));
        }
        let table = self.sessions.tables.get(&inode);
        let holder = table.and_then(|t| t.conflicting_holder(&req)).copied();
        let waiter = table.and_then(|t| t.conflicting_waiter(&req)).copied();
        let (holders, queued) = table.map_or((0, 0), |t| (t.holders.len(), t.queue.len()));
        if holder.is_none() && waiter.is_none() {
            // A set may split one range into three.
            if holders + 2 > MAX_LOCKS_PER_INODE {
                return Err(self.too_many(inode, "locks"));
            }
            if wait {
                self.sessions.note_granted(req.session_id, waiter_id, inode);
            }
            let granted = self.sessions.set(inode, req);
            return Ok(MetaResponse::LockResult {
                outcome: LockOutcome::Granted,
                granted,
            });
        }
        if !wait {
            return Err(match holder {
                Some(h) => MetaError::Locked(format!(
                    "{}: locked by {}",
                    self.subject(inode),
                    self.describe_session(h.session_id)
                )),
                None => MetaError::Locked(format!(
                    "{}: a conflicting lock of {} is queued first",
                    self.subject(inode),
                    waiter.map_or(String::new(), |w| self.describe_session(w.lock.session_id))
                )),
            });
        }
        if queued >= MAX_WAITERS_PER_INODE {
            return Err(self.too_many(inode, "waiters"));
        }
        let position = self.sessions.enqueue(
            inode,
            WaiterInfo {
                waiter_id,
                lock: req,
            },
        );
        Ok(MetaResponse::LockResult {
            outcome: LockOutcome::Queued { position },
            granted: Vec::new(),
        })
    }

    pub(crate) fn unlock(
        &mut self,
        session: SessionId,
        inode: InodeId,
        owner: u64,
        start: u64,
        end: u64,
    ) -> Result<MetaResponse, MetaError> {
        self.session_exists(session)?;
        self.live(inode)?;
        if start >= end {
            return Err(MetaError::invalid(
                format_args!("unlock range {start}..{end}"),
                "is empty",
            ));
        }
        let granted = self.sessions.clear(inode, session, owner, start, end);
        Ok(MetaResponse::Released { granted })
    }

    pub(crate) fn cancel_wait(
        &mut self,
        session: SessionId,
        waiter_id: u64,
    ) -> Result<MetaResponse, MetaError> {
        self.session_exists(session)?;
        if let Some(granted) = self.sessions.cancel(session, waiter_id) {
            return Ok(MetaResponse::LockResult {
                outcome: LockOutcome::Cancelled,
                granted,
            });
        }
        match self.sessions.status(session, waiter_id) {
            Some(LockOutcome::Granted) => Ok(MetaResponse::LockResult {
                outcome: LockOutcome::Granted,
                granted: Vec::new(),
            }),
            _ => Err(MetaError::NotFound(format!(
                "session {session}: waiter {waiter_id}"
            ))),
        }
    }

    // ---- mandatory locks

    /// Whether a change to the data or names of `inode` may go ahead for `session`: fails
    /// with `Locked` while another session (or no session) faces a mandatory lock on it,
    /// and with `NotFound` for an unknown inode. Advisory locks never block. The master
    /// also calls this before granting a write lease.
    pub fn check_write(&self, inode: InodeId, session: Option<SessionId>) -> Result<(), MetaError> {
        self.live(inode)?;
        let Some(holder) = self.sessions.tables.get(&inode).and_then(|t| t.mandatory()) else {
            return Ok(());
        };
        if session == Some(holder.session_id) {
            return Ok(());
        }
        Err(MetaError::Locked(format!(
            "{}: locked by {}",
            self.subject(inode),
            self.describe_session(holder.session_id)
        )))
    }

    /// Like [`MetaState::check_write`] for every inode of the tree rooted at `root` (one
    /// lookup per inode, which is what deleting the tree costs anyway).
    pub(crate) fn check_tree_writable(
        &self,
        root: InodeId,
        session: Option<SessionId>,
    ) -> Result<(), MetaError> {
        if self.sessions.tables.is_empty() {
            return Ok(());
        }
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            self.check_write(id, session)?;
            if let Some(dir) = self.node(id).as_dir() {
                stack.extend(dir.entries.values().copied());
            }
        }
        Ok(())
    }

    // ---- helpers

    fn session_exists(&self, id: SessionId) -> Result<(), MetaError> {
        if self.sessions.by_id.contains_key(&id) {
            Ok(())
        } else {
            Err(MetaError::NotFound(format!("session {id}")))
        }
    }

    /// "session 5 (host:pid)".
    fn describe_session(&self, id: SessionId) -> String {
        match self.sessions.by_id.get(&id) {
            Some(s) => format!("session {id} ({})", s.owner),
            None => format!("session {id}"),
        }
    }

    /// The inode's path if it has one, else "inode N".
    pub(crate) fn subject(&self, inode: InodeId) -> String {
        self.path_of(inode)
            .map_or_else(|| format!("inode {inode}"), |p| p.to_string())
    }

    fn too_many(&self, inode: InodeId, what: &str) -> MetaError {
        MetaError::invalid(self.subject(inode), &format!("too many {what}"))
    }

    // ---- queries

    /// Every open session, by id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions.infos()
    }

    /// Holders (canonical order: by session, owner, mandatory, start) and waiters (queue
    /// order; position = index + 1) of `inode`; empty for an unknown inode.
    pub fn locks(&self, inode: InodeId) -> (Vec<LockInfo>, Vec<WaiterInfo>) {
        self.sessions
            .tables
            .get(&inode)
            .map_or_else(Default::default, |t| {
                (t.holders.clone(), t.queue.iter().copied().collect())
            })
    }

    /// Where wait `waiter_id` of `session` stands: `Queued` with its position, `Granted`
    /// if it was granted (among the session's last [`crate::GRANTED_MEMORY`] grants; the
    /// lock may have been released since), `None` if unknown (never queued, cancelled,
    /// forgotten, dropped with its inode, or the session is gone).
    pub fn lock_status(&self, session: SessionId, waiter_id: u64) -> Option<LockOutcome> {
        self.sessions.status(session, waiter_id)
    }

    /// `F_GETLK`: the first holder a lock `(session, owner, kind, [start, end))` on `inode`
    /// would conflict with, if any. Queued waiters are not considered.
    pub fn test_lock(
        &self,
        inode: InodeId,
        session: SessionId,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Option<LockInfo> {
        let probe = LockInfo {
            session_id: session,
            owner,
            kind,
            start,
            end,
            mandatory: false,
        };
        self.sessions
            .tables
            .get(&inode)?
            .conflicting_holder(&probe)
            .copied()
    }

    /// Session and lock counts for metrics. Costs a pass over the inodes with locks.
    pub fn lock_counts(&self) -> LockCounts {
        self.sessions.counts()
    }
}
