//! Sessions-and-locks property test: random Open/Close/Lock/Unlock/CancelWait/TestLock and
//! file re-creation sequences run against `MetaState` and against a brute-force model. The
//! model keeps each owner's advisory locks as one kind per byte cell (cells `0..4` are
//! single bytes, cell 4 is `[4, MAX)`; few cells make conflicts likely), mandatory locks as a set of owners, and the queue
//! as a list; conflicts are checked cell by cell and grants by rescanning the queue until
//! nothing changes. After every step the answers, the holders (expanded to cells), the
//! queues, every wait's status and the per-session lock counts must agree, the
//! invariants must hold, and a failing command must leave the state unchanged. At the end, replay and a serialization round trip must agree.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use LockKind::Exclusive as X;
use cairn_meta::*;
use proptest::prelude::*;

use crate::common::{self, MAX};

const CELLS: usize = 5;
type Owner = (SessionId, u64);
type Cells = [Option<LockKind>; CELLS];

fn cells(start: u64, end: u64) -> std::ops::Range<usize> {
    start as usize..if end == MAX { CELLS } else { end as usize }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Req {
    lock: LockInfo,
    waiter_id: u64,
}

impl Req {
    fn owner(&self) -> Owner {
        (self.lock.session_id, self.lock.owner)
    }
}

fn reqs_conflict(a: &LockInfo, b: &LockInfo) -> bool {
    let (ra, rb) = (cells(a.start, a.end), cells(b.start, b.end));
    (a.session_id, a.owner) != (b.session_id, b.owner)
        && ra.start < rb.end
        && rb.start < ra.end
        && (a.kind == X || b.kind == X)
}

/// One file's locks in the model.
#[derive(Clone, Debug, Default)]
struct FileLocks {
    adv: BTreeMap<Owner, Cells>,
    mand: BTreeSet<Owner>,
    queue: Vec<Req>,
}

impl FileLocks {
    fn holder_conflict(&self, r: &LockInfo) -> bool {
        let me = (r.session_id, r.owner);
        let adv = self.adv.iter().any(|(o, arr)| {
            *o != me && cells(r.start, r.end).any(|c| arr[c].is_some_and(|k| k == X || r.kind == X))
        });
        adv || self.mand.iter().any(|o| *o != me)
    }

    fn apply(&mut self, r: &LockInfo) {
        let me = (r.session_id, r.owner);
        if r.mandatory {
            self.mand.insert(me);
        } else {
            let arr = self.adv.entry(me).or_insert([None; CELLS]);
            for c in cells(r.start, r.end) {
                arr[c] = Some(r.kind);
            }
        }
    }

    fn clear(&mut self, me: Owner, start: u64, end: u64) {
        if let Some(arr) = self.adv.get_mut(&me) {
            for c in cells(start, end) {
                arr[c] = None;
            }
            if arr.iter().all(Option::is_none) {
                self.adv.remove(&me);
            }
        }
        self.mand.remove(&me);
    }

    fn grant(&mut self) -> Vec<Req> {
        let mut granted = Vec::new();
        loop {
            let before = granted.len();
            let mut i = 0;
            while i < self.queue.len() {
                let w = self.queue[i];
                let blocked = self.holder_conflict(&w.lock)
                    || self.queue[..i]
                        .iter()
                        .any(|a| reqs_conflict(&a.lock, &w.lock));
                if blocked {
                    i += 1;
                } else {
                    self.queue.remove(i);
                    self.apply(&w.lock);
                    granted.push(w);
                }
            }
            if granted.len() == before {
                return granted;
            }
        }
    }

    /// Ranges held by `session` in canonical form (maximal runs of one kind).
    fn ranges_of(&self, session: SessionId) -> u64 {
        let mut n = self.mand.iter().filter(|o| o.0 == session).count() as u64;
        for (_, arr) in self.adv.iter().filter(|(o, _)| o.0 == session) {
            n += (0..CELLS)
                .filter(|&c| arr[c].is_some() && (c == 0 || arr[c - 1] != arr[c]))
                .count() as u64;
        }
        n
    }
}

/// Sessions with their remembered grants, and the two files' locks.
struct Model {
    sessions: BTreeMap<SessionId, VecDeque<u64>>,
    files: [FileLocks; 2],
}

impl Model {
    fn remember(&mut self, session: SessionId, waiter: u64) {
        let mem = self.sessions.get_mut(&session).expect("live session");
        mem.retain(|&w| w != waiter);
        if mem.len() >= GRANTED_MEMORY {
            mem.pop_front();
        }
        mem.push_back(waiter);
    }

    /// Grants on file `slot` and records them.
    fn grant(&mut self, slot: usize, inode: InodeId) -> Vec<Grant> {
        let granted = self.files[slot].grant();
        granted
            .iter()
            .map(|w| {
                self.remember(w.lock.session_id, w.waiter_id);
                Grant {
                    session_id: w.lock.session_id,
                    waiter_id: w.waiter_id,
                    inode,
                }
            })
            .collect()
    }

    fn status(&self, session: SessionId, waiter: u64) -> Option<LockOutcome> {
        let mem = self.sessions.get(&session)?;
        for f in &self.files {
            if let Some(i) = f
                .queue
                .iter()
                .position(|w| w.lock.session_id == session && w.waiter_id == waiter)
            {
                return Some(LockOutcome::Queued {
                    position: i as u64 + 1,
                });
            }
        }
        mem.contains(&waiter).then_some(LockOutcome::Granted)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Open,
    Close(usize),
    /// Session pick, file, owner, kind, range, mandatory, wait.
    Lock(usize, usize, u64, LockKind, (u64, u64), bool, bool),
    Unlock(usize, usize, u64, (u64, u64)),
    /// File, holder pick, range: unlocks for a current holder (random owners rarely are).
    UnlockHeld(usize, usize, (u64, u64)),
    Cancel(usize),
    Test(usize, usize, u64, LockKind, (u64, u64)),
    Recreate(usize),
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    let last = CELLS as u64 - 1;
    (0..=last, 1..=last + 1).prop_map(move |(a, b)| match (a, b) {
        (a, b) if a == last || b == last + 1 => (a, MAX),
        (a, b) if b <= a => (a, a + 1),
        (a, b) => (a, b),
    })
}

fn kind() -> impl Strategy<Value = LockKind> {
    prop_oneof![Just(LockKind::Shared), Just(X)]
}

fn op() -> impl Strategy<Value = Op> {
    let s = any::<usize>();
    prop_oneof![
        1 => Just(Op::Open),
        1 => s.prop_map(Op::Close),
        10 => (s, 0..2usize, 0..2u64, kind(), range(), prop::bool::weighted(0.1), prop::bool::weighted(0.7))
            .prop_map(|(s, f, o, k, r, m, w)| Op::Lock(s, f, o, k, r, m, w)),
        3 => (s, 0..2usize, 0..2u64, range()).prop_map(|(s, f, o, r)| Op::Unlock(s, f, o, r)),
        4 => (0..2usize, s, prop_oneof![Just((0, MAX)), range()])
            .prop_map(|(f, k, r)| Op::UnlockHeld(f, k, r)),
        2 => s.prop_map(Op::Cancel),
        1 => (s, 0..2usize, 0..2u64, kind(), range())
            .prop_map(|(s, f, o, k, r)| Op::Test(s, f, o, k, r)),
        1 => (0..2usize).prop_map(Op::Recreate),
    ]
}

const NAMES: [&str; 2] = ["f0", "f1"];

fn create(st: &mut MetaState, log: &mut Vec<MetaCommand>, slot: usize) -> InodeId {
    let cmd = common::create_at_cmd(ROOT_INODE, NAMES[slot], true, 0);
    log.push(cmd.clone());
    match st.apply(None, &cmd) {
        Ok(MetaResponse::Created { attr, .. }) => attr.inode,
        other => panic!("create: {other:?}"),
    }
}

fn check_ops(ops: Vec<Op>) {
    let mut st = common::fs();
    let mut log: Vec<MetaCommand> = Vec::new();
    let mut ids = [0, 0];
    for (slot, id) in ids.iter_mut().enumerate() {
        *id = create(&mut st, &mut log, slot);
    }
    let mut model = Model {
        sessions: BTreeMap::new(),
        files: Default::default(),
    };
    let mut all_sessions: Vec<SessionId> = Vec::new();
    let mut waits: Vec<(SessionId, u64)> = Vec::new();
    let ops = [Op::Open, Op::Open, Op::Open].into_iter().chain(ops);
    for (step, op) in ops.enumerate() {
        let pick = |i: usize| all_sessions[i % all_sessions.len()];
        let live = |m: &Model, s| m.sessions.contains_key(&s);
        let (cmd, want): (MetaCommand, Result<MetaResponse, ErrorKind>) = match op {
            Op::Open => {
                let id = all_sessions.len() as u64 + 1;
                all_sessions.push(id);
                model.sessions.insert(id, VecDeque::new());
                let cmd = MetaCommand::OpenSession {
                    owner: format!("host:{id}"),
                    now_ns: step as i64,
                };
                (cmd, Ok(MetaResponse::Session { session_id: id }))
            }
            Op::Close(i) => {
                let s = pick(i);
                let want = if model.sessions.remove(&s).is_some() {
                    let mut order: Vec<usize> = vec![0, 1];
                    order.sort_by_key(|&slot| ids[slot]);
                    let mut granted = Vec::new();
                    for slot in order {
                        let f = &mut model.files[slot];
                        f.adv.retain(|o, _| o.0 != s);
                        f.mand.retain(|o| o.0 != s);
                        f.queue.retain(|w| w.lock.session_id != s);
                        granted.extend(model.grant(slot, ids[slot]));
                    }
                    Ok(MetaResponse::Released { granted })
                } else {
                    Err(ErrorKind::NotFound)
                };
                (MetaCommand::CloseSession { session_id: s }, want)
            }
            Op::Lock(i, slot, owner, kind, (start, end), mandatory, wait) => {
                let s = pick(i);
                let lock = LockInfo {
                    session_id: s,
                    owner,
                    kind: if mandatory { X } else { kind },
                    start: if mandatory { 0 } else { start },
                    end: if mandatory { MAX } else { end },
                    mandatory,
                };
                let waiter_id = step as u64;
                let cmd = MetaCommand::Lock {
                    session_id: s,
                    inode: ids[slot],
                    owner,
                    kind: lock.kind,
                    start: lock.start,
                    end: lock.end,
                    mandatory,
                    wait,
                    waiter_id,
                };
                let f = &model.files[slot];
                let blocked = f.holder_conflict(&lock)
                    || f.queue.iter().any(|w| reqs_conflict(&w.lock, &lock));
                let want = if !live(&model, s) {
                    Err(ErrorKind::NotFound)
                } else if !blocked {
                    model.files[slot].apply(&lock);
                    if wait {
                        model.remember(s, waiter_id);
                        waits.push((s, waiter_id));
                    }
                    let granted = model.grant(slot, ids[slot]);
                    Ok(MetaResponse::LockResult {
                        outcome: LockOutcome::Granted,
                        granted,
                    })
                } else if wait {
                    let q = &mut model.files[slot].queue;
                    q.push(Req { lock, waiter_id });
                    waits.push((s, waiter_id));
                    Ok(MetaResponse::LockResult {
                        outcome: LockOutcome::Queued {
                            position: q.len() as u64,
                        },
                        granted: vec![],
                    })
                } else {
                    Err(ErrorKind::Locked)
                };
                (cmd, want)
            }
            Op::Unlock(..) | Op::UnlockHeld(..) => {
                let (s, slot, owner, (start, end)) = match op {
                    Op::Unlock(i, slot, owner, r) => (pick(i), slot, owner, r),
                    Op::UnlockHeld(slot, k, r) => {
                        let f = &model.files[slot];
                        let owners: Vec<Owner> =
                            f.adv.keys().chain(f.mand.iter()).copied().collect();
                        let Some(&(s, o)) = owners.get(k % owners.len().max(1)) else {
                            continue;
                        };
                        (s, slot, o, r)
                    }
                    _ => unreachable!("matched above"),
                };
                let want = if live(&model, s) {
                    model.files[slot].clear((s, owner), start, end);
                    let granted = model.grant(slot, ids[slot]);
                    Ok(MetaResponse::Released { granted })
                } else {
                    Err(ErrorKind::NotFound)
                };
                (common::unlock_cmd(s, ids[slot], owner, start, end), want)
            }
            Op::Cancel(i) => {
                let (s, waiter_id) = waits.get(i % waits.len().max(1)).copied().unwrap_or((1, 7));
                let queued = (0..2).find(|&slot| {
                    model.files[slot]
                        .queue
                        .iter()
                        .any(|w| (w.lock.session_id, w.waiter_id) == (s, waiter_id))
                });
                let want = match (live(&model, s), queued) {
                    (false, _) => Err(ErrorKind::NotFound),
                    (true, Some(slot)) => {
                        let q = &mut model.files[slot].queue;
                        q.retain(|w| (w.lock.session_id, w.waiter_id) != (s, waiter_id));
                        let granted = model.grant(slot, ids[slot]);
                        Ok(MetaResponse::LockResult {
                            outcome: LockOutcome::Cancelled,
                            granted,
                        })
                    }
                    (true, None) if model.sessions[&s].contains(&waiter_id) => {
                        Ok(MetaResponse::LockResult {
                            outcome: LockOutcome::Granted,
                            granted: vec![],
                        })
                    }
                    (true, None) => Err(ErrorKind::NotFound),
                };
                let cmd = MetaCommand::CancelWait {
                    session_id: s,
                    waiter_id,
                };
                (cmd, want)
            }
            Op::Test(i, slot, owner, kind, (start, end)) => {
                let s = pick(i);
                let got = st.test_lock(ids[slot], s, owner, kind, start, end);
                let probe = LockInfo {
                    session_id: s,
                    owner,
                    kind,
                    start,
                    end,
                    mandatory: false,
                };
                assert_eq!(got.is_some(), model.files[slot].holder_conflict(&probe));
                if let Some(h) = got {
                    assert!(st.locks(ids[slot]).0.contains(&h));
                    assert!(reqs_conflict(&h, &probe) || h.mandatory);
                }
                continue;
            }
            Op::Recreate(slot) => {
                let cmd = common::unlink_cmd(ROOT_INODE, NAMES[slot], None);
                // A mandatory lock keeps the file; otherwise its waiters are dropped.
                if !model.files[slot].mand.is_empty() {
                    (cmd, Err(ErrorKind::Locked))
                } else {
                    let f = std::mem::take(&mut model.files[slot]);
                    let dropped = f
                        .queue
                        .iter()
                        .map(|w| Grant {
                            session_id: w.lock.session_id,
                            waiter_id: w.waiter_id,
                            inode: ids[slot],
                        })
                        .collect();
                    let want = Ok(MetaResponse::Removed {
                        freed: vec![],
                        dropped,
                    });
                    (cmd, want)
                }
            }
        };
        let before = st.clone();
        let got = st.apply(None, &cmd);
        if got.is_err() {
            assert_eq!(
                st, before,
                "step {step}: {op:?} failed but changed the state"
            );
        }
        log.push(cmd.clone());
        let removed = got.is_ok();
        assert_eq!(got.map_err(|e| e.kind()), want, "step {step}: {op:?}");
        if let (Op::Recreate(slot), true) = (&op, removed) {
            let slot = *slot;
            ids[slot] = create(&mut st, &mut log, slot);
        }
        st.check_invariants()
            .unwrap_or_else(|e| panic!("step {step}: {op:?}: {e}"));
        compare(&st, &model, &ids, &waits, step);
    }

    // Replay rebuilds the same bytes; a round trip keeps every answer.
    let bytes = postcard::to_stdvec(&st).unwrap();
    let mut replay = common::fs();
    for cmd in &log {
        let _ = replay.apply(None, cmd);
    }
    assert_eq!(postcard::to_stdvec(&replay).unwrap(), bytes);
    let loaded: MetaState = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(loaded, st);
    assert_eq!(loaded.sessions(), st.sessions());
    assert_eq!(loaded.lock_counts(), st.lock_counts());
    for id in ids {
        assert_eq!(loaded.locks(id), st.locks(id));
    }
    for &(s, w) in &waits {
        assert_eq!(loaded.lock_status(s, w), st.lock_status(s, w));
    }
}

/// Holders, queues, wait statuses and session counts agree with the model.
fn compare(
    st: &MetaState,
    model: &Model,
    ids: &[InodeId; 2],
    waits: &[(SessionId, u64)],
    step: usize,
) {
    for (slot, &id) in ids.iter().enumerate() {
        let (held, queued) = st.locks(id);
        let mut adv: BTreeMap<Owner, Cells> = BTreeMap::new();
        let mut mand = BTreeSet::new();
        for h in &held {
            if h.mandatory {
                mand.insert((h.session_id, h.owner));
            } else {
                let arr = adv.entry((h.session_id, h.owner)).or_insert([None; CELLS]);
                for c in cells(h.start, h.end) {
                    assert_eq!(arr[c], None, "step {step}: overlapping ranges");
                    arr[c] = Some(h.kind);
                }
            }
        }
        let f = &model.files[slot];
        assert_eq!(
            (&adv, &mand),
            (&f.adv, &f.mand),
            "step {step}: holders of file {slot}"
        );
        let want: Vec<WaiterInfo> = f
            .queue
            .iter()
            .map(|w| WaiterInfo {
                waiter_id: w.waiter_id,
                lock: w.lock,
            })
            .collect();
        assert_eq!(queued, want, "step {step}: queue of file {slot}");
        let owners: BTreeSet<Owner> = f.queue.iter().map(Req::owner).collect();
        assert!(owners.len() <= f.queue.len());
    }
    for &(s, w) in waits {
        assert_eq!(
            st.lock_status(s, w),
            model.status(s, w),
            "step {step}: wait {s}/{w}"
        );
    }
    let sessions: Vec<(SessionId, u64)> =
        st.sessions().iter().map(|i| (i.id, i.locks_held)).collect();
    let want: Vec<(SessionId, u64)> = model
        .sessions
        .keys()
        .map(|&s| (s, model.files.iter().map(|f| f.ranges_of(s)).sum()))
        .collect();
    assert_eq!(sessions, want, "step {step}: sessions");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn locks_match_the_model(ops in prop::collection::vec(op(), 1..80)) {
        check_ops(ops);
    }
}
