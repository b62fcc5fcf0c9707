//! Unit tests of the file content commands (AllocChunk, SetChunkVersion, CommitWrite,
//! Truncate) and the chunk queries. The chunk size is 1 KiB (see `common::fs`).

mod common;

use cairn_meta::*;
use common::*;

#[test]
fn alloc_chunk_allocates_once() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let first = ok(
        &mut st,
        MetaCommand::AllocChunk {
            inode: f.inode,
            index: 0,
        },
    );
    assert_eq!(
        first,
        MetaResponse::Chunk {
            chunk_id: 1,
            version: 1,
            fresh: true
        }
    );
    ok(
        &mut st,
        MetaCommand::SetChunkVersion {
            chunk_id: 1,
            version: 3,
        },
    );
    let again = ok(
        &mut st,
        MetaCommand::AllocChunk {
            inode: f.inode,
            index: 0,
        },
    );
    assert_eq!(
        again,
        MetaResponse::Chunk {
            chunk_id: 1,
            version: 3,
            fresh: false
        }
    );
    // A far slot leaves holes before it; chunk_count counts every slot.
    let far = ok(
        &mut st,
        MetaCommand::AllocChunk {
            inode: f.inode,
            index: 5,
        },
    );
    assert_eq!(
        far,
        MetaResponse::Chunk {
            chunk_id: 2,
            version: 1,
            fresh: true
        }
    );
    let mid = ok(
        &mut st,
        MetaCommand::AllocChunk {
            inode: f.inode,
            index: 2,
        },
    );
    assert_eq!(
        mid,
        MetaResponse::Chunk {
            chunk_id: 3,
            version: 1,
            fresh: true
        }
    );
    assert_eq!(st.attr(f.inode).unwrap().chunk_count, 6);
    assert_eq!(
        st.chunk(2),
        Some(ChunkMeta {
            inode: f.inode,
            index: 5,
            version: 1
        })
    );
    assert_eq!(st.totals().chunks, 3);
}

#[test]
fn alloc_chunk_errors() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    mkdir(&mut st, "/d");
    let d = st.lookup(&p("/d")).unwrap();
    assert_eq!(
        err_kind(
            &mut st,
            MetaCommand::AllocChunk {
                inode: 99,
                index: 0
            }
        ),
        ErrorKind::NotFound
    );
    let e = err(
        &mut st,
        MetaCommand::AllocChunk {
            inode: d.inode,
            index: 0,
        },
    );
    assert_eq!(e.to_string(), format!("inode {}: is a directory", d.inode));
    // index * chunk_size must stay below 2^60; the last allowed slot is fine.
    let last = MAX_FILE_SIZE / CHUNK - 1;
    for index in [last + 1, u64::MAX] {
        let e = err(
            &mut st,
            MetaCommand::AllocChunk {
                inode: f.inode,
                index,
            },
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
    alloc(&mut st, f.inode, last);
    assert_eq!(st.attr(f.inode).unwrap().chunk_count, last + 1);
}

#[test]
fn chunk_versions_only_rise() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let c = alloc(&mut st, f.inode, 0);
    for (set, want) in [(5, 5), (3, 5), (5, 5), (6, 6)] {
        assert_eq!(
            ok(
                &mut st,
                MetaCommand::SetChunkVersion {
                    chunk_id: c,
                    version: set
                }
            ),
            MetaResponse::Unit
        );
        assert_eq!(st.chunk(c).unwrap().version, want);
    }
    let e = err(
        &mut st,
        MetaCommand::SetChunkVersion {
            chunk_id: 77,
            version: 1,
        },
    );
    assert_eq!(e.to_string(), "chunk 77: not found");
}

#[test]
fn commit_write_extends_only() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let MetaResponse::Attr(a) = ok(
        &mut st,
        MetaCommand::CommitWrite {
            inode: f.inode,
            end: 5000,
            now_ns: T0 + 1,
            session: None,
        },
    ) else {
        panic!()
    };
    assert_eq!(
        (a.size, a.mtime_ns, a.ctime_ns, a.atime_ns),
        (5000, T0 + 1, T0 + 1, T0)
    );
    let MetaResponse::Attr(a) = ok(
        &mut st,
        MetaCommand::CommitWrite {
            inode: f.inode,
            end: 10,
            now_ns: T0 + 2,
            session: None,
        },
    ) else {
        panic!()
    };
    assert_eq!((a.size, a.mtime_ns), (5000, T0 + 2));
    assert_eq!(st.totals().bytes, 5000);
    ok(
        &mut st,
        MetaCommand::CommitWrite {
            inode: f.inode,
            end: MAX_FILE_SIZE,
            now_ns: 0,
            session: None,
        },
    );
    let too_far = MetaCommand::CommitWrite {
        inode: f.inode,
        end: MAX_FILE_SIZE + 1,
        now_ns: 0,
        session: None,
    };
    assert_eq!(err_kind(&mut st, too_far), ErrorKind::InvalidArgument);
    assert_eq!(
        err_kind(
            &mut st,
            MetaCommand::CommitWrite {
                inode: 1,
                end: 1,
                now_ns: 0,
                session: None
            }
        ),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        err_kind(
            &mut st,
            MetaCommand::CommitWrite {
                inode: 99,
                end: 1,
                now_ns: 0,
                session: None
            }
        ),
        ErrorKind::NotFound
    );
}

#[test]
fn byte_total_does_not_overflow() {
    let mut st = fs();
    for i in 0..20 {
        let f = create(&mut st, &format!("/f{i}"));
        ok(
            &mut st,
            MetaCommand::CommitWrite {
                inode: f.inode,
                end: MAX_FILE_SIZE,
                now_ns: 0,
                session: None,
            },
        );
    }
    assert_eq!(st.totals().bytes, u64::MAX, "saturates");
    ok(&mut st, delete_cmd("/f0", false, 0));
}

#[test]
fn truncate_frees_slots_past_the_end() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let c: Vec<ChunkId> = (0..4).map(|i| alloc(&mut st, f.inode, i)).collect();
    ok(
        &mut st,
        MetaCommand::SetChunkVersion {
            chunk_id: c[3],
            version: 9,
        },
    );
    ok(
        &mut st,
        MetaCommand::CommitWrite {
            inode: f.inode,
            end: 4 * CHUNK,
            now_ns: T0,
            session: None,
        },
    );
    // 1025 bytes need two slots: 0 and 1 stay.
    let resp = ok(
        &mut st,
        MetaCommand::Truncate {
            inode: f.inode,
            size: CHUNK + 1,
            now_ns: T0 + 4,
            session: None,
        },
    );
    let MetaResponse::Truncated { attr, freed } = resp else {
        panic!()
    };
    assert_eq!(freed, vec![(c[2], 1), (c[3], 9)]);
    assert_eq!(
        (attr.size, attr.chunk_count, attr.mtime_ns, attr.ctime_ns),
        (CHUNK + 1, 2, T0 + 4, T0 + 4)
    );
    // Exactly one chunk's worth keeps one slot.
    let MetaResponse::Truncated { freed, .. } = ok(
        &mut st,
        MetaCommand::Truncate {
            inode: f.inode,
            size: CHUNK,
            now_ns: 0,
            session: None,
        },
    ) else {
        panic!()
    };
    assert_eq!(freed, vec![(c[1], 1)]);
    // Growing frees nothing and leaves holes.
    let MetaResponse::Truncated { attr, freed } = ok(
        &mut st,
        MetaCommand::Truncate {
            inode: f.inode,
            size: 10 * CHUNK,
            now_ns: 0,
            session: None,
        },
    ) else {
        panic!()
    };
    assert_eq!(
        (attr.size, attr.chunk_count, freed.len()),
        (10 * CHUNK, 1, 0)
    );
    assert_eq!(st.totals().bytes, 10 * CHUNK);
    let MetaResponse::Truncated { attr, freed } = ok(
        &mut st,
        MetaCommand::Truncate {
            inode: f.inode,
            size: 0,
            now_ns: 0,
            session: None,
        },
    ) else {
        panic!()
    };
    assert_eq!(
        (attr.size, attr.chunk_count, freed),
        (0, 0, vec![(c[0], 1)])
    );
    assert_eq!(st.totals().chunks, 0);
}

#[test]
fn truncate_errors() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let big = MetaCommand::Truncate {
        inode: f.inode,
        size: MAX_FILE_SIZE + 1,
        now_ns: 0,
        session: None,
    };
    assert_eq!(err_kind(&mut st, big), ErrorKind::InvalidArgument);
    assert_eq!(
        err_kind(
            &mut st,
            MetaCommand::Truncate {
                inode: 1,
                size: 0,
                now_ns: 0,
                session: None
            }
        ),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        err_kind(
            &mut st,
            MetaCommand::Truncate {
                inode: 42,
                size: 0,
                now_ns: 0,
                session: None
            }
        ),
        ErrorKind::NotFound
    );
}

#[test]
fn file_chunks_reports_slots_and_holes() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let c1 = alloc(&mut st, f.inode, 1);
    let c4 = alloc(&mut st, f.inode, 4);
    ok(
        &mut st,
        MetaCommand::SetChunkVersion {
            chunk_id: c4,
            version: 2,
        },
    );
    let hole = |index| ChunkRef {
        index,
        chunk_id: 0,
        version: 0,
    };
    let (attr, refs) = st.file_chunks(f.inode, 0, 0).unwrap();
    assert_eq!(attr, st.attr(f.inode).unwrap());
    assert_eq!(
        refs,
        vec![
            hole(0),
            ChunkRef {
                index: 1,
                chunk_id: c1,
                version: 1
            },
            hole(2),
            hole(3),
            ChunkRef {
                index: 4,
                chunk_id: c4,
                version: 2
            },
        ]
    );
    let (_, refs) = st.file_chunks(f.inode, 1, 2).unwrap();
    assert_eq!(
        refs,
        vec![
            ChunkRef {
                index: 1,
                chunk_id: c1,
                version: 1
            },
            hole(2)
        ]
    );
    let (_, refs) = st.file_chunks(f.inode, 3, 100).unwrap();
    assert_eq!(refs.len(), 2, "clipped to the file's slots");
    assert!(st.file_chunks(f.inode, 5, 0).unwrap().1.is_empty());
    assert!(
        st.file_chunks(f.inode, u64::MAX, u64::MAX)
            .unwrap()
            .1
            .is_empty()
    );
    assert_eq!(
        st.file_chunks(1, 0, 0).unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        st.file_chunks(99, 0, 0).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn file_chunks_is_bounded_for_sparse_files() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let far = MAX_FILE_SIZE / CHUNK - 1;
    let c = alloc(&mut st, f.inode, far);
    let (_, refs) = st.file_chunks(f.inode, 0, 0).unwrap();
    assert_eq!(refs.len() as u64, MAX_CHUNK_REFS);
    let (_, refs) = st.file_chunks(f.inode, far, 0).unwrap();
    assert_eq!(
        refs,
        vec![ChunkRef {
            index: far,
            chunk_id: c,
            version: 1
        }]
    );
}

#[test]
fn chunks_lists_every_live_chunk_with_its_goal() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let cmd = MetaCommand::Create {
        path: p("/g"),
        overwrite: false,
        mode: 0o644,
        uid: 0,
        gid: 0,
        goal: 5,
        now_ns: 0,
        session: None,
    };
    let MetaResponse::Created { attr: g, .. } = ok(&mut st, cmd) else {
        panic!()
    };
    let a = alloc(&mut st, g.inode, 0);
    let b = alloc(&mut st, f.inode, 1);
    let all: Vec<_> = st.chunks().collect();
    assert_eq!(
        all,
        vec![
            (
                a,
                ChunkMeta {
                    inode: g.inode,
                    index: 0,
                    version: 1
                },
                5
            ),
            (
                b,
                ChunkMeta {
                    inode: f.inode,
                    index: 1,
                    version: 1
                },
                2
            ),
        ]
    );
}

fn reserve(st: &mut MetaState, count: u64) -> ChunkId {
    match ok(st, MetaCommand::ReserveChunkIds { count }) {
        MetaResponse::ChunkIds { first, count: c } => {
            assert_eq!(c, count);
            first
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn commit_new(inode: InodeId, end: u64, new_chunks: Vec<(u64, ChunkId)>) -> MetaCommand {
    MetaCommand::CommitWriteNew {
        inode,
        end,
        new_chunks,
        now_ns: 50,
        session: None,
    }
}

#[test]
fn reserved_chunk_ids_are_never_allocated_and_bind_at_commit() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let g = create(&mut st, "/g");
    let first = reserve(&mut st, 4);
    // AllocChunk continues after the reserved range.
    let other = alloc(&mut st, g.inode, 0);
    assert!(other >= first + 4, "AllocChunk handed out a reserved id");
    // Binding a reserved id fills the hole at version 1 and commits the length.
    let resp = ok(&mut st, commit_new(f.inode, 1000, vec![(0, first + 1)]));
    match resp {
        MetaResponse::Attr(a) => {
            assert_eq!(a.size, 1000);
            assert_eq!(a.mtime_ns, 50);
            assert_eq!(a.chunk_count, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    let (_, refs) = st.file_chunks(f.inode, 0, 0).unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!((refs[0].chunk_id, refs[0].version), (first + 1, 1));
    // Committing the same binding again (a second write to the chunk) is fine.
    ok(&mut st, commit_new(f.inode, 1500, vec![(0, first + 1)]));
    st.check_invariants().unwrap();
}

#[test]
fn a_bad_binding_is_stale_and_changes_nothing() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let g = create(&mut st, "/g");
    let first = reserve(&mut st, 4);
    let taken = alloc(&mut st, f.inode, 1);
    ok(&mut st, commit_new(g.inode, 10, vec![(0, first)]));
    let before = st.clone();
    let cases = [
        // A slot another chunk holds.
        commit_new(f.inode, 3000, vec![(0, first + 1), (1, first + 2)]),
        // An id another file uses.
        commit_new(f.inode, 3000, vec![(0, first)]),
        // An id never set aside (past the counter) and id 0.
        commit_new(f.inode, 3000, vec![(0, taken + 100)]),
        commit_new(f.inode, 3000, vec![(0, 0)]),
    ];
    for cmd in cases {
        assert_eq!(err_kind(&mut st, cmd.clone()), ErrorKind::Stale, "{cmd:?}");
        assert_eq!(st, before, "a refused binding changed the state: {cmd:?}");
    }
    // The same slot or id twice in one command is a malformed request.
    assert_eq!(
        err_kind(
            &mut st,
            commit_new(f.inode, 10, vec![(0, first + 1), (0, first + 2)])
        ),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(&mut st, MetaCommand::ReserveChunkIds { count: 0 }),
        ErrorKind::InvalidArgument
    );
    st.check_invariants().unwrap();
}
