//! Mandatory (exclusive-writer) locks: every data and namespace change to the locked file
//! from another session (or none) fails with `Locked`, the holder's own session goes
//! ahead, advisory locks never block data; and append reservations.

mod common;

use cairn_meta::*;
use common::*;

/// A state with `/d/f` (3 KiB written) mandatorily locked by session 1, `/x` a spare file,
/// and session 2 as the intruder. Returns (state, f, d, s1, s2).
fn locked() -> (MetaState, InodeId, InodeId, SessionId, SessionId) {
    let mut st = fs();
    let d = mkdir(&mut st, "/d").inode;
    let f = create(&mut st, "/d/f").inode;
    create(&mut st, "/x");
    write(&mut st, f, 3 * CHUNK);
    let s1 = open_session(&mut st, "writer:1");
    let s2 = open_session(&mut st, "other:2");
    lock_ok(&mut st, mandatory_cmd(s1, f, 1));
    (st, f, d, s1, s2)
}

/// Every command that changes `/d/f`'s data or names, issued by `session`.
fn changes(f: InodeId, d: InodeId, session: Option<SessionId>) -> Vec<MetaCommand> {
    let mut v = vec![
        MetaCommand::CommitWrite {
            inode: f,
            end: 10 * CHUNK,
            now_ns: T0,
            session,
        },
        MetaCommand::Truncate {
            inode: f,
            size: 0,
            now_ns: T0,
            session,
        },
        MetaCommand::ReserveAppend {
            inode: f,
            len: 10,
            session,
        },
        MetaCommand::Create {
            path: p("/d/f"),
            overwrite: true,
            mode: 0o644,
            uid: 0,
            gid: 0,
            goal: 0,
            now_ns: T0,
            session,
        },
        MetaCommand::Delete {
            path: p("/d/f"),
            recursive: false,
            now_ns: T0,
            session,
        },
        MetaCommand::Delete {
            path: p("/d"),
            recursive: true,
            now_ns: T0,
            session,
        },
        MetaCommand::Rename {
            from: p("/d/f"),
            to: p("/y"),
            no_replace: false,
            now_ns: T0,
            session,
        },
        MetaCommand::Rename {
            from: p("/x"),
            to: p("/d/f"),
            no_replace: false,
            now_ns: T0,
            session,
        },
        unlink_cmd(d, "f", session),
    ];
    let mut size = setattr_cmd(f);
    if let MetaCommand::SetAttr {
        size: s,
        session: se,
        ..
    } = &mut size
    {
        (*s, *se) = (Some(1), session);
    }
    v.push(size);
    for (from, from_name, to, to_name, exchange) in [
        (d, "f", ROOT_INODE, "y", false),
        (ROOT_INODE, "x", d, "f", false),
        (ROOT_INODE, "x", d, "f", true),
        (d, "f", ROOT_INODE, "x", true),
    ] {
        let mut cmd = rename_at_cmd(from, from_name, to, to_name, false, exchange);
        if let MetaCommand::RenameAt { session: se, .. } = &mut cmd {
            *se = session;
        }
        v.push(cmd);
    }
    v
}

#[test]
fn other_sessions_cannot_change_a_mandatorily_locked_file() {
    let (mut st, f, d, s1, s2) = locked();
    for session in [None, Some(s2), Some(99)] {
        for cmd in changes(f, d, session) {
            let e = err(&mut st, cmd.clone());
            assert_eq!(e.kind(), ErrorKind::Locked, "{cmd:?}");
            assert_eq!(e.to_string(), "/d/f: locked by session 1 (writer:1)");
        }
        assert_eq!(
            st.check_write(f, session).unwrap_err().kind(),
            ErrorKind::Locked
        );
    }
    assert_eq!(st.check_write(f, Some(s1)), Ok(()));
    assert_eq!(
        st.check_write(99, None).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Changes that touch neither data nor names are allowed.
    let mut chmod = setattr_cmd(f);
    if let MetaCommand::SetAttr { mode, .. } = &mut chmod {
        *mode = Some(0o600);
    }
    ok(&mut st, chmod);
    ok(&mut st, link_cmd(f, ROOT_INODE, "hard", T0));
    // Other files and other parts of the tree are not affected.
    ok(&mut st, delete_cmd("/x", false, T0));
    // The lock conflicts with every other lock request, advisory or not.
    assert_eq!(
        err_kind(&mut st, mandatory_cmd(s2, f, 1)),
        ErrorKind::Locked
    );
    assert_eq!(
        err_kind(&mut st, lock_cmd(s2, f, 1, LockKind::Shared, 0, 1)),
        ErrorKind::Locked
    );
}

#[test]
fn the_holding_session_may_change_the_file() {
    for cmd_index in 0..14 {
        let (mut st, f, d, s1, _) = locked();
        let cmd = changes(f, d, Some(s1)).swap_remove(cmd_index);
        // Each command alone must succeed for the holder (the exchanges need /x present).
        st.apply(None, &cmd)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        st.check_invariants().unwrap();
    }
}

#[test]
fn unlocking_releases_the_mandatory_lock_whole() {
    let (mut st, f, _, s1, s2) = locked();
    // An advisory lock of the same owner lives beside it.
    lock_ok(&mut st, lock_cmd(s1, f, 1, LockKind::Shared, 0, 10));
    assert_eq!(st.locks(f).0.len(), 2);
    // Any overlapping unlock drops the mandatory lock whole; the advisory one is cut.
    released(&mut st, unlock_cmd(s1, f, 1, 5, 6));
    let (held, _) = st.locks(f);
    assert!(held.iter().all(|h| !h.mandatory));
    assert_eq!(held.len(), 2);
    assert_eq!(st.check_write(f, Some(s2)), Ok(()));
}

#[test]
fn closing_the_session_lifts_the_lock_and_advisory_locks_never_block_data() {
    let (mut st, f, _, s1, s2) = locked();
    let (o, _) = lock_ok(&mut st, wait_cmd(mandatory_cmd(s2, f, 1), 3));
    assert_eq!(o, LockOutcome::Queued { position: 1 });
    assert_eq!(
        released(&mut st, MetaCommand::CloseSession { session_id: s1 }),
        [grant(s2, 3, f)]
    );
    assert_eq!(
        st.check_write(f, None).unwrap_err().kind(),
        ErrorKind::Locked
    );
    released(&mut st, unlock_cmd(s2, f, 1, 0, MAX));
    // An advisory exclusive lock does not stop writes from anyone.
    lock_ok(&mut st, lock_cmd(s2, f, 1, LockKind::Exclusive, 0, MAX));
    assert_eq!(st.check_write(f, None), Ok(()));
    let commit = MetaCommand::CommitWrite {
        inode: f,
        end: 1,
        now_ns: T0,
        session: None,
    };
    ok(&mut st, commit);
    ok(&mut st, delete_cmd("/d", true, T0));
}

fn reserve(st: &mut MetaState, inode: InodeId, len: u64) -> u64 {
    let cmd = MetaCommand::ReserveAppend {
        inode,
        len,
        session: None,
    };
    match ok(st, cmd) {
        MetaResponse::Offset(o) => o,
        other => panic!("reserve answered {other:?}"),
    }
}

#[test]
fn append_reservations_do_not_overlap() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    // Two concurrent appenders get disjoint ranges before either commits.
    assert_eq!(reserve(&mut st, f, 100), 0);
    assert_eq!(reserve(&mut st, f, 50), 100);
    // The second commits first; the first's range is still reserved.
    let commit = |end| MetaCommand::CommitWrite {
        inode: f,
        end,
        now_ns: T0,
        session: None,
    };
    ok(&mut st, commit(150));
    assert_eq!(reserve(&mut st, f, 10), 150);
    ok(&mut st, commit(100));
    assert_eq!(reserve(&mut st, f, 0), 160);
    // A write past the reservations moves the start past them.
    ok(&mut st, commit(1000));
    assert_eq!(reserve(&mut st, f, 1), 1000);
    // Truncate resets the reservation, and so does an overwrite.
    let truncate = MetaCommand::Truncate {
        inode: f,
        size: 10,
        now_ns: T0,
        session: None,
    };
    ok(&mut st, truncate);
    assert_eq!(reserve(&mut st, f, 5), 10);
    ok(&mut st, create_cmd("/f", true, T0));
    assert_eq!(reserve(&mut st, f, 5), 0);
    let mut size = setattr_cmd(f);
    if let MetaCommand::SetAttr { size: s, .. } = &mut size {
        *s = Some(3);
    }
    ok(&mut st, size);
    assert_eq!(reserve(&mut st, f, 5), 3);
    // Errors.
    let bad = |inode, len| MetaCommand::ReserveAppend {
        inode,
        len,
        session: None,
    };
    assert_eq!(
        err_kind(&mut st, bad(ROOT_INODE, 1)),
        ErrorKind::IsADirectory
    );
    assert_eq!(err_kind(&mut st, bad(99, 1)), ErrorKind::NotFound);
    assert_eq!(
        err_kind(&mut st, bad(f, MAX_FILE_SIZE)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(&mut st, bad(f, u64::MAX)),
        ErrorKind::InvalidArgument
    );
    // The reservation goes with the file.
    ok(&mut st, delete_cmd("/f", false, T0));
    st.check_invariants().unwrap();
}
