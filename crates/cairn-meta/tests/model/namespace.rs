//! Namespace property test: random command sequences run against `MetaState` and against
//! a plain `BTreeMap<path, entry>` model with straightforward logic (`ns_model.rs`).
//! Path-based and inode-based commands are mixed, with symlinks, hard links, unlink and
//! exchange. After every step the result kinds, the whole tree (with link counts), the
//! totals and the freed chunks must agree, and the invariants must hold; a failing command
//! must leave the state unchanged. At the end, replaying the log must rebuild identical
//! bytes, and a serialization round trip must keep every answer.

use std::collections::{BTreeMap, BTreeSet};

use cairn_meta::*;
use proptest::prelude::*;

use crate::common::{self, CHUNK, p};
use crate::ns_model::{Model, parent_of};

type Log = Vec<(
    Option<RequestId>,
    MetaCommand,
    Result<MetaResponse, MetaError>,
)>;

/// Walks the tree through paged listings (pages of 2, to exercise paging).
fn snapshot(st: &MetaState) -> BTreeMap<String, (FileType, u64, u64, u32)> {
    let root = st.lookup(&p("/")).unwrap();
    let mut out = BTreeMap::from([("/".to_string(), (root.file_type, root.size, 0, root.nlink))]);
    let mut stack = vec![p("/")];
    while let Some(dir) = stack.pop() {
        let mut after = String::new();
        loop {
            let (page, more) = st.list(&dir, &after, 2).unwrap();
            for (name, attr) in &page {
                let path = dir.join(name).unwrap();
                if attr.file_type == FileType::Directory {
                    stack.push(path.clone());
                }
                let v = (attr.file_type, attr.size, attr.chunk_count, attr.nlink);
                out.insert(path.to_string(), v);
            }
            match page.last() {
                Some((name, _)) if more => after = name.clone(),
                _ => break,
            }
        }
    }
    out
}

fn live_chunks(st: &MetaState) -> BTreeSet<ChunkId> {
    st.chunks().map(|(id, _, _)| id).collect()
}

/// The inode to pass as the directory holding `path`'s last component, chosen so that the
/// command fails the way the path walk would: the parent itself if it resolves (even to a
/// non-directory), the first non-directory on the way, or an unknown inode.
fn dir_arg(st: &MetaState, path: &str) -> (InodeId, String) {
    let path = p(path);
    let (parent, name) = path.split_last().expect("not the root");
    let inode = match st.lookup(&parent) {
        Ok(a) => a.inode,
        Err(_) => {
            let mut cur = CairnPath::root();
            let mut found = u64::MAX;
            for c in parent.components() {
                cur = cur.join(c).unwrap();
                match st.lookup(&cur) {
                    Ok(a) if a.file_type != FileType::Directory => {
                        found = a.inode;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            found
        }
    };
    (inode, name.to_string())
}

// ---- random operations

#[derive(Clone, Debug)]
enum Op {
    Mkdir(String, bool),
    Create(String, bool),
    Delete(String, bool),
    /// The last flag picks the inode-based RenameAt.
    Rename(String, String, bool, bool),
    Write(String, u64),
    Truncate(String, u64),
    Symlink(String, &'static str),
    /// Source, target, and a pick: an even pick links an existing file or symlink instead
    /// of the source path (random paths rarely name one).
    Link(String, String, usize),
    Unlink(String),
    Exchange(String, String),
}

fn path() -> impl Strategy<Value = String> {
    let names = |depth| {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), depth)
            .prop_map(|names| format!("/{}", names.join("/")))
    };
    // Shallow paths are likelier, so that more commands find what they name.
    prop_oneof![
        1 => Just("/".to_string()),
        6 => names(1),
        5 => names(2),
        2 => names(3),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let size = 0..5 * CHUNK;
    prop_oneof![
        3 => (path(), any::<bool>()).prop_map(|(p, b)| Op::Mkdir(p, b)),
        3 => (path(), any::<bool>()).prop_map(|(p, b)| Op::Create(p, b)),
        2 => (path(), any::<bool>()).prop_map(|(p, b)| Op::Delete(p, b)),
        3 => (path(), path(), any::<bool>(), any::<bool>())
            .prop_map(|(f, t, b, at)| Op::Rename(f, t, b, at)),
        2 => (path(), size.clone()).prop_map(|(p, n)| Op::Write(p, n)),
        1 => (path(), size).prop_map(|(p, n)| Op::Truncate(p, n)),
        1 => (path(), prop::sample::select(vec!["t", "/a/b", "../x"]))
            .prop_map(|(p, t)| Op::Symlink(p, t)),
        3 => (path(), path(), any::<usize>()).prop_map(|(f, t, k)| Op::Link(f, t, k)),
        1 => path().prop_map(Op::Unlink),
        1 => (path(), path()).prop_map(|(f, t)| Op::Exchange(f, t)),
    ]
}

/// Runs one command on the state (checking atomicity on a shadow copy) and logs it.
fn run(
    st: &mut MetaState,
    log: &mut Log,
    req: Option<RequestId>,
    cmd: MetaCommand,
) -> Result<MetaResponse, MetaError> {
    let before = st.clone();
    let mut shadow = st.clone();
    let result = st.apply(req, &cmd);
    assert_eq!(
        shadow.apply(None, &cmd),
        result,
        "same answer without a request id"
    );
    if result.is_err() {
        assert_eq!(shadow, before, "{cmd:?} failed but changed the state");
    }
    log.push((req, cmd, result.clone()));
    result
}

/// The chunks a response freed, if it frees any.
fn freed_of(r: &Result<MetaResponse, MetaError>) -> Option<Vec<(ChunkId, u64)>> {
    match r {
        Ok(MetaResponse::Freed(f))
        | Ok(MetaResponse::Created { freed: f, .. })
        | Ok(MetaResponse::Truncated { freed: f, .. })
        | Ok(MetaResponse::Removed { freed: f, .. }) => Some(f.clone()),
        _ => None,
    }
}

/// Applies one op to state and model: `(real result kind, model result)`.
#[allow(clippy::too_many_arguments)]
fn step(
    st: &mut MetaState,
    model: &mut Model,
    log: &mut Log,
    req: Option<RequestId>,
    op: &Op,
    now: i64,
    fresh: &mut BTreeSet<ChunkId>,
    freed: &mut Option<Vec<(ChunkId, u64)>>,
) -> Option<(Result<(), ErrorKind>, Result<(), ErrorKind>)> {
    let mut go = |st: &mut MetaState, cmd| {
        let r = run(st, log, req, cmd);
        *freed = freed_of(&r);
        r.map(drop).map_err(|e| e.kind())
    };
    let pair = match op {
        Op::Mkdir(path, parents) => {
            let cmd = MetaCommand::Mkdir {
                path: p(path),
                parents: *parents,
                mode: 0o755,
                uid: 1,
                gid: 1,
                now_ns: now,
            };
            (go(st, cmd), model.mkdir(path, *parents))
        }
        Op::Create(path, overwrite) => {
            let cmd = MetaCommand::Create {
                path: p(path),
                overwrite: *overwrite,
                mode: 0o644,
                uid: 1,
                gid: 1,
                goal: 0,
                now_ns: now,
                session: None,
            };
            (go(st, cmd), model.create(path, *overwrite))
        }
        Op::Delete(path, recursive) => {
            let cmd = MetaCommand::Delete {
                path: p(path),
                recursive: *recursive,
                now_ns: now,
                session: None,
            };
            (go(st, cmd), model.delete(path, *recursive))
        }
        Op::Rename(from, to, no_replace, false) => {
            let cmd = MetaCommand::Rename {
                from: p(from),
                to: p(to),
                no_replace: *no_replace,
                now_ns: now,
                session: None,
            };
            (go(st, cmd), model.rename(from, to, *no_replace))
        }
        Op::Rename(from, to, _, true) | Op::Exchange(from, to) => {
            if from == "/" || to == "/" {
                return None;
            }
            let (no_replace, exchange) = match op {
                Op::Rename(_, _, no_replace, _) => (*no_replace, false),
                _ => (false, true),
            };
            let ((parent, name), (new_parent, new_name)) = (dir_arg(st, from), dir_arg(st, to));
            let cmd = MetaCommand::RenameAt {
                parent,
                name,
                new_parent,
                new_name,
                no_replace,
                exchange,
                session: None,
                now_ns: now,
            };
            let want = if exchange {
                model.exchange(from, to)
            } else {
                model.rename(from, to, no_replace)
            };
            (go(st, cmd), want)
        }
        Op::Symlink(path, target) => {
            if path == "/" {
                return None;
            }
            let (parent, name) = dir_arg(st, path);
            let cmd = MetaCommand::SymlinkAt {
                parent,
                name,
                target: target.to_string(),
                uid: 1,
                gid: 1,
                now_ns: now,
            };
            (go(st, cmd), model.symlink(path, target))
        }
        Op::Link(src, dst, pick) => {
            if dst == "/" {
                return None;
            }
            let objs = model.obj_paths();
            let src = match objs.len() {
                n if n > 0 && pick % 2 == 0 => &objs[pick / 2 % n],
                _ => src,
            };
            let inode = match st.lookup(&p(src)) {
                Ok(a) => a.inode,
                Err(e) => return Some((Err(e.kind()), model.link(src, dst))),
            };
            let (new_parent, new_name) = dir_arg(st, dst);
            let cmd = MetaCommand::LinkAt {
                inode,
                new_parent,
                new_name,
                now_ns: now,
            };
            (go(st, cmd), model.link(src, dst))
        }
        Op::Unlink(path) => {
            if path == "/" {
                return None;
            }
            let (parent, name) = dir_arg(st, path);
            let cmd = MetaCommand::UnlinkAt {
                parent,
                name,
                session: None,
                now_ns: now,
            };
            (go(st, cmd), model.unlink(path))
        }
        Op::Write(path, end) | Op::Truncate(path, end) => {
            let got = st.lookup(&p(path)).map_err(|e| e.kind());
            let want = model.resolve(path).map(drop);
            assert_eq!(
                got.as_ref().map(drop).map_err(|k| *k),
                want,
                "lookup {path}"
            );
            let Ok(attr) = got else { return None };
            let Some((len, slots)) = model.file_mut(path) else {
                assert_ne!(attr.file_type, FileType::File);
                return None;
            };
            let inode = attr.inode;
            if let Op::Write(..) = op {
                if *end > 0 {
                    let index = (end - 1) / CHUNK;
                    let r = run(st, log, req, MetaCommand::AllocChunk { inode, index });
                    let Ok(MetaResponse::Chunk {
                        chunk_id,
                        fresh: is_new,
                        ..
                    }) = r
                    else {
                        panic!("alloc: {r:?}")
                    };
                    assert_eq!(is_new, slots.insert(index));
                    if is_new {
                        fresh.insert(chunk_id);
                    }
                }
                let commit = MetaCommand::CommitWrite {
                    inode,
                    end: *end,
                    now_ns: now,
                    session: None,
                };
                let r = run(st, log, None, commit);
                *len = (*len).max(*end);
                assert_eq!(r.unwrap(), MetaResponse::Attr(st.attr(inode).unwrap()));
            } else {
                let cmd = MetaCommand::Truncate {
                    inode,
                    size: *end,
                    now_ns: now,
                    session: None,
                };
                let r = run(st, log, req, cmd);
                *freed = Some(freed_of(&r).expect("truncate answers Truncated"));
                *len = *end;
                let keep = end.div_ceil(CHUNK);
                slots.retain(|&i| i < keep);
            }
            (Ok(()), Ok(()))
        }
    };
    Some(pair)
}

fn check_ops(ops: Vec<(Op, u8)>) {
    let mut st = common::fs();
    let mut model = Model::new();
    let mut log = Vec::new();
    let mut seqs = [0u64; 3];
    for (i, (op, client)) in ops.into_iter().enumerate() {
        // Requests come from clients 0 (no de-duplication), 1 and 2, each with fresh seqs.
        let client = u64::from(client % 3);
        seqs[client as usize] += 1;
        let req = Some(RequestId {
            client_id: client,
            seq: seqs[client as usize],
        });
        let live_before = live_chunks(&st);
        let mut fresh = BTreeSet::new();
        let mut freed = None;
        let now = i as i64;
        let result = step(
            &mut st, &mut model, &mut log, req, &op, now, &mut fresh, &mut freed,
        );
        let Some((got, want)) = result else {
            continue;
        };
        assert_eq!(got, want, "step {i}: {op:?}");
        st.check_invariants()
            .unwrap_or_else(|e| panic!("step {i}: {op:?}: {e}"));
        assert_eq!(snapshot(&st), model.snapshot(), "step {i}: {op:?}");

        // Freed chunks are exactly the ones that stopped being live, each once.
        let live_after = live_chunks(&st);
        let gone: BTreeSet<ChunkId> = live_before.difference(&live_after).copied().collect();
        let freed = freed.unwrap_or_default();
        assert!(freed.is_sorted(), "freed chunks are sorted");
        let freed_ids: BTreeSet<ChunkId> = freed.iter().map(|(c, _)| *c).collect();
        assert_eq!(freed_ids.len(), freed.len());
        assert_eq!(freed_ids, gone, "step {i}: {op:?}");
        let added: BTreeSet<ChunkId> = live_after.difference(&live_before).copied().collect();
        assert_eq!(added, fresh);

        let t = st.totals();
        assert_eq!(
            (t.files, t.directories, t.symlinks, t.bytes, t.chunks),
            model.totals()
        );
    }

    // Replaying the log into a fresh state gives the same answers and the same bytes.
    let bytes = postcard::to_stdvec(&st).unwrap();
    let mut replay = common::fs();
    for (req, cmd, result) in &log {
        assert_eq!(&replay.apply(*req, cmd), result, "replay of {cmd:?}");
    }
    assert_eq!(postcard::to_stdvec(&replay).unwrap(), bytes);

    // A serialization round trip keeps every query answer.
    let loaded: MetaState = postcard::from_bytes(&bytes).unwrap();
    loaded.check_invariants().unwrap();
    assert_eq!(loaded, st);
    assert_eq!(snapshot(&loaded), snapshot(&st));
    assert_eq!(loaded.totals(), st.totals());
    assert_eq!(
        loaded.chunks().collect::<Vec<_>>(),
        st.chunks().collect::<Vec<_>>()
    );
    assert_eq!(
        (
            loaded.chunk_size(),
            loaded.default_goal(),
            loaded.lease_key()
        ),
        (st.chunk_size(), st.default_goal(), st.lease_key())
    );
    for path in model.nodes.keys() {
        let attr = st.lookup(&p(path)).unwrap();
        assert_eq!(loaded.lookup(&p(path)).unwrap(), attr);
        // With hard links, path_of names one of the inode's names.
        let named = st.path_of(attr.inode).unwrap();
        assert_eq!(st.lookup(&named).unwrap().inode, attr.inode);
        assert_eq!(loaded.path_of(attr.inode), Some(named));
        if path != "/" {
            let parent = st.lookup(&p(parent_of(path))).unwrap().inode;
            let name = p(path).file_name().unwrap().to_string();
            assert_eq!(st.lookup_at(parent, &name).unwrap(), attr);
        }
        match attr.file_type {
            FileType::File => assert_eq!(
                loaded.file_chunks(attr.inode, 0, 0),
                st.file_chunks(attr.inode, 0, 0)
            ),
            FileType::Symlink => {
                assert_eq!(loaded.readlink(attr.inode).unwrap().len() as u64, attr.size)
            }
            FileType::Directory => {
                assert_eq!(loaded.list(&p(path), "", 0), st.list(&p(path), "", 0));
                assert_eq!(loaded.readdir(attr.inode, "", 0), st.list(&p(path), "", 0));
            }
        }
    }
    for inode in 0..200 {
        assert_eq!(loaded.attr(inode), st.attr(inode));
        assert_eq!(loaded.parent_of(inode), st.parent_of(inode));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn state_matches_the_model(ops in prop::collection::vec((op(), any::<u8>()), 1..60)) {
        check_ops(ops);
    }
}
