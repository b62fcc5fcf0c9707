//! Helpers shared by the integration tests: a formatted state, command builders, and
//! `ok` / `err` wrappers that check invariants and atomicity on every call.
#![allow(dead_code)] // each test binary uses a different subset

use cairn_meta::*;

pub const CHUNK: u64 = 1024;
pub const T0: i64 = 1_000;

pub fn p(s: &str) -> CairnPath {
    CairnPath::new(s).expect("test paths are valid")
}

/// A state formatted with a 1 KiB chunk size and default goal 2 at time `T0`.
pub fn fs() -> MetaState {
    let mut st = MetaState::new();
    let cmd = MetaCommand::Format {
        chunk_size: CHUNK,
        default_goal: 2,
        lease_key: [7; 32],
        now_ns: T0,
    };
    st.apply(None, &cmd).expect("format a new state");
    st
}

/// Applies `cmd`, which must succeed, and checks the invariants afterwards.
pub fn ok(st: &mut MetaState, cmd: MetaCommand) -> MetaResponse {
    let resp = st
        .apply(None, &cmd)
        .unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"));
    st.check_invariants()
        .unwrap_or_else(|e| panic!("after {cmd:?}: {e}"));
    resp
}

/// Applies `cmd`, which must fail, and checks that the state did not change at all.
pub fn err(st: &mut MetaState, cmd: MetaCommand) -> MetaError {
    let before = st.clone();
    let before_bytes = postcard::to_stdvec(st).expect("serialize state");
    let e = match st.apply(None, &cmd) {
        Ok(r) => panic!("{cmd:?} succeeded with {r:?}"),
        Err(e) => e,
    };
    assert_eq!(*st, before, "{cmd:?} changed the state although it failed");
    assert_eq!(
        postcard::to_stdvec(st).expect("serialize state"),
        before_bytes
    );
    e
}

/// Error kind of a failing command (state unchanged checked by `err`).
pub fn err_kind(st: &mut MetaState, cmd: MetaCommand) -> ErrorKind {
    err(st, cmd).kind()
}

pub fn mkdir_cmd(path: &str, parents: bool, now_ns: i64) -> MetaCommand {
    MetaCommand::Mkdir {
        path: p(path),
        parents,
        mode: 0o755,
        uid: 10,
        gid: 20,
        now_ns,
    }
}

pub fn create_cmd(path: &str, overwrite: bool, now_ns: i64) -> MetaCommand {
    MetaCommand::Create {
        path: p(path),
        overwrite,
        mode: 0o644,
        uid: 10,
        gid: 20,
        goal: 0,
        now_ns,
        session: None,
    }
}

pub fn delete_cmd(path: &str, recursive: bool, now_ns: i64) -> MetaCommand {
    MetaCommand::Delete {
        path: p(path),
        recursive,
        now_ns,
        session: None,
    }
}

pub fn rename_cmd(from: &str, to: &str, no_replace: bool, now_ns: i64) -> MetaCommand {
    MetaCommand::Rename {
        from: p(from),
        to: p(to),
        no_replace,
        now_ns,
        session: None,
    }
}

pub fn mkdir(st: &mut MetaState, path: &str) -> Attr {
    match ok(st, mkdir_cmd(path, false, T0)) {
        MetaResponse::Attr(a) => a,
        other => panic!("mkdir answered {other:?}"),
    }
}

pub fn create(st: &mut MetaState, path: &str) -> Attr {
    match ok(st, create_cmd(path, false, T0)) {
        MetaResponse::Created { attr, freed } => {
            assert!(freed.is_empty());
            attr
        }
        other => panic!("create answered {other:?}"),
    }
}

/// Allocates slot `index` of `inode`, returning the chunk id.
pub fn alloc(st: &mut MetaState, inode: InodeId, index: u64) -> ChunkId {
    match ok(st, MetaCommand::AllocChunk { inode, index }) {
        MetaResponse::Chunk { chunk_id, .. } => chunk_id,
        other => panic!("alloc answered {other:?}"),
    }
}

pub fn freed(resp: MetaResponse) -> Vec<(ChunkId, u64)> {
    match resp {
        MetaResponse::Freed(f)
        | MetaResponse::Created { freed: f, .. }
        | MetaResponse::Truncated { freed: f, .. } => f,
        other => panic!("expected freed chunks, got {other:?}"),
    }
}

/// Names in a directory, in listing order.
pub fn names(st: &MetaState, path: &str) -> Vec<String> {
    let (entries, more) = st.list(&p(path), "", 0).expect("list");
    assert!(!more);
    entries.into_iter().map(|(n, _)| n).collect()
}

// ---- sessions and locks

pub const MAX: u64 = u64::MAX;

pub fn open_session(st: &mut MetaState, owner: &str) -> SessionId {
    let cmd = MetaCommand::OpenSession {
        owner: owner.to_string(),
        now_ns: T0,
    };
    match ok(st, cmd) {
        MetaResponse::Session { session_id } => session_id,
        other => panic!("open session answered {other:?}"),
    }
}

/// An advisory lock request that does not wait.
pub fn lock_cmd(
    session_id: SessionId,
    inode: InodeId,
    owner: u64,
    kind: LockKind,
    start: u64,
    end: u64,
) -> MetaCommand {
    MetaCommand::Lock {
        session_id,
        inode,
        owner,
        kind,
        start,
        end,
        mandatory: false,
        wait: false,
        waiter_id: 0,
    }
}

/// The same request, waiting as `waiter_id`.
pub fn wait_cmd(cmd: MetaCommand, id: u64) -> MetaCommand {
    match cmd {
        MetaCommand::Lock {
            session_id,
            inode,
            owner,
            kind,
            start,
            end,
            mandatory,
            ..
        } => MetaCommand::Lock {
            session_id,
            inode,
            owner,
            kind,
            start,
            end,
            mandatory,
            wait: true,
            waiter_id: id,
        },
        other => panic!("not a lock: {other:?}"),
    }
}

/// A mandatory (exclusive-writer) lock request.
pub fn mandatory_cmd(session_id: SessionId, inode: InodeId, owner: u64) -> MetaCommand {
    MetaCommand::Lock {
        session_id,
        inode,
        owner,
        kind: LockKind::Exclusive,
        start: 0,
        end: MAX,
        mandatory: true,
        wait: false,
        waiter_id: 0,
    }
}

pub fn unlock_cmd(
    session_id: SessionId,
    inode: InodeId,
    owner: u64,
    start: u64,
    end: u64,
) -> MetaCommand {
    MetaCommand::Unlock {
        session_id,
        inode,
        owner,
        start,
        end,
    }
}

/// Applies a Lock or CancelWait that must succeed.
pub fn lock_ok(st: &mut MetaState, cmd: MetaCommand) -> (LockOutcome, Vec<Grant>) {
    match ok(st, cmd) {
        MetaResponse::LockResult { outcome, granted } => (outcome, granted),
        other => panic!("lock answered {other:?}"),
    }
}

/// Applies a command answering `Released`.
pub fn released(st: &mut MetaState, cmd: MetaCommand) -> Vec<Grant> {
    match ok(st, cmd) {
        MetaResponse::Released { granted } => granted,
        other => panic!("expected Released, got {other:?}"),
    }
}

pub fn grant(session_id: SessionId, waiter_id: u64, inode: InodeId) -> Grant {
    Grant {
        session_id,
        waiter_id,
        inode,
    }
}

/// Holders of `inode` as `(session, owner, kind, start, end)`.
pub fn holders(st: &MetaState, inode: InodeId) -> Vec<(SessionId, u64, LockKind, u64, u64)> {
    st.locks(inode)
        .0
        .iter()
        .map(|h| (h.session_id, h.owner, h.kind, h.start, h.end))
        .collect()
}

/// Queued waiters of `inode` as `(session, waiter_id)`.
pub fn queue(st: &MetaState, inode: InodeId) -> Vec<(SessionId, u64)> {
    st.locks(inode)
        .1
        .iter()
        .map(|w| (w.lock.session_id, w.waiter_id))
        .collect()
}

// ---- inode-based commands

pub fn mkdir_at(st: &mut MetaState, parent: InodeId, name: &str) -> Attr {
    let cmd = MetaCommand::MkdirAt {
        parent,
        name: name.to_string(),
        mode: 0o755,
        uid: 10,
        gid: 20,
        now_ns: T0,
    };
    match ok(st, cmd) {
        MetaResponse::Attr(a) => a,
        other => panic!("mkdir_at answered {other:?}"),
    }
}

pub fn create_at_cmd(parent: InodeId, name: &str, exclusive: bool, now_ns: i64) -> MetaCommand {
    MetaCommand::CreateAt {
        parent,
        name: name.to_string(),
        mode: 0o644,
        uid: 10,
        gid: 20,
        exclusive,
        now_ns,
    }
}

pub fn create_at(st: &mut MetaState, parent: InodeId, name: &str) -> Attr {
    match ok(st, create_at_cmd(parent, name, true, T0)) {
        MetaResponse::Created { attr, freed } => {
            assert!(freed.is_empty());
            attr
        }
        other => panic!("create_at answered {other:?}"),
    }
}

pub fn symlink_cmd(parent: InodeId, name: &str, target: &str, now_ns: i64) -> MetaCommand {
    MetaCommand::SymlinkAt {
        parent,
        name: name.to_string(),
        target: target.to_string(),
        uid: 10,
        gid: 20,
        now_ns,
    }
}

pub fn link_cmd(inode: InodeId, new_parent: InodeId, new_name: &str, now_ns: i64) -> MetaCommand {
    MetaCommand::LinkAt {
        inode,
        new_parent,
        new_name: new_name.to_string(),
        now_ns,
    }
}

pub fn unlink_cmd(parent: InodeId, name: &str, session: Option<SessionId>) -> MetaCommand {
    MetaCommand::UnlinkAt {
        parent,
        name: name.to_string(),
        session,
        now_ns: T0 + 50,
    }
}

pub fn rmdir_cmd(parent: InodeId, name: &str) -> MetaCommand {
    MetaCommand::RmdirAt {
        parent,
        name: name.to_string(),
        now_ns: T0 + 50,
    }
}

pub fn rename_at_cmd(
    parent: InodeId,
    name: &str,
    new_parent: InodeId,
    new_name: &str,
    no_replace: bool,
    exchange: bool,
) -> MetaCommand {
    MetaCommand::RenameAt {
        parent,
        name: name.to_string(),
        new_parent,
        new_name: new_name.to_string(),
        no_replace,
        exchange,
        session: None,
        now_ns: T0 + 60,
    }
}

/// A SetAttr that changes nothing; tests fill in what they need.
pub fn setattr_cmd(inode: InodeId) -> MetaCommand {
    MetaCommand::SetAttr {
        inode,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        atime_ns: None,
        mtime_ns: None,
        session: None,
        now_ns: T0 + 70,
    }
}

/// `(freed, dropped)` of a `Removed` answer.
pub fn removed(resp: MetaResponse) -> (Vec<(ChunkId, u64)>, Vec<Grant>) {
    match resp {
        MetaResponse::Removed { freed, dropped } => (freed, dropped),
        other => panic!("expected Removed, got {other:?}"),
    }
}

/// Writes `end` bytes to a file: allocates the chunks and commits the length.
pub fn write(st: &mut MetaState, inode: InodeId, end: u64) -> Vec<ChunkId> {
    let ids = (0..end.div_ceil(CHUNK))
        .map(|i| alloc(st, inode, i))
        .collect();
    let cmd = MetaCommand::CommitWrite {
        inode,
        end,
        now_ns: T0 + 1,
        session: None,
    };
    ok(st, cmd);
    ids
}
