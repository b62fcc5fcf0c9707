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
    }
}

pub fn delete_cmd(path: &str, recursive: bool, now_ns: i64) -> MetaCommand {
    MetaCommand::Delete {
        path: p(path),
        recursive,
        now_ns,
    }
}

pub fn rename_cmd(from: &str, to: &str, no_replace: bool, now_ns: i64) -> MetaCommand {
    MetaCommand::Rename {
        from: p(from),
        to: p(to),
        no_replace,
        now_ns,
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
