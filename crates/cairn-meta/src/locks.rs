//! Byte-range locks of one inode: who holds what, and the FIFO queue of waiters.
//!
//! A lock belongs to a `(session, owner)` pair ("the owner" below). Two locks conflict when
//! their owners differ, their ranges overlap and at least one is exclusive; an owner never
//! conflicts with itself. A mandatory lock is always exclusive over the whole file.
//!
//! Setting a lock follows POSIX `fcntl`: the owner's existing locks over the range (those
//! with the same mandatory flag) are replaced by the new one, splitting ranges as needed,
//! and touching ranges of the same kind are merged. Unlocking cuts the range out of the
//! owner's advisory locks and removes a mandatory lock it overlaps whole (a mandatory lock
//! is never split).
//!
//! Invariants (checked by [`LockTable::check`]):
//! - every range is non-empty (`start < end`); a mandatory lock is exclusive `[0, MAX)`;
//! - one owner's locks with one mandatory flag are disjoint and never touch with the same
//!   kind (so the representation is canonical); holders are sorted by
//!   `(session, owner, mandatory, start)`;
//! - no two holders conflict;
//! - the queue is settled: every waiter conflicts with a holder or with a waiter ahead of
//!   it (otherwise it would have been granted).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{LockInfo, LockKind, SessionId, WaiterInfo};

/// Whether `a` and `b` cannot be held at once.
pub(crate) fn conflicts(a: &LockInfo, b: &LockInfo) -> bool {
    (a.session_id, a.owner) != (b.session_id, b.owner)
        && a.start < b.end
        && b.start < a.end
        && (a.kind == LockKind::Exclusive || b.kind == LockKind::Exclusive)
}

/// The locks of one inode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockTable {
    /// Held locks in canonical order (see the module invariants).
    pub holders: Vec<LockInfo>,
    /// Waiters, oldest first.
    pub queue: VecDeque<WaiterInfo>,
}

/// Sort key of the canonical holder order.
fn key(l: &LockInfo) -> (SessionId, u64, bool, u64) {
    (l.session_id, l.owner, l.mandatory, l.start)
}

fn same_owner(a: &LockInfo, b: &LockInfo) -> bool {
    (a.session_id, a.owner) == (b.session_id, b.owner)
}

impl LockTable {
    /// Whether nothing is held or queued (the table can be dropped).
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.queue.is_empty()
    }

    /// The first holder `req` conflicts with.
    pub fn conflicting_holder(&self, req: &LockInfo) -> Option<&LockInfo> {
        self.holders.iter().find(|h| conflicts(h, req))
    }

    /// The first queued waiter `req` conflicts with.
    pub fn conflicting_waiter(&self, req: &LockInfo) -> Option<&WaiterInfo> {
        self.queue.iter().find(|w| conflicts(&w.lock, req))
    }

    /// Whether `session` holds any lock here.
    pub fn held_by(&self, session: SessionId) -> bool {
        self.holders.iter().any(|h| h.session_id == session)
    }

    /// The mandatory lock on this inode, if any (there is at most one).
    pub fn mandatory(&self) -> Option<&LockInfo> {
        self.holders.iter().find(|h| h.mandatory)
    }

    /// Position (1-based) of `session`'s waiter `waiter_id` in the queue.
    pub fn position(&self, session: SessionId, waiter_id: u64) -> Option<u64> {
        self.queue
            .iter()
            .position(|w| w.lock.session_id == session && w.waiter_id == waiter_id)
            .map(|i| i as u64 + 1)
    }

    /// Sets `req` for its owner (the caller checked that it conflicts with no holder).
    pub fn set(&mut self, req: LockInfo) {
        let same_space = |h: &LockInfo| same_owner(h, &req) && h.mandatory == req.mandatory;
        let mut next = Vec::with_capacity(self.holders.len() + 2);
        for h in self.holders.drain(..) {
            if !same_space(&h) || h.end <= req.start || req.end <= h.start {
                next.push(h);
                continue;
            }
            if h.start < req.start {
                next.push(LockInfo {
                    end: req.start,
                    ..h
                });
            }
            if h.end > req.end {
                next.push(LockInfo {
                    start: req.end,
                    ..h
                });
            }
        }
        next.push(req);
        next.sort_unstable_by_key(key);
        // Merges touching ranges of the same owner, flag and kind (they are disjoint).
        let mut merged: Vec<LockInfo> = Vec::with_capacity(next.len());
        for h in next {
            match merged.last_mut() {
                Some(prev)
                    if same_owner(prev, &h)
                        && prev.mandatory == h.mandatory
                        && prev.kind == h.kind
                        && prev.end == h.start =>
                {
                    prev.end = h.end;
                }
                _ => merged.push(h),
            }
        }
        self.holders = merged;
    }

    /// Removes `(session, owner)`'s locks over `[start, end)`: advisory ones are cut, a
    /// mandatory one that overlaps goes whole. Returns whether anything changed.
    pub fn clear(&mut self, session: SessionId, owner: u64, start: u64, end: u64) -> bool {
        let before = self.holders.len();
        let mut changed = false;
        let mut next = Vec::with_capacity(before + 1);
        for h in self.holders.drain(..) {
            if (h.session_id, h.owner) != (session, owner) || h.end <= start || end <= h.start {
                next.push(h);
                continue;
            }
            changed = true;
            if h.mandatory {
                continue;
            }
            if h.start < start {
                next.push(LockInfo { end: start, ..h });
            }
            if h.end > end {
                next.push(LockInfo { start: end, ..h });
            }
        }
        next.sort_unstable_by_key(key);
        self.holders = next;
        changed
    }

    /// Drops every lock and waiter of `session`.
    pub fn remove_session(&mut self, session: SessionId) {
        self.holders.retain(|h| h.session_id != session);
        self.queue.retain(|w| w.lock.session_id != session);
    }

    /// Removes waiter `waiter_id` of `session` from the queue, if it is there.
    pub fn remove_waiter(&mut self, session: SessionId, waiter_id: u64) -> bool {
        let before = self.queue.len();
        self.queue
            .retain(|w| !(w.lock.session_id == session && w.waiter_id == waiter_id));
        self.queue.len() != before
    }

    /// Grants queued waiters in FIFO order: a waiter is granted when it conflicts with no
    /// holder and with no waiter still queued ahead of it. Repeats until nothing more can be
    /// granted (a grant that converts its owner's own locks may free a range for a waiter
    /// scanned earlier). Returns the granted waiters in grant order.
    pub fn grant_waiters(&mut self) -> Vec<WaiterInfo> {
        let mut granted = Vec::new();
        loop {
            let before = granted.len();
            let mut i = 0;
            while i < self.queue.len() {
                let w = &self.queue[i];
                let blocked = self.conflicting_holder(&w.lock).is_some()
                    || self
                        .queue
                        .iter()
                        .take(i)
                        .any(|a| conflicts(&a.lock, &w.lock));
                if blocked {
                    i += 1;
                    continue;
                }
                let w = self.queue.remove(i).expect("index is below the length");
                self.set(w.lock);
                granted.push(w);
            }
            if granted.len() == before {
                return granted;
            }
        }
    }

    /// Checks the invariants listed in the module doc.
    pub fn check(&self) -> Result<(), String> {
        for (i, h) in self.holders.iter().enumerate() {
            if h.start >= h.end {
                return Err(format!("empty lock range {h:?}"));
            }
            if h.mandatory && (h.kind != LockKind::Exclusive || h.start != 0 || h.end != u64::MAX) {
                return Err(format!("mandatory lock is not whole-file exclusive: {h:?}"));
            }
            if let Some(next) = self.holders.get(i + 1) {
                if key(h) >= key(next) {
                    return Err("holders are not in canonical order".into());
                }
                if same_owner(h, next)
                    && h.mandatory == next.mandatory
                    && (h.end > next.start || (h.end == next.start && h.kind == next.kind))
                {
                    return Err(format!("ranges overlap or should merge: {h:?} {next:?}"));
                }
            }
            if self.holders[i + 1..].iter().any(|o| conflicts(h, o)) {
                return Err(format!("conflicting holders: {h:?}"));
            }
        }
        for (i, w) in self.queue.iter().enumerate() {
            if w.lock.start >= w.lock.end {
                return Err(format!("empty waiter range {w:?}"));
            }
            let blocked = self.conflicting_holder(&w.lock).is_some()
                || self
                    .queue
                    .iter()
                    .take(i)
                    .any(|a| conflicts(&a.lock, &w.lock));
            if !blocked {
                return Err(format!("waiter {} could be granted", w.waiter_id));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockKind::{Exclusive as X, Shared as S};

    fn l(session: u64, owner: u64, kind: LockKind, start: u64, end: u64) -> LockInfo {
        LockInfo {
            session_id: session,
            owner,
            kind,
            start,
            end,
            mandatory: false,
        }
    }

    fn ranges(t: &LockTable) -> Vec<(u64, u64, LockKind, u64, u64)> {
        t.holders
            .iter()
            .map(|h| (h.session_id, h.owner, h.kind, h.start, h.end))
            .collect()
    }

    #[test]
    fn conflict_rules() {
        assert!(conflicts(&l(1, 1, X, 0, 10), &l(2, 1, S, 9, 20)));
        assert!(!conflicts(&l(1, 1, X, 0, 10), &l(2, 1, S, 10, 20)));
        assert!(!conflicts(&l(1, 1, S, 0, 10), &l(2, 1, S, 0, 10)));
        assert!(!conflicts(&l(1, 1, X, 0, 10), &l(1, 1, X, 0, 10)));
        assert!(conflicts(&l(1, 1, X, 0, 10), &l(1, 2, X, 0, 10)));
    }

    #[test]
    fn set_splits_converts_and_merges() {
        let mut t = LockTable::default();
        t.set(l(1, 1, S, 0, 100));
        t.set(l(1, 1, X, 40, 60));
        assert_eq!(
            ranges(&t),
            [(1, 1, S, 0, 40), (1, 1, X, 40, 60), (1, 1, S, 60, 100)]
        );
        t.set(l(1, 1, S, 40, 60));
        assert_eq!(ranges(&t), [(1, 1, S, 0, 100)]);
        t.set(l(1, 1, S, 100, 200));
        assert_eq!(ranges(&t), [(1, 1, S, 0, 200)]);
        assert!(t.clear(1, 1, 50, 150));
        assert_eq!(ranges(&t), [(1, 1, S, 0, 50), (1, 1, S, 150, 200)]);
        assert!(!t.clear(1, 1, 60, 70));
        assert!(!t.clear(2, 1, 0, u64::MAX));
        t.check().unwrap();
    }
}
