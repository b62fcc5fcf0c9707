//! Unit tests of the namespace commands (Format, Mkdir, Create, Delete, Rename) and the
//! namespace queries. Every failing command also checks that the state is unchanged.

mod common;

use cairn_meta::*;
use common::*;

#[test]
fn unformatted_state_refuses_everything_but_format() {
    let mut st = MetaState::new();
    assert!(!st.is_formatted());
    assert_eq!(
        (st.chunk_size(), st.default_goal(), st.lease_key()),
        (0, 0, [0; 32])
    );
    assert_eq!(st.lookup(&p("/")), Err(MetaError::NotFormatted));
    assert_eq!(st.attr(ROOT_INODE), Err(MetaError::NotFormatted));
    assert_eq!(st.list(&p("/"), "", 0), Err(MetaError::NotFormatted));
    assert_eq!(st.file_chunks(2, 0, 0), Err(MetaError::NotFormatted));
    let e = err(&mut st, mkdir_cmd("/a", false, T0));
    assert_eq!(e, MetaError::NotFormatted);
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(e.to_string(), "file system: not formatted");
    assert_eq!(
        err(&mut st, MetaCommand::AllocChunk { inode: 2, index: 0 }),
        MetaError::NotFormatted
    );
    assert_eq!(st, MetaState::default());
}

#[test]
fn format_creates_the_root_once() {
    let mut st = fs();
    assert!(st.is_formatted());
    assert_eq!(
        (st.chunk_size(), st.default_goal(), st.lease_key()),
        (CHUNK, 2, [7; 32])
    );
    let root = st.lookup(&p("/")).unwrap();
    assert_eq!(root.inode, ROOT_INODE);
    assert_eq!(root.file_type, FileType::Directory);
    assert_eq!(
        (root.mode, root.uid, root.gid, root.nlink, root.size),
        (0o755, 0, 0, 2, 0)
    );
    assert_eq!((root.atime_ns, root.mtime_ns, root.ctime_ns), (T0, T0, T0));
    assert_eq!((root.goal, root.chunk_count), (0, 0));
    assert_eq!(st.attr(ROOT_INODE).unwrap(), root);
    let again = MetaCommand::Format {
        chunk_size: 1,
        default_goal: 1,
        lease_key: [0; 32],
        now_ns: 5,
    };
    assert_eq!(err_kind(&mut st, again), ErrorKind::AlreadyExists);
    let t = st.totals();
    assert_eq!(
        (t.files, t.directories, t.symlinks, t.bytes, t.chunks),
        (0, 1, 0, 0, 0)
    );
}

#[test]
fn format_validates_parameters() {
    for (chunk_size, default_goal) in [(0, 2), (1 << 61, 2), (1024, 0), (1024, 17)] {
        let mut st = MetaState::new();
        let cmd = MetaCommand::Format {
            chunk_size,
            default_goal,
            lease_key: [0; 32],
            now_ns: 0,
        };
        assert_eq!(err_kind(&mut st, cmd), ErrorKind::InvalidArgument);
    }
}

#[test]
fn mkdir_creates_and_updates_the_parent() {
    let mut st = fs();
    let a = ok(&mut st, mkdir_cmd("/a", false, T0 + 5));
    let MetaResponse::Attr(a) = a else {
        panic!("{a:?}")
    };
    assert_eq!(a.inode, 2, "inode ids start at 2");
    assert_eq!(a.file_type, FileType::Directory);
    assert_eq!(
        (a.mode, a.uid, a.gid, a.nlink, a.size, a.goal),
        (0o755, 10, 20, 2, 0, 0)
    );
    assert_eq!(
        (a.atime_ns, a.mtime_ns, a.ctime_ns),
        (T0 + 5, T0 + 5, T0 + 5)
    );
    let root = st.attr(ROOT_INODE).unwrap();
    assert_eq!(
        (root.nlink, root.size, root.mtime_ns, root.ctime_ns),
        (3, 1, T0 + 5, T0 + 5)
    );
    assert_eq!(root.atime_ns, T0);
    assert_eq!(mkdir(&mut st, "/a/b").inode, 3);
    // Only permission bits are kept.
    let cmd = MetaCommand::Mkdir {
        path: p("/m"),
        parents: false,
        mode: 0o40750,
        uid: 0,
        gid: 0,
        now_ns: 0,
    };
    let MetaResponse::Attr(m) = ok(&mut st, cmd) else {
        panic!()
    };
    assert_eq!(m.mode, 0o750);
}

#[test]
fn mkdir_errors() {
    let mut st = fs();
    mkdir(&mut st, "/a");
    create(&mut st, "/f");
    let e = err(&mut st, mkdir_cmd("/x/y", false, T0));
    assert_eq!(e.to_string(), "/x/y: not found");
    assert_eq!(
        err(&mut st, mkdir_cmd("/f/y", false, T0)).to_string(),
        "/f: not a directory"
    );
    assert_eq!(
        err_kind(&mut st, mkdir_cmd("/f/y/z", true, T0)),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        err(&mut st, mkdir_cmd("/a", false, T0)).to_string(),
        "/a: already exists"
    );
    assert_eq!(
        err_kind(&mut st, mkdir_cmd("/f", false, T0)),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        err_kind(&mut st, mkdir_cmd("/f", true, T0)),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        err_kind(&mut st, mkdir_cmd("/", false, T0)),
        ErrorKind::AlreadyExists
    );
}

#[test]
fn mkdir_parents() {
    let mut st = fs();
    let a = mkdir(&mut st, "/a");
    // An existing directory is fine with `parents`, and answers that directory.
    let MetaResponse::Attr(again) = ok(&mut st, mkdir_cmd("/a", true, T0 + 9)) else {
        panic!()
    };
    assert_eq!(again, st.attr(a.inode).unwrap());
    assert_eq!(again.mtime_ns, T0, "an existing directory is not touched");
    let MetaResponse::Attr(root) = ok(&mut st, mkdir_cmd("/", true, T0)) else {
        panic!()
    };
    assert_eq!(root.inode, ROOT_INODE);
    let MetaResponse::Attr(z) = ok(&mut st, mkdir_cmd("/a/x/y/z", true, T0 + 1)) else {
        panic!()
    };
    assert_eq!(st.path_of(z.inode), Some(p("/a/x/y/z")));
    for path in ["/a/x", "/a/x/y"] {
        let d = st.lookup(&p(path)).unwrap();
        assert_eq!(
            (d.mode, d.uid, d.gid, d.nlink, d.mtime_ns),
            (0o755, 10, 20, 3, T0 + 1)
        );
    }
    assert_eq!(st.attr(a.inode).unwrap().mtime_ns, T0 + 1);
    assert_eq!(st.totals().directories, 5);
    // Without `parents`, a missing ancestor fails.
    assert_eq!(
        err_kind(&mut st, mkdir_cmd("/q/r", false, T0)),
        ErrorKind::NotFound
    );
}

#[test]
fn create_files() {
    let mut st = fs();
    mkdir(&mut st, "/d");
    let f = create(&mut st, "/d/f");
    assert_eq!(f.file_type, FileType::File);
    assert_eq!(
        (f.size, f.mode, f.uid, f.gid, f.nlink, f.goal, f.chunk_count),
        (0, 0o644, 10, 20, 1, 2, 0)
    );
    let d = st.lookup(&p("/d")).unwrap();
    assert_eq!(
        (d.size, d.nlink),
        (1, 2),
        "files do not add to a directory's nlink"
    );
    let cmd = MetaCommand::Create {
        path: p("/g"),
        overwrite: false,
        mode: 0o600,
        uid: 1,
        gid: 1,
        goal: 5,
        now_ns: T0,
        session: None,
    };
    let MetaResponse::Created { attr, .. } = ok(&mut st, cmd) else {
        panic!()
    };
    assert_eq!(attr.goal, 5);
    let t = st.totals();
    assert_eq!((t.files, t.directories), (2, 2));
}

#[test]
fn create_errors() {
    let mut st = fs();
    mkdir(&mut st, "/d");
    create(&mut st, "/f");
    assert_eq!(
        err_kind(&mut st, create_cmd("/x/f", false, T0)),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(&mut st, create_cmd("/f/g", true, T0)),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        err(&mut st, create_cmd("/d", true, T0)).to_string(),
        "/d: is a directory"
    );
    assert_eq!(
        err_kind(&mut st, create_cmd("/", true, T0)),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        err_kind(&mut st, create_cmd("/f", false, T0)),
        ErrorKind::AlreadyExists
    );
    let cmd = MetaCommand::Create {
        path: p("/g"),
        overwrite: false,
        mode: 0,
        uid: 0,
        gid: 0,
        goal: 17,
        now_ns: 0,
        session: None,
    };
    assert_eq!(err_kind(&mut st, cmd), ErrorKind::InvalidArgument);
}

#[test]
fn create_overwrite_keeps_the_inode_and_frees_chunks() {
    let mut st = fs();
    let f = create(&mut st, "/f");
    let c0 = alloc(&mut st, f.inode, 0);
    let c1 = alloc(&mut st, f.inode, 1);
    ok(
        &mut st,
        MetaCommand::SetChunkVersion {
            chunk_id: c1,
            version: 4,
        },
    );
    ok(
        &mut st,
        MetaCommand::CommitWrite {
            inode: f.inode,
            end: 2000,
            now_ns: T0,
            session: None,
        },
    );
    let cmd = MetaCommand::Create {
        path: p("/f"),
        overwrite: true,
        mode: 0o600,
        uid: 9,
        gid: 9,
        goal: 3,
        now_ns: T0 + 7,
        session: None,
    };
    let MetaResponse::Created { attr, freed } = ok(&mut st, cmd) else {
        panic!()
    };
    assert_eq!(freed, vec![(c0, 1), (c1, 4)]);
    assert_eq!(attr.inode, f.inode);
    assert_eq!((attr.size, attr.chunk_count, attr.goal), (0, 0, 3));
    assert_eq!(
        (attr.mode, attr.uid),
        (0o644, 10),
        "owner and mode stay, as with O_TRUNC"
    );
    assert_eq!((attr.mtime_ns, attr.ctime_ns), (T0 + 7, T0 + 7));
    assert_eq!(st.chunk(c0), None);
    let t = st.totals();
    assert_eq!((t.files, t.bytes, t.chunks), (1, 0, 0));
    // Overwrite with goal 0 keeps the file's goal.
    let MetaResponse::Created { attr, freed } = ok(&mut st, create_cmd("/f", true, T0)) else {
        panic!()
    };
    assert_eq!((attr.goal, freed.len()), (3, 0));
}

#[test]
fn delete_files_and_directories() {
    let mut st = fs();
    mkdir(&mut st, "/d");
    let f = create(&mut st, "/d/f");
    let c = alloc(&mut st, f.inode, 3);
    ok(
        &mut st,
        MetaCommand::CommitWrite {
            inode: f.inode,
            end: 3500,
            now_ns: T0,
            session: None,
        },
    );
    let resp = ok(&mut st, delete_cmd("/d/f", false, T0 + 3));
    assert_eq!(freed(resp), vec![(c, 1)]);
    assert_eq!(st.attr(f.inode).unwrap_err().kind(), ErrorKind::NotFound);
    let d = st.lookup(&p("/d")).unwrap();
    assert_eq!((d.size, d.mtime_ns, d.ctime_ns), (0, T0 + 3, T0 + 3));
    assert_eq!(freed(ok(&mut st, delete_cmd("/d", false, T0 + 4))), vec![]);
    let root = st.attr(ROOT_INODE).unwrap();
    assert_eq!((root.nlink, root.size, root.mtime_ns), (2, 0, T0 + 4));
    let t = st.totals();
    assert_eq!((t.files, t.directories, t.bytes, t.chunks), (0, 1, 0, 0));
    // Ids are never reused.
    assert_eq!(mkdir(&mut st, "/d").inode, f.inode + 1);
}

#[test]
fn delete_errors() {
    let mut st = fs();
    mkdir(&mut st, "/d");
    create(&mut st, "/d/f");
    create(&mut st, "/g");
    assert_eq!(
        err(&mut st, delete_cmd("/", true, T0)).kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(&mut st, delete_cmd("/x", false, T0)),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(&mut st, delete_cmd("/g/x", false, T0)),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        err(&mut st, delete_cmd("/d", false, T0)).to_string(),
        "/d: directory not empty"
    );
}

#[test]
fn delete_recursive_frees_the_whole_subtree() {
    let mut st = fs();
    ok(&mut st, mkdir_cmd("/t/a/b", true, T0));
    mkdir(&mut st, "/t/c");
    let mut chunks = Vec::new();
    for path in ["/t/x", "/t/a/y", "/t/a/b/z"] {
        let f = create(&mut st, path);
        chunks.push(alloc(&mut st, f.inode, 0));
        chunks.push(alloc(&mut st, f.inode, 2));
    }
    let keep = create(&mut st, "/keep");
    let kept = alloc(&mut st, keep.inode, 0);
    let mut got = freed(ok(&mut st, delete_cmd("/t", true, T0)));
    assert!(got.is_sorted());
    got.sort();
    chunks.sort();
    assert_eq!(got.into_iter().map(|(c, _)| c).collect::<Vec<_>>(), chunks);
    assert_eq!(names(&st, "/"), ["keep"]);
    let t = st.totals();
    assert_eq!((t.files, t.directories, t.chunks), (1, 1, 1));
    assert_eq!(st.chunks().map(|(c, _, _)| c).collect::<Vec<_>>(), [kept]);
}

#[test]
fn rename_moves_across_directories() {
    let mut st = fs();
    let a = mkdir(&mut st, "/a");
    let b = mkdir(&mut st, "/b");
    let s = mkdir(&mut st, "/a/s");
    create(&mut st, "/a/s/f");
    assert_eq!(
        freed(ok(&mut st, rename_cmd("/a/s", "/b/t", false, T0 + 2))),
        vec![]
    );
    assert_eq!(names(&st, "/a"), Vec::<String>::new());
    assert_eq!(names(&st, "/b"), ["t"]);
    assert_eq!(st.lookup(&p("/b/t/f")).unwrap().file_type, FileType::File);
    assert_eq!(st.path_of(s.inode), Some(p("/b/t")));
    let moved = st.attr(s.inode).unwrap();
    assert_eq!((moved.ctime_ns, moved.mtime_ns), (T0 + 2, T0));
    let (a2, b2) = (st.attr(a.inode).unwrap(), st.attr(b.inode).unwrap());
    assert_eq!((a2.nlink, a2.mtime_ns, a2.ctime_ns), (2, T0 + 2, T0 + 2));
    assert_eq!((b2.nlink, b2.mtime_ns, b2.ctime_ns), (3, T0 + 2, T0 + 2));
    // A name that merely starts with the source's name is not inside it.
    mkdir(&mut st, "/a/s");
    ok(&mut st, rename_cmd("/a/s", "/a/ss", false, T0));
    assert_eq!(names(&st, "/a"), ["ss"]);
    // Renaming a file within its directory.
    ok(&mut st, rename_cmd("/b/t/f", "/b/t/g", true, T0));
    assert_eq!(names(&st, "/b/t"), ["g"]);
}

#[test]
fn rename_errors() {
    let mut st = fs();
    mkdir(&mut st, "/a");
    mkdir(&mut st, "/a/b");
    mkdir(&mut st, "/e");
    mkdir(&mut st, "/n");
    create(&mut st, "/n/x");
    create(&mut st, "/f");
    create(&mut st, "/g");
    let cases = [
        ("/x", "/y", false, ErrorKind::NotFound),
        ("/f", "/x/y", false, ErrorKind::NotFound),
        ("/f", "/g/y", false, ErrorKind::NotADirectory),
        ("/a", "/a/b/c", false, ErrorKind::InvalidArgument),
        ("/a", "/a/c", false, ErrorKind::InvalidArgument),
        ("/", "/z", false, ErrorKind::InvalidArgument),
        ("/a", "/", false, ErrorKind::InvalidArgument),
        ("/f", "/g", true, ErrorKind::AlreadyExists),
        ("/e", "/n", true, ErrorKind::AlreadyExists),
        ("/f", "/e", false, ErrorKind::IsADirectory),
        ("/e", "/f", false, ErrorKind::NotADirectory),
        ("/e", "/n", false, ErrorKind::NotEmpty),
        ("/a/b", "/a", false, ErrorKind::NotEmpty),
    ];
    for (from, to, no_replace, kind) in cases {
        let e = err(&mut st, rename_cmd(from, to, no_replace, T0));
        assert_eq!(e.kind(), kind, "{from} -> {to}: {e}");
    }
    let e = err(&mut st, rename_cmd("/a", "/a/b/c", false, T0));
    assert_eq!(e.to_string(), "/a/b/c: cannot move a directory into itself");
}

#[test]
fn rename_onto_itself_is_a_no_op() {
    let mut st = fs();
    mkdir(&mut st, "/a");
    create(&mut st, "/a/f");
    let before = st.clone();
    assert_eq!(
        freed(ok(&mut st, rename_cmd("/a", "/a", false, T0 + 1))),
        vec![]
    );
    assert_eq!(
        freed(ok(&mut st, rename_cmd("/a/f", "/a/f", true, T0 + 1))),
        vec![]
    );
    assert_eq!(st, before);
}

#[test]
fn rename_replaces() {
    let mut st = fs();
    // File over file: the old target goes, with its chunks.
    let f = create(&mut st, "/f");
    let g = create(&mut st, "/g");
    let cf = alloc(&mut st, f.inode, 0);
    let cg = alloc(&mut st, g.inode, 0);
    assert_eq!(
        freed(ok(&mut st, rename_cmd("/f", "/g", false, T0 + 1))),
        vec![(cg, 1)]
    );
    assert_eq!(st.lookup(&p("/g")).unwrap().inode, f.inode);
    assert!(st.attr(g.inode).is_err());
    assert_eq!(st.chunk(cf).map(|m| m.inode), Some(f.inode));
    assert_eq!(st.chunk(cg), None);
    // Directory over an empty directory.
    let d = mkdir(&mut st, "/d");
    create(&mut st, "/d/inner");
    let e = mkdir(&mut st, "/e");
    ok(&mut st, rename_cmd("/d", "/e", false, T0 + 2));
    assert_eq!(st.lookup(&p("/e")).unwrap().inode, d.inode);
    assert!(st.attr(e.inode).is_err());
    assert_eq!(names(&st, "/"), ["e", "g"]);
    let root = st.attr(ROOT_INODE).unwrap();
    assert_eq!((root.nlink, root.size), (3, 2));
    let t = st.totals();
    assert_eq!((t.files, t.directories, t.chunks), (2, 2, 1));
}

#[test]
fn list_pages_in_byte_order() {
    let mut st = fs();
    for name in ["b", "a", "B", "é", "ab", "z"] {
        create(&mut st, &format!("/{name}"));
    }
    assert_eq!(names(&st, "/"), ["B", "a", "ab", "b", "z", "é"]);
    let (page, more) = st.list(&p("/"), "", 2).unwrap();
    assert_eq!(
        page.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["B", "a"]
    );
    assert!(more);
    let (page, more) = st.list(&p("/"), "a", 3).unwrap();
    assert_eq!(
        page.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["ab", "b", "z"]
    );
    assert!(more);
    let (page, more) = st.list(&p("/"), "aa", 3).unwrap();
    assert_eq!(page[0].0, "ab");
    assert!(more);
    let (page, more) = st.list(&p("/"), "z", 3).unwrap();
    assert_eq!((page.len(), more), (1, false));
    assert_eq!(page[0].1, st.lookup(&p("/é")).unwrap());
    assert_eq!(
        st.list(&p("/a"), "", 0).unwrap_err().kind(),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        st.list(&p("/q"), "", 0).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn list_default_limit_is_1000() {
    let mut st = fs();
    for i in 0..1001 {
        create(&mut st, &format!("/f{i:04}"));
    }
    let (page, more) = st.list(&p("/"), "", 0).unwrap();
    assert_eq!((page.len(), more), (DEFAULT_LIST_LIMIT, true));
    let (page, more) = st.list(&p("/"), &page[999].0, 0).unwrap();
    assert_eq!((page.len(), more), (1, false));
}

#[test]
fn lookups_and_paths() {
    let mut st = fs();
    ok(&mut st, mkdir_cmd("/a/b", true, T0));
    let f = create(&mut st, "/a/b/f");
    assert_eq!(st.lookup(&p("/a/b/f")).unwrap(), f);
    assert_eq!(
        st.lookup(&p("/a/x")).unwrap_err().to_string(),
        "/a/x: not found"
    );
    assert_eq!(
        st.lookup(&p("/a/b/f/x")).unwrap_err().to_string(),
        "/a/b/f: not a directory"
    );
    assert_eq!(
        st.attr(999).unwrap_err().to_string(),
        "inode 999: not found"
    );
    assert_eq!(st.path_of(ROOT_INODE), Some(CairnPath::root()));
    assert_eq!(st.path_of(f.inode), Some(p("/a/b/f")));
    assert_eq!(st.path_of(999), None);
}
