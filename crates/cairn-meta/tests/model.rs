//! Property tests: random command sequences run against `MetaState` and against a plain
//! `BTreeMap<path, node>` model with straightforward logic. After every step the result
//! kinds, the whole tree, the totals and the freed chunks must agree, and the invariants
//! must hold; a failing command must leave the state unchanged. At the end, replaying the
//! log must rebuild identical bytes, and a serialization round trip must keep every answer.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cairn_meta::*;
use common::{CHUNK, p};
use proptest::prelude::*;

// ---- the model

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Dir,
    File { len: u64, slots: BTreeSet<u64> },
}

/// The namespace as a map from full path to node; "/" is always a directory.
struct Model {
    nodes: BTreeMap<String, Node>,
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The prefix every path strictly below `dir` starts with.
fn below(dir: &str) -> String {
    if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    }
}

impl Model {
    fn new() -> Model {
        Model {
            nodes: BTreeMap::from([("/".to_string(), Node::Dir)]),
        }
    }

    fn resolve(&self, path: &str) -> Result<&Node, ErrorKind> {
        let mut prefix = String::new();
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for (i, c) in comps.iter().enumerate() {
            prefix.push('/');
            prefix.push_str(c);
            match self.nodes.get(&prefix) {
                None => return Err(ErrorKind::NotFound),
                Some(Node::File { .. }) if i + 1 < comps.len() => {
                    return Err(ErrorKind::NotADirectory);
                }
                Some(_) => {}
            }
        }
        Ok(&self.nodes[if prefix.is_empty() { "/" } else { &prefix }])
    }

    fn resolve_dir(&self, path: &str) -> Result<(), ErrorKind> {
        match self.resolve(path)? {
            Node::Dir => Ok(()),
            Node::File { .. } => Err(ErrorKind::NotADirectory),
        }
    }

    fn has_children(&self, dir: &str) -> bool {
        let b = below(dir);
        self.nodes
            .keys()
            .any(|k| k.len() > b.len() && k.starts_with(&b))
    }

    fn subtree(&self, path: &str) -> Vec<String> {
        let b = below(path);
        self.nodes
            .keys()
            .filter(|k| *k == path || k.starts_with(&b))
            .cloned()
            .collect()
    }

    fn mkdir(&mut self, path: &str, parents: bool) -> Result<(), ErrorKind> {
        if path == "/" {
            return if parents {
                Ok(())
            } else {
                Err(ErrorKind::AlreadyExists)
            };
        }
        if !parents {
            self.resolve_dir(parent_of(path))?;
            if self.nodes.contains_key(path) {
                return Err(ErrorKind::AlreadyExists);
            }
            self.nodes.insert(path.to_string(), Node::Dir);
            return Ok(());
        }
        let comps: Vec<&str> = path[1..].split('/').collect();
        let mut prefix = String::new();
        for (i, c) in comps.iter().enumerate() {
            prefix.push('/');
            prefix.push_str(c);
            match self.nodes.get(&prefix) {
                Some(Node::File { .. }) if i + 1 == comps.len() => {
                    return Err(ErrorKind::AlreadyExists);
                }
                Some(Node::File { .. }) => return Err(ErrorKind::NotADirectory),
                Some(Node::Dir) => {}
                None => {
                    self.nodes.insert(prefix.clone(), Node::Dir);
                }
            }
        }
        Ok(())
    }

    fn create(&mut self, path: &str, overwrite: bool) -> Result<(), ErrorKind> {
        if path == "/" {
            return Err(ErrorKind::IsADirectory);
        }
        self.resolve_dir(parent_of(path))?;
        match self.nodes.get(path) {
            Some(Node::Dir) => return Err(ErrorKind::IsADirectory),
            Some(Node::File { .. }) if !overwrite => return Err(ErrorKind::AlreadyExists),
            _ => {}
        }
        self.nodes.insert(
            path.to_string(),
            Node::File {
                len: 0,
                slots: BTreeSet::new(),
            },
        );
        Ok(())
    }

    fn delete(&mut self, path: &str, recursive: bool) -> Result<(), ErrorKind> {
        if path == "/" {
            return Err(ErrorKind::InvalidArgument);
        }
        if *self.resolve(path)? == Node::Dir && self.has_children(path) && !recursive {
            return Err(ErrorKind::NotEmpty);
        }
        for k in self.subtree(path) {
            self.nodes.remove(&k);
        }
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str, no_replace: bool) -> Result<(), ErrorKind> {
        if from == "/" || to == "/" {
            return Err(ErrorKind::InvalidArgument);
        }
        let src_is_dir = *self.resolve(from)? == Node::Dir;
        self.resolve_dir(parent_of(to))?;
        if from == to {
            return Ok(());
        }
        if src_is_dir && to.starts_with(&below(from)) {
            return Err(ErrorKind::InvalidArgument);
        }
        if let Some(dst) = self.nodes.get(to) {
            let dst_is_dir = *dst == Node::Dir;
            if no_replace {
                return Err(ErrorKind::AlreadyExists);
            }
            match (src_is_dir, dst_is_dir) {
                (false, true) => return Err(ErrorKind::IsADirectory),
                (true, false) => return Err(ErrorKind::NotADirectory),
                (true, true) if self.has_children(to) => return Err(ErrorKind::NotEmpty),
                _ => {}
            }
            self.nodes.remove(to);
        }
        for k in self.subtree(from) {
            let node = self.nodes.remove(&k).expect("listed just now");
            self.nodes.insert(format!("{to}{}", &k[from.len()..]), node);
        }
        Ok(())
    }

    /// The tree as `path -> (type, size, chunk_count)`, as the real state reports it.
    fn snapshot(&self) -> BTreeMap<String, (FileType, u64, u64)> {
        self.nodes
            .iter()
            .map(|(path, node)| {
                let v = match node {
                    Node::Dir => {
                        let b = below(path);
                        let n = self
                            .nodes
                            .keys()
                            .filter(|k| k.len() > b.len() && k.starts_with(&b))
                            .filter(|k| !k[b.len()..].contains('/'))
                            .count();
                        (FileType::Directory, n as u64, 0)
                    }
                    Node::File { len, slots } => {
                        (FileType::File, *len, slots.last().map_or(0, |s| s + 1))
                    }
                };
                (path.clone(), v)
            })
            .collect()
    }
}

// ---- the real state, seen the same way

/// Walks the tree through paged listings (pages of 2, to exercise paging).
fn snapshot(st: &MetaState) -> BTreeMap<String, (FileType, u64, u64)> {
    let root = st.lookup(&p("/")).unwrap();
    let mut out = BTreeMap::from([("/".to_string(), (root.file_type, root.size, 0))]);
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
                out.insert(
                    path.to_string(),
                    (attr.file_type, attr.size, attr.chunk_count),
                );
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

// ---- random operations

#[derive(Clone, Debug)]
enum Op {
    Mkdir(String, bool),
    Create(String, bool),
    Delete(String, bool),
    Rename(String, String, bool),
    Write(String, u64),
    Truncate(String, u64),
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("/".to_string()),
        12 => prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..=3)
            .prop_map(|names| format!("/{}", names.join("/"))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let size = 0..5 * CHUNK;
    prop_oneof![
        3 => (path(), any::<bool>()).prop_map(|(p, b)| Op::Mkdir(p, b)),
        3 => (path(), any::<bool>()).prop_map(|(p, b)| Op::Create(p, b)),
        2 => (path(), any::<bool>()).prop_map(|(p, b)| Op::Delete(p, b)),
        3 => (path(), path(), any::<bool>()).prop_map(|(f, t, b)| Op::Rename(f, t, b)),
        2 => (path(), size.clone()).prop_map(|(p, n)| Op::Write(p, n)),
        1 => (path(), size).prop_map(|(p, n)| Op::Truncate(p, n)),
    ]
}

/// Runs one command on the state (checking atomicity on a shadow copy) and logs it.
fn run(
    st: &mut MetaState,
    log: &mut Vec<(
        Option<RequestId>,
        MetaCommand,
        Result<MetaResponse, MetaError>,
    )>,
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

fn check_ops(ops: Vec<(Op, u8)>) {
    let mut st = common::fs();
    let mut model = Model::new();
    let mut log = Vec::new();
    let mut seqs = [0u64; 3];
    for (step, (op, client)) in ops.into_iter().enumerate() {
        let now = step as i64;
        // Requests come from clients 0 (no de-duplication), 1 and 2, each with fresh seqs.
        let client = u64::from(client % 3);
        seqs[client as usize] += 1;
        let req = Some(RequestId {
            client_id: client,
            seq: seqs[client as usize],
        });
        let live_before = live_chunks(&st);
        let mut fresh = BTreeSet::new();
        let mut freed: Option<Vec<(ChunkId, u64)>> = None;
        let (got, want) = match &op {
            Op::Mkdir(path, parents) => {
                let cmd = MetaCommand::Mkdir {
                    path: p(path),
                    parents: *parents,
                    mode: 0o755,
                    uid: 1,
                    gid: 1,
                    now_ns: now,
                };
                (
                    run(&mut st, &mut log, req, cmd).map(drop),
                    model.mkdir(path, *parents),
                )
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
                };
                let r = run(&mut st, &mut log, req, cmd);
                if let Ok(MetaResponse::Created { freed: f, .. }) = &r {
                    freed = Some(f.clone());
                }
                (r.map(drop), model.create(path, *overwrite))
            }
            Op::Delete(path, recursive) => {
                let cmd = MetaCommand::Delete {
                    path: p(path),
                    recursive: *recursive,
                    now_ns: now,
                };
                let r = run(&mut st, &mut log, req, cmd);
                if let Ok(MetaResponse::Freed(f)) = &r {
                    freed = Some(f.clone());
                }
                (r.map(drop), model.delete(path, *recursive))
            }
            Op::Rename(from, to, no_replace) => {
                let cmd = MetaCommand::Rename {
                    from: p(from),
                    to: p(to),
                    no_replace: *no_replace,
                    now_ns: now,
                };
                let r = run(&mut st, &mut log, req, cmd);
                if let Ok(MetaResponse::Freed(f)) = &r {
                    freed = Some(f.clone());
                }
                (r.map(drop), model.rename(from, to, *no_replace))
            }
            Op::Write(path, end) | Op::Truncate(path, end) => {
                let got = st.lookup(&p(path)).map_err(|e| e.kind());
                let want = model.resolve(path).map(drop);
                assert_eq!(
                    got.as_ref().map(drop).map_err(|k| *k),
                    want,
                    "lookup {path}"
                );
                let Ok(attr) = got else { continue };
                let Some(Node::File { len, slots }) = model.nodes.get_mut(path) else {
                    assert_eq!(attr.file_type, FileType::Directory);
                    continue;
                };
                let inode = attr.inode;
                if let Op::Write(..) = op {
                    if *end > 0 {
                        let index = (end - 1) / CHUNK;
                        let r = run(
                            &mut st,
                            &mut log,
                            req,
                            MetaCommand::AllocChunk { inode, index },
                        );
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
                    let r = run(
                        &mut st,
                        &mut log,
                        None,
                        MetaCommand::CommitWrite {
                            inode,
                            end: *end,
                            now_ns: now,
                        },
                    );
                    *len = (*len).max(*end);
                    assert_eq!(r.unwrap(), MetaResponse::Attr(st.attr(inode).unwrap()));
                } else {
                    let r = run(
                        &mut st,
                        &mut log,
                        req,
                        MetaCommand::Truncate {
                            inode,
                            size: *end,
                            now_ns: now,
                        },
                    );
                    let Ok(MetaResponse::Truncated { freed: f, .. }) = r else {
                        panic!("{r:?}")
                    };
                    freed = Some(f);
                    *len = *end;
                    let keep = end.div_ceil(CHUNK);
                    slots.retain(|&i| i < keep);
                }
                (Ok(()), Ok(()))
            }
        };
        assert_eq!(got.map_err(|e| e.kind()), want, "step {step}: {op:?}");
        st.check_invariants()
            .unwrap_or_else(|e| panic!("step {step}: {op:?}: {e}"));
        assert_eq!(snapshot(&st), model.snapshot(), "step {step}: {op:?}");

        // Freed chunks are exactly the ones that stopped being live, each once.
        let live_after = live_chunks(&st);
        let gone: BTreeSet<ChunkId> = live_before.difference(&live_after).copied().collect();
        let freed = freed.unwrap_or_default();
        assert!(freed.is_sorted(), "freed chunks are sorted");
        let freed_ids: BTreeSet<ChunkId> = freed.iter().map(|(c, _)| *c).collect();
        assert_eq!(freed_ids.len(), freed.len());
        assert_eq!(freed_ids, gone, "step {step}: {op:?}");
        let added: BTreeSet<ChunkId> = live_after.difference(&live_before).copied().collect();
        assert_eq!(added, fresh);

        let t = st.totals();
        let files = model
            .nodes
            .values()
            .filter(|n| matches!(n, Node::File { .. }))
            .count();
        let (bytes, chunks) = model.nodes.values().fold((0, 0), |(b, c), n| match n {
            Node::File { len, slots } => (b + len, c + slots.len() as u64),
            Node::Dir => (b, c),
        });
        assert_eq!(
            (t.files, t.directories, t.bytes, t.chunks),
            (
                files as u64,
                (model.nodes.len() - files) as u64,
                bytes,
                chunks
            )
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
        assert_eq!(st.path_of(attr.inode).unwrap().as_str(), path);
        assert_eq!(loaded.path_of(attr.inode), st.path_of(attr.inode));
        if attr.file_type == FileType::File {
            assert_eq!(
                loaded.file_chunks(attr.inode, 0, 0),
                st.file_chunks(attr.inode, 0, 0)
            );
        } else {
            assert_eq!(loaded.list(&p(path), "", 0), st.list(&p(path), "", 0));
        }
    }
    for inode in 0..200 {
        assert_eq!(loaded.attr(inode), st.attr(inode));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn state_matches_the_model(ops in prop::collection::vec((op(), any::<u8>()), 1..60)) {
        check_ops(ops);
    }
}
