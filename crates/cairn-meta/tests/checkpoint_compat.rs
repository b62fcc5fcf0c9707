//! Checkpoint compatibility: a state built through a fixed command sequence must serialize
//! to exactly the bytes of the committed fixture, and the fixture must load back into a
//! state equal to the rebuilt one.
//!
//! The fixture was written once by the code before the in-memory layout changes
//! (`CAIRN_WRITE_FIXTURE=1 cargo test -p cairn-meta --test checkpoint_compat`); it must
//! never be rewritten to make this test pass, since old checkpoints and op logs exist.

mod common;

use cairn_meta::*;
use common::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/checkpoint_v1.postcard"
);

fn alloc_at(st: &mut MetaState, inode: InodeId, index: u64) -> ChunkId {
    alloc(st, inode, index)
}

fn commit(st: &mut MetaState, inode: InodeId, end: u64, now_ns: i64) {
    ok(
        st,
        MetaCommand::CommitWrite {
            inode,
            end,
            now_ns,
            session: None,
        },
    );
}

/// Every kind of thing the namespace stores, built deterministically.
fn build() -> MetaState {
    let mut st = fs();
    ok(&mut st, mkdir_cmd("/a/b/c", true, T0 + 1));
    mkdir(&mut st, "/big");
    // Enough names in one directory to span several blocks of any blocked layout.
    for i in 0..300u32 {
        create(&mut st, &format!("/big/f{:07}", (i * 7919) % 1000));
    }
    let long = "n".repeat(40);
    create(&mut st, &format!("/a/{long}"));

    // A dense file, a sparse file with a far-out slot, a one-chunk file.
    let dense = create(&mut st, "/a/dense").inode;
    for i in 0..5 {
        let c = alloc_at(&mut st, dense, i);
        ok(
            &mut st,
            MetaCommand::SetChunkVersion {
                chunk_id: c,
                version: 2 + i,
            },
        );
    }
    commit(&mut st, dense, 5 * CHUNK - 3, T0 + 2);
    let sparse = create(&mut st, "/a/b/sparse").inode;
    alloc_at(&mut st, sparse, 3);
    alloc_at(&mut st, sparse, 1);
    alloc_at(&mut st, sparse, 1_000_000_000);
    commit(&mut st, sparse, 1_000_000_001 * CHUNK, T0 + 3);
    let one = create(&mut st, "/a/b/c/one").inode;
    alloc_at(&mut st, one, 0);
    commit(&mut st, one, 10, T0 + 4);

    // Reserved ids bound by CommitWriteNew.
    let first = match ok(&mut st, MetaCommand::ReserveChunkIds { count: 4 }) {
        MetaResponse::ChunkIds { first, .. } => first,
        other => panic!("reserve answered {other:?}"),
    };
    let fresh = create(&mut st, "/a/fresh").inode;
    ok(
        &mut st,
        MetaCommand::CommitWriteNew {
            inode: fresh,
            end: 2 * CHUNK,
            new_chunks: vec![(0, first + 1), (1, first + 3)],
            now_ns: T0 + 5,
            session: None,
        },
    );

    // Truncate drops the dense file's tail.
    ok(
        &mut st,
        MetaCommand::Truncate {
            inode: dense,
            size: 2 * CHUNK + 1,
            now_ns: T0 + 6,
            session: None,
        },
    );

    // A hard link, a symlink, xattrs.
    let a = st.lookup(&p("/a")).expect("a").inode;
    let c = st.lookup(&p("/a/b/c")).expect("c").inode;
    ok(
        &mut st,
        MetaCommand::LinkAt {
            inode: one,
            new_parent: a,
            new_name: "one-link".into(),
            now_ns: T0 + 7,
        },
    );
    ok(
        &mut st,
        MetaCommand::SymlinkAt {
            parent: c,
            name: "sym".into(),
            target: "../../dense".into(),
            uid: 3,
            gid: 4,
            now_ns: T0 + 8,
        },
    );
    for (name, value) in [("user.b", &b"2"[..]), ("user.a", b"one")] {
        ok(
            &mut st,
            MetaCommand::SetXattr {
                inode: dense,
                name: name.into(),
                value: value.to_vec(),
                mode: XattrMode::Any,
                now_ns: T0 + 9,
            },
        );
    }

    // A session holding a lock, an append reservation, a de-duplicated request.
    let s = open_session(&mut st, "host:1");
    ok(&mut st, lock_cmd(s, one, 9, LockKind::Exclusive, 0, 100));
    ok(
        &mut st,
        MetaCommand::ReserveAppend {
            inode: sparse,
            len: 77,
            session: None,
        },
    );
    let req = RequestId {
        client_id: 42,
        seq: 1,
    };
    st.apply(Some(req), &mkdir_cmd("/dedup", false, T0 + 10))
        .expect("mkdir /dedup");

    // A rename across directories and a delete.
    ok(
        &mut st,
        rename_cmd("/a/b/sparse", "/big/sparse", false, T0 + 11),
    );
    ok(&mut st, delete_cmd("/big/f0000919", false, T0 + 12));
    ok(&mut st, delete_cmd("/a/b/c/one", false, T0 + 13));
    st.check_invariants().expect("invariants");
    st
}

#[test]
fn checkpoint_bytes_match_the_fixture() {
    let st = build();
    let bytes = postcard::to_allocvec(&st).expect("encode");
    if std::env::var_os("CAIRN_WRITE_FIXTURE").is_some() {
        std::fs::write(FIXTURE, &bytes).expect("write fixture");
    }
    let fixture = std::fs::read(FIXTURE).expect("read fixture");
    assert!(bytes == fixture, "checkpoint bytes differ from the fixture");
    let loaded: MetaState = postcard::from_bytes(&fixture).expect("decode fixture");
    loaded.check_invariants().expect("loaded invariants");
    assert!(loaded == st, "loaded state differs from the rebuilt one");
    assert_eq!(postcard::to_allocvec(&loaded).expect("re-encode"), fixture);
}
