//! Unit tests of sessions and byte-range locks: conflicts, range splitting, FIFO fairness,
//! cancellation races, session close and expiry, and waiters dropped with their inode.
//! Every failing command also checks that the state is unchanged.

mod common;

use LockKind::{Exclusive as X, Shared as S};
use cairn_meta::*;
use common::*;

#[test]
fn sessions_open_and_close() {
    let mut st = fs();
    let a = open_session(&mut st, "host-a:1");
    let b = open_session(&mut st, "host-b:2");
    assert_eq!((a, b), (1, 2));
    let infos = st.sessions();
    assert_eq!(infos.len(), 2);
    assert_eq!(
        (
            infos[1].id,
            infos[1].owner.as_str(),
            infos[1].opened_ns,
            infos[1].locks_held
        ),
        (2, "host-b:2", T0, 0)
    );
    let long = MetaCommand::OpenSession {
        owner: "x".repeat(257),
        now_ns: 0,
    };
    assert_eq!(err_kind(&mut st, long), ErrorKind::InvalidArgument);
    assert!(released(&mut st, MetaCommand::CloseSession { session_id: a }).is_empty());
    assert_eq!(
        err_kind(&mut st, MetaCommand::CloseSession { session_id: a }),
        ErrorKind::NotFound
    );
    assert!(released(&mut st, MetaCommand::ExpireSession { session_id: b }).is_empty());
    assert_eq!(
        err_kind(&mut st, MetaCommand::ExpireSession { session_id: 9 }),
        ErrorKind::NotFound
    );
    // Ids are never reused.
    assert_eq!(open_session(&mut st, ""), 3);
    assert_eq!(st.lock_counts().sessions, 1);
}

#[test]
fn conflicts_follow_owner_range_and_kind() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let (s1, s2) = (open_session(&mut st, "a:1"), open_session(&mut st, "b:2"));
    lock_ok(&mut st, lock_cmd(s1, f, 1, S, 0, 100));
    lock_ok(&mut st, lock_cmd(s2, f, 1, S, 50, 150));
    // Touching, not overlapping: no conflict.
    lock_ok(&mut st, lock_cmd(s2, f, 7, X, 150, 200));
    // Same session, other owner: conflicts.
    let e = err(&mut st, lock_cmd(s1, f, 2, X, 10, 20));
    assert_eq!(e.kind(), ErrorKind::Locked);
    assert_eq!(e.to_string(), "/f: locked by session 1 (a:1)");
    let e = err(&mut st, lock_cmd(s1, f, 1, X, 90, 160));
    assert_eq!(e.to_string(), "/f: locked by session 2 (b:2)");
    // F_GETLK reports the first conflicting holder, or nothing.
    let h = st.test_lock(f, s1, 1, X, 90, 160).unwrap();
    assert_eq!(
        (h.session_id, h.owner, h.kind, h.start, h.end),
        (s2, 1, S, 50, 150)
    );
    assert_eq!(st.test_lock(f, s1, 1, S, 0, 150), None);
    assert_eq!(
        st.test_lock(f, s2, 1, X, 50, 150).map(|h| h.session_id),
        Some(s1)
    );
    assert_eq!(st.test_lock(999, s1, 1, X, 0, 1), None);
    // An owner never conflicts with itself.
    lock_ok(&mut st, lock_cmd(s2, f, 7, S, 140, 210));
    assert_eq!(
        holders(&st, f),
        [
            (s1, 1, S, 0, 100),
            (s2, 1, S, 50, 150),
            (s2, 7, S, 140, 210),
        ]
    );
    assert_eq!(st.sessions()[1].locks_held, 2);
    let counts = st.lock_counts();
    assert_eq!(
        (counts.locks_held, counts.waiters, counts.locked_inodes),
        (3, 0, 1)
    );
}

#[test]
fn lock_argument_errors() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let s = open_session(&mut st, "a");
    assert_eq!(
        err_kind(&mut st, lock_cmd(9, f, 1, S, 0, 1)),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(&mut st, lock_cmd(s, 99, 1, S, 0, 1)),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(&mut st, lock_cmd(s, f, 1, S, 5, 5)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(&mut st, lock_cmd(s, f, 1, S, 6, 5)),
        ErrorKind::InvalidArgument
    );
    let mut bad = mandatory_cmd(s, f, 1);
    if let MetaCommand::Lock { kind, .. } = &mut bad {
        *kind = S;
    }
    assert_eq!(err_kind(&mut st, bad), ErrorKind::InvalidArgument);
    let mut partial = mandatory_cmd(s, f, 1);
    if let MetaCommand::Lock { end, .. } = &mut partial {
        *end = 10;
    }
    assert_eq!(err_kind(&mut st, partial), ErrorKind::InvalidArgument);
    assert_eq!(
        err_kind(&mut st, mandatory_cmd(s, ROOT_INODE, 1)),
        ErrorKind::InvalidArgument
    );
    // Advisory locks on directories are fine (flock on a directory).
    lock_ok(&mut st, lock_cmd(s, ROOT_INODE, 1, X, 0, MAX));
    assert_eq!(
        err_kind(&mut st, unlock_cmd(s, f, 1, 3, 3)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(&mut st, unlock_cmd(9, f, 1, 0, 3)),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(&mut st, unlock_cmd(s, 99, 1, 0, 3)),
        ErrorKind::NotFound
    );
    // Unlocking what is not held is a no-op.
    assert!(released(&mut st, unlock_cmd(s, f, 1, 0, MAX)).is_empty());
}

#[test]
fn converting_a_sub_range_splits_and_merges() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let (s1, s2) = (open_session(&mut st, "a"), open_session(&mut st, "b"));
    lock_ok(&mut st, lock_cmd(s1, f, 1, X, 0, 100));
    lock_ok(&mut st, lock_cmd(s1, f, 1, S, 40, 60));
    assert_eq!(
        holders(&st, f),
        [(s1, 1, X, 0, 40), (s1, 1, S, 40, 60), (s1, 1, X, 60, 100)]
    );
    // The shared middle is open to others now; the exclusive ends are not.
    lock_ok(&mut st, lock_cmd(s2, f, 1, S, 45, 55));
    assert_eq!(
        err_kind(&mut st, lock_cmd(s2, f, 1, S, 39, 41)),
        ErrorKind::Locked
    );
    // Upgrading the middle back conflicts with s2's shared lock.
    assert_eq!(
        err_kind(&mut st, lock_cmd(s1, f, 1, X, 40, 60)),
        ErrorKind::Locked
    );
    released(&mut st, unlock_cmd(s2, f, 1, 0, MAX));
    lock_ok(&mut st, lock_cmd(s1, f, 1, X, 40, 60));
    assert_eq!(holders(&st, f), [(s1, 1, X, 0, 100)]);
    // Unlocking a middle part splits; unlocking across the pieces removes them.
    released(&mut st, unlock_cmd(s1, f, 1, 20, 30));
    assert_eq!(holders(&st, f), [(s1, 1, X, 0, 20), (s1, 1, X, 30, 100)]);
    released(&mut st, unlock_cmd(s1, f, 1, 10, 50));
    assert_eq!(holders(&st, f), [(s1, 1, X, 0, 10), (s1, 1, X, 50, 100)]);
    // Extending to infinity and unlocking all of it.
    lock_ok(&mut st, lock_cmd(s1, f, 1, X, 100, MAX));
    assert_eq!(holders(&st, f), [(s1, 1, X, 0, 10), (s1, 1, X, 50, MAX)]);
    released(&mut st, unlock_cmd(s1, f, 1, 0, MAX));
    assert_eq!(st.locks(f), (vec![], vec![]));
    assert_eq!(st.sessions()[0].locks_held, 0);
}

#[test]
fn queued_waiters_are_never_overtaken() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let s1 = open_session(&mut st, "a");
    let s2 = open_session(&mut st, "b");
    let s3 = open_session(&mut st, "c");
    lock_ok(&mut st, lock_cmd(s1, f, 1, S, 0, 10));
    let (o, g) = lock_ok(&mut st, wait_cmd(lock_cmd(s2, f, 1, X, 0, 10), 21));
    assert_eq!((o, g), (LockOutcome::Queued { position: 1 }, vec![]));
    // Compatible with the holder but not with the writer queued first: queued behind it.
    let e = err(&mut st, lock_cmd(s3, f, 1, S, 5, 6));
    assert_eq!(e.kind(), ErrorKind::Locked);
    assert_eq!(
        e.to_string(),
        "/f: a conflicting lock of session 2 (b) is queued first"
    );
    let (o, _) = lock_ok(&mut st, wait_cmd(lock_cmd(s3, f, 1, S, 5, 6), 31));
    assert_eq!(o, LockOutcome::Queued { position: 2 });
    // A request that conflicts with no one is granted beside the queue.
    lock_ok(&mut st, lock_cmd(s3, f, 2, S, 10, 20));
    assert_eq!(
        st.lock_status(s3, 31),
        Some(LockOutcome::Queued { position: 2 })
    );
    assert_eq!(
        st.lock_status(s2, 21),
        Some(LockOutcome::Queued { position: 1 })
    );
    assert_eq!(st.lock_counts().waiters, 2);
    // Releasing the reader grants the writer; the later reader stays queued behind it.
    let g = released(&mut st, unlock_cmd(s1, f, 1, 0, MAX));
    assert_eq!(g, [grant(s2, 21, f)]);
    assert_eq!(queue(&st, f), [(s3, 31)]);
    assert_eq!(
        st.lock_status(s3, 31),
        Some(LockOutcome::Queued { position: 1 })
    );
    assert_eq!(st.lock_status(s2, 21), Some(LockOutcome::Granted));
    let g = released(&mut st, unlock_cmd(s2, f, 1, 0, MAX));
    assert_eq!(g, [grant(s3, 31, f)]);
    assert_eq!(holders(&st, f), [(s3, 1, S, 5, 6), (s3, 2, S, 10, 20)]);
}

#[test]
fn a_blocked_waiter_blocks_only_conflicting_later_ones() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let s1 = open_session(&mut st, "a");
    let s2 = open_session(&mut st, "b");
    let s3 = open_session(&mut st, "c");
    let s4 = open_session(&mut st, "d");
    lock_ok(&mut st, lock_cmd(s1, f, 1, X, 0, 10));
    lock_ok(&mut st, lock_cmd(s1, f, 2, X, 20, 30));
    lock_ok(&mut st, wait_cmd(lock_cmd(s2, f, 1, X, 0, 10), 1));
    lock_ok(&mut st, wait_cmd(lock_cmd(s3, f, 1, X, 20, 30), 1));
    let (o, _) = lock_ok(&mut st, wait_cmd(lock_cmd(s4, f, 1, S, 0, 30), 1));
    assert_eq!(o, LockOutcome::Queued { position: 3 });
    // Freeing [20, 30): s2 is still blocked, but s3 does not conflict with it.
    let g = released(&mut st, unlock_cmd(s1, f, 2, 0, MAX));
    assert_eq!(g, [grant(s3, 1, f)]);
    assert_eq!(queue(&st, f), [(s2, 1), (s4, 1)]);
    // Freeing the rest grants s2; s4 stays behind it (and behind s3's holder).
    let g = released(&mut st, unlock_cmd(s1, f, 1, 0, MAX));
    assert_eq!(g, [grant(s2, 1, f)]);
    let g = released(&mut st, unlock_cmd(s2, f, 1, 0, MAX));
    assert!(g.is_empty());
    let g = released(&mut st, unlock_cmd(s3, f, 1, 0, MAX));
    assert_eq!(g, [grant(s4, 1, f)]);
}

#[test]
fn a_conversion_grants_waiters_it_unblocks() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let s1 = open_session(&mut st, "a");
    let s2 = open_session(&mut st, "b");
    let s4 = open_session(&mut st, "d");
    lock_ok(&mut st, lock_cmd(s1, f, 1, X, 0, 10));
    lock_ok(&mut st, wait_cmd(lock_cmd(s2, f, 1, S, 0, 10), 5));
    // Downgrading to shared lets the queued reader in at once.
    let (o, g) = lock_ok(&mut st, lock_cmd(s1, f, 1, S, 0, 10));
    assert_eq!((o, g), (LockOutcome::Granted, vec![grant(s2, 5, f)]));
    released(&mut st, unlock_cmd(s2, f, 1, 0, MAX));

    // A queued conversion, granted later, frees a range for a waiter scanned before it.
    lock_ok(&mut st, lock_cmd(s1, f, 1, X, 0, 10));
    lock_ok(&mut st, lock_cmd(s4, f, 1, X, 20, 30));
    lock_ok(&mut st, wait_cmd(lock_cmd(s2, f, 1, S, 0, 10), 6));
    let (o, _) = lock_ok(&mut st, wait_cmd(lock_cmd(s1, f, 1, S, 0, 30), 7));
    assert_eq!(o, LockOutcome::Queued { position: 2 });
    let g = released(&mut st, unlock_cmd(s4, f, 1, 0, MAX));
    assert_eq!(g, [grant(s1, 7, f), grant(s2, 6, f)]);
    assert_eq!(holders(&st, f), [(s1, 1, S, 0, 30), (s2, 1, S, 0, 10)]);
}

#[test]
fn cancel_wait_races() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let s1 = open_session(&mut st, "a");
    let s2 = open_session(&mut st, "b");
    let s3 = open_session(&mut st, "c");
    lock_ok(&mut st, lock_cmd(s1, f, 1, X, 0, 10));
    lock_ok(&mut st, wait_cmd(lock_cmd(s2, f, 1, X, 0, 10), 7));
    lock_ok(&mut st, wait_cmd(lock_cmd(s3, f, 1, S, 0, 10), 8));
    // A waiter id is unique among the session's queued waits.
    let dup = wait_cmd(lock_cmd(s2, f, 2, S, 50, 60), 7);
    assert_eq!(err_kind(&mut st, dup), ErrorKind::InvalidArgument);
    // Cancelling s2 leaves s3 blocked by the holder.
    let cancel = |s, w| MetaCommand::CancelWait {
        session_id: s,
        waiter_id: w,
    };
    assert_eq!(
        lock_ok(&mut st, cancel(s2, 7)),
        (LockOutcome::Cancelled, vec![])
    );
    assert_eq!(st.lock_status(s2, 7), None);
    assert_eq!(err_kind(&mut st, cancel(s2, 7)), ErrorKind::NotFound);
    assert_eq!(err_kind(&mut st, cancel(s1, 8)), ErrorKind::NotFound);
    assert_eq!(err_kind(&mut st, cancel(99, 8)), ErrorKind::NotFound);
    // The unlock grants s3 before its cancel arrives: the cancel reports the grant.
    assert_eq!(
        released(&mut st, unlock_cmd(s1, f, 1, 0, 10)),
        [grant(s3, 8, f)]
    );
    assert_eq!(
        lock_ok(&mut st, cancel(s3, 8)),
        (LockOutcome::Granted, vec![])
    );
    assert_eq!(holders(&st, f), [(s3, 1, S, 0, 10)]);
    // A wait granted at once is remembered too.
    let (o, _) = lock_ok(&mut st, wait_cmd(lock_cmd(s2, f, 1, S, 0, 10), 9));
    assert_eq!(o, LockOutcome::Granted);
    assert_eq!(
        lock_ok(&mut st, cancel(s2, 9)),
        (LockOutcome::Granted, vec![])
    );

    // Cancelling the waiter that blocked a later one grants the later one.
    lock_ok(&mut st, wait_cmd(lock_cmd(s1, f, 1, X, 0, 10), 1));
    lock_ok(&mut st, wait_cmd(lock_cmd(s1, f, 2, S, 5, 6), 2));
    let (o, g) = lock_ok(&mut st, cancel(s1, 1));
    assert_eq!((o, g), (LockOutcome::Cancelled, vec![grant(s1, 2, f)]));
}

#[test]
fn granted_memory_is_bounded() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let s = open_session(&mut st, "a");
    for w in 0..(GRANTED_MEMORY as u64 + 5) {
        lock_ok(&mut st, wait_cmd(lock_cmd(s, f, w, S, 0, 1), w));
    }
    assert_eq!(st.lock_status(s, 0), None);
    assert_eq!(st.lock_status(s, 5), Some(LockOutcome::Granted));
}

#[test]
fn closing_or_expiring_a_session_grants_its_waiters() {
    for expire in [false, true] {
        let mut st = fs();
        let f = create(&mut st, "/f").inode;
        let g = create(&mut st, "/g").inode;
        let s1 = open_session(&mut st, "a");
        let s2 = open_session(&mut st, "b");
        let s3 = open_session(&mut st, "c");
        lock_ok(&mut st, lock_cmd(s1, g, 1, X, 0, MAX));
        lock_ok(&mut st, lock_cmd(s1, f, 1, S, 0, 10));
        lock_ok(&mut st, lock_cmd(s1, f, 2, S, 20, 30));
        lock_ok(&mut st, wait_cmd(lock_cmd(s3, g, 1, S, 5, 6), 1));
        lock_ok(&mut st, wait_cmd(lock_cmd(s2, f, 1, X, 0, 30), 1));
        // s1's own queued wait goes with it.
        lock_ok(&mut st, wait_cmd(lock_cmd(s1, f, 3, X, 0, 1), 4));
        assert_eq!(st.sessions()[0].locks_held, 3);
        let cmd = if expire {
            MetaCommand::ExpireSession { session_id: s1 }
        } else {
            MetaCommand::CloseSession { session_id: s1 }
        };
        assert_eq!(released(&mut st, cmd), [grant(s2, 1, f), grant(s3, 1, g)]);
        assert_eq!(holders(&st, f), [(s2, 1, X, 0, 30)]);
        assert_eq!(holders(&st, g), [(s3, 1, S, 5, 6)]);
        assert_eq!(st.lock_status(s1, 4), None);
        let counts = st.lock_counts();
        assert_eq!(
            (counts.sessions, counts.locks_held, counts.waiters),
            (2, 2, 0)
        );
    }
}

#[test]
fn removing_an_inode_drops_its_locks_and_waiters() {
    let mut st = fs();
    let d = mkdir(&mut st, "/d").inode;
    let f = create(&mut st, "/d/f").inode;
    let g = create(&mut st, "/g").inode;
    let s1 = open_session(&mut st, "a");
    let s2 = open_session(&mut st, "b");
    for inode in [f, g, d] {
        lock_ok(&mut st, lock_cmd(s1, inode, 1, X, 0, MAX));
        lock_ok(&mut st, wait_cmd(lock_cmd(s2, inode, 1, S, 0, 1), inode));
    }
    let (chunks, dropped) = removed(ok(&mut st, unlink_cmd(ROOT_INODE, "g", None)));
    assert!(chunks.is_empty());
    assert_eq!(dropped, [grant(s2, g, g)]);
    assert_eq!(st.lock_status(s2, g), None);
    assert_eq!(st.locks(g), (vec![], vec![]));
    // A path Delete of the tree drops the rest; the master finds them via lock_status.
    assert_eq!(freed(ok(&mut st, delete_cmd("/d", true, T0))), vec![]);
    assert_eq!((st.lock_status(s2, f), st.lock_status(s2, d)), (None, None));
    let counts = st.lock_counts();
    assert_eq!(
        (counts.locks_held, counts.waiters, counts.locked_inodes),
        (0, 0, 0)
    );
    assert_eq!(st.sessions()[0].locks_held, 0);
}

#[test]
fn waiters_per_inode_are_bounded() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let s1 = open_session(&mut st, "a");
    let s2 = open_session(&mut st, "b");
    lock_ok(&mut st, lock_cmd(s1, f, 1, X, 0, MAX));
    for w in 0..MAX_WAITERS_PER_INODE as u64 {
        st.apply(None, &wait_cmd(lock_cmd(s2, f, w, S, 0, 1), w))
            .unwrap();
    }
    let e = err(&mut st, wait_cmd(lock_cmd(s2, f, 0, S, 0, 1), 1 << 40));
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    st.check_invariants().unwrap();
    let g = released(&mut st, MetaCommand::CloseSession { session_id: s1 });
    assert_eq!(g.len(), MAX_WAITERS_PER_INODE);
}
