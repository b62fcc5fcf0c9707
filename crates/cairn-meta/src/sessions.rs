//! Client sessions and the lock tables they own: the bookkeeping that ties each lock and
//! each waiter to a live session, so that closing (or expiring) a session releases all of
//! it at once.
//!
//! The master decides when a session expires (by its own clock, outside the state) and
//! logs `ExpireSession`; nothing here looks at time except to record when a session opened.
//!
//! Invariants (checked by [`Sessions::check`], with the inode side by the caller):
//! - session ids are in `1..=last_id`, handed out once;
//! - a session's `locked` set is exactly the inodes whose table has a holder of it, and
//!   its `waits` map is exactly its queued waiters (`waiter_id -> inode`);
//! - every holder and waiter belongs to a live session; no table is empty;
//! - a session remembers at most [`GRANTED_MEMORY`] granted waits.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::locks::LockTable;
use crate::{Grant, InodeId, LockCounts, LockInfo, LockOutcome, SessionId, SessionInfo};

/// Granted waits a session remembers (newest kept), so that a `CancelWait` racing with the
/// grant answers `Granted` instead of losing the lock.
pub const GRANTED_MEMORY: usize = 64;

/// One client session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub owner: String,
    pub opened_ns: i64,
    /// Inodes where this session holds at least one lock.
    pub locked: BTreeSet<InodeId>,
    /// Queued waiters: `waiter_id -> inode`.
    pub waits: BTreeMap<u64, InodeId>,
    /// Recently granted waits `(waiter_id, inode)`, oldest first.
    pub granted: VecDeque<(u64, InodeId)>,
}

impl Session {
    fn remember_granted(&mut self, waiter_id: u64, inode: InodeId) {
        self.granted.retain(|&(w, _)| w != waiter_id);
        if self.granted.len() >= GRANTED_MEMORY {
            self.granted.pop_front();
        }
        self.granted.push_back((waiter_id, inode));
    }
}

/// Every session and every inode's lock table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sessions {
    /// The last session id handed out (0 = none yet).
    pub last_id: SessionId,
    pub by_id: BTreeMap<SessionId, Session>,
    /// Lock tables of inodes with a holder or a waiter.
    pub tables: BTreeMap<InodeId, LockTable>,
}

impl Sessions {
    /// Opens a session.
    pub fn open(&mut self, owner: &str, now_ns: i64) -> SessionId {
        self.last_id += 1;
        let session = Session {
            owner: owner.to_string(),
            opened_ns: now_ns,
            locked: BTreeSet::new(),
            waits: BTreeMap::new(),
            granted: VecDeque::new(),
        };
        self.by_id.insert(self.last_id, session);
        self.last_id
    }

    /// Closes session `id` (which must exist): releases its locks and waits and returns the
    /// waiters of other sessions that became holders, by inode then grant order.
    pub fn close(&mut self, id: SessionId) -> Vec<Grant> {
        let Some(session) = self.by_id.remove(&id) else {
            return Vec::new();
        };
        let touched: BTreeSet<InodeId> = session
            .locked
            .iter()
            .chain(session.waits.values())
            .copied()
            .collect();
        let mut granted = Vec::new();
        for inode in touched {
            if let Some(table) = self.tables.get_mut(&inode) {
                table.remove_session(id);
            }
            granted.extend(self.grant_on(inode));
        }
        granted
    }

    /// Sets `req` (already checked to conflict with no holder) on `inode`, then grants
    /// whatever that may have unblocked.
    pub fn set(&mut self, inode: InodeId, req: LockInfo) -> Vec<Grant> {
        self.tables.entry(inode).or_default().set(req);
        if let Some(s) = self.by_id.get_mut(&req.session_id) {
            s.locked.insert(inode);
        }
        self.grant_on(inode)
    }

    /// Removes `(session, owner)`'s locks over `[start, end)` on `inode` and grants waiters.
    pub fn clear(
        &mut self,
        inode: InodeId,
        session: SessionId,
        owner: u64,
        start: u64,
        end: u64,
    ) -> Vec<Grant> {
        let Some(table) = self.tables.get_mut(&inode) else {
            return Vec::new();
        };
        if !table.clear(session, owner, start, end) {
            return Vec::new();
        }
        let still_holds = table.held_by(session);
        if !still_holds && let Some(s) = self.by_id.get_mut(&session) {
            s.locked.remove(&inode);
        }
        self.grant_on(inode)
    }

    /// Queues waiter `w` on `inode`; returns its 1-based position.
    pub fn enqueue(&mut self, inode: InodeId, w: crate::WaiterInfo) -> u64 {
        let table = self.tables.entry(inode).or_default();
        table.queue.push_back(w);
        if let Some(s) = self.by_id.get_mut(&w.lock.session_id) {
            s.waits.insert(w.waiter_id, inode);
        }
        table.queue.len() as u64
    }

    /// Records that a `wait` request of `session` was granted at once.
    pub fn note_granted(&mut self, session: SessionId, waiter_id: u64, inode: InodeId) {
        if let Some(s) = self.by_id.get_mut(&session) {
            s.remember_granted(waiter_id, inode);
        }
    }

    /// Removes queued waiter `waiter_id` of `session`; `None` if it is not queued.
    /// Otherwise returns the waiters that this unblocked.
    pub fn cancel(&mut self, session: SessionId, waiter_id: u64) -> Option<Vec<Grant>> {
        let inode = self.by_id.get_mut(&session)?.waits.remove(&waiter_id)?;
        if let Some(table) = self.tables.get_mut(&inode) {
            table.remove_waiter(session, waiter_id);
        }
        Some(self.grant_on(inode))
    }

    /// Drops every lock and waiter on `inode` (the inode is gone). Returns the dropped
    /// waiters, in queue order, so the master can answer them.
    pub fn drop_inode(&mut self, inode: InodeId) -> Vec<Grant> {
        let Some(table) = self.tables.remove(&inode) else {
            return Vec::new();
        };
        for h in &table.holders {
            if let Some(s) = self.by_id.get_mut(&h.session_id) {
                s.locked.remove(&inode);
            }
        }
        let mut dropped = Vec::with_capacity(table.queue.len());
        for w in &table.queue {
            if let Some(s) = self.by_id.get_mut(&w.lock.session_id) {
                s.waits.remove(&w.waiter_id);
            }
            dropped.push(Grant {
                session_id: w.lock.session_id,
                waiter_id: w.waiter_id,
                inode,
            });
        }
        dropped
    }

    /// Grants what can be granted on `inode`, updates the grantees' sessions, and drops the
    /// table if it became empty.
    fn grant_on(&mut self, inode: InodeId) -> Vec<Grant> {
        let Some(table) = self.tables.get_mut(&inode) else {
            return Vec::new();
        };
        let granted = table.grant_waiters();
        if table.is_empty() {
            self.tables.remove(&inode);
        }
        let mut out = Vec::with_capacity(granted.len());
        for w in granted {
            let session_id = w.lock.session_id;
            if let Some(s) = self.by_id.get_mut(&session_id) {
                s.waits.remove(&w.waiter_id);
                s.remember_granted(w.waiter_id, inode);
                s.locked.insert(inode);
            }
            out.push(Grant {
                session_id,
                waiter_id: w.waiter_id,
                inode,
            });
        }
        out
    }

    // ---- queries

    /// Every session, by id.
    pub fn infos(&self) -> Vec<SessionInfo> {
        self.by_id
            .iter()
            .map(|(&id, s)| SessionInfo {
                id,
                owner: s.owner.clone(),
                opened_ns: s.opened_ns,
                locks_held: self.held_count(id, s),
            })
            .collect()
    }

    fn held_count(&self, id: SessionId, s: &Session) -> u64 {
        s.locked
            .iter()
            .filter_map(|inode| self.tables.get(inode))
            .map(|t| t.holders.iter().filter(|h| h.session_id == id).count() as u64)
            .sum()
    }

    /// Where waiter `waiter_id` of `session` stands.
    pub fn status(&self, session: SessionId, waiter_id: u64) -> Option<LockOutcome> {
        let s = self.by_id.get(&session)?;
        if let Some(inode) = s.waits.get(&waiter_id) {
            let position = self.tables.get(inode)?.position(session, waiter_id)?;
            return Some(LockOutcome::Queued { position });
        }
        s.granted
            .iter()
            .any(|&(w, _)| w == waiter_id)
            .then_some(LockOutcome::Granted)
    }

    /// Counts for metrics.
    pub fn counts(&self) -> LockCounts {
        let (mut locks_held, mut waiters) = (0, 0);
        for t in self.tables.values() {
            locks_held += t.holders.len() as u64;
            waiters += t.queue.len() as u64;
        }
        LockCounts {
            sessions: self.by_id.len() as u64,
            locks_held,
            waiters,
            locked_inodes: self.tables.len() as u64,
        }
    }

    /// Checks the invariants listed in the module doc (inode liveness is the caller's).
    pub fn check(&self) -> Result<(), String> {
        if self.by_id.keys().any(|&id| id == 0 || id > self.last_id) {
            return Err("a session id is 0 or above the counter".into());
        }
        let mut locked: BTreeMap<SessionId, BTreeSet<InodeId>> = BTreeMap::new();
        let mut waits: BTreeMap<SessionId, BTreeMap<u64, InodeId>> = BTreeMap::new();
        for (&inode, t) in &self.tables {
            if t.is_empty() {
                return Err(format!("inode {inode}: empty lock table kept"));
            }
            t.check().map_err(|e| format!("inode {inode}: {e}"))?;
            for h in &t.holders {
                locked.entry(h.session_id).or_default().insert(inode);
            }
            for w in &t.queue {
                let previous = waits
                    .entry(w.lock.session_id)
                    .or_default()
                    .insert(w.waiter_id, inode);
                if previous.is_some() {
                    return Err(format!("waiter {} queued twice", w.waiter_id));
                }
            }
        }
        for (&id, s) in &self.by_id {
            if s.locked != locked.remove(&id).unwrap_or_default()
                || s.waits != waits.remove(&id).unwrap_or_default()
            {
                return Err(format!("session {id}: lock bookkeeping is off"));
            }
            if s.granted.len() > GRANTED_MEMORY {
                return Err(format!("session {id}: remembers too many grants"));
            }
        }
        if !locked.is_empty() || !waits.is_empty() {
            return Err("a lock or waiter belongs to no live session".into());
        }
        Ok(())
    }
}
