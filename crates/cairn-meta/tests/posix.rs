//! Unit tests of the inode-based directory commands (MkdirAt, CreateAt, UnlinkAt, RmdirAt,
//! RenameAt with RENAME_NOREPLACE and RENAME_EXCHANGE, SetAttr) and the inode queries.
//! Every failing command also checks that the state is unchanged.

mod common;

use cairn_meta::*;
use common::*;

#[test]
fn mkdir_at_and_create_at() {
    let mut st = fs();
    let a = mkdir_at(&mut st, ROOT_INODE, "a");
    assert_eq!(
        (a.file_type, a.nlink, a.mode, a.uid),
        (FileType::Directory, 2, 0o755, 10)
    );
    assert_eq!(st.attr(ROOT_INODE).unwrap().nlink, 3);
    let f = create_at(&mut st, a.inode, "f");
    assert_eq!(
        (f.file_type, f.nlink, f.size, f.goal),
        (FileType::File, 1, 0, 2)
    );
    assert_eq!(st.lookup(&p("/a/f")).unwrap(), f);
    assert_eq!(st.lookup_at(a.inode, "f").unwrap(), f);
    assert_eq!(st.parent_of(a.inode), Some(ROOT_INODE));
    assert_eq!(st.parent_of(ROOT_INODE), Some(ROOT_INODE));
    assert_eq!((st.parent_of(f.inode), st.parent_of(99)), (None, None));
    // Without O_EXCL an existing file is answered unchanged.
    let again = ok(&mut st, create_at_cmd(a.inode, "f", false, T0 + 9));
    assert_eq!(
        again,
        MetaResponse::Created {
            attr: f.clone(),
            freed: vec![]
        }
    );
    let e = err(&mut st, create_at_cmd(a.inode, "f", true, T0));
    assert_eq!(e, MetaError::AlreadyExists(format!("inode {}/f", a.inode)));
    assert_eq!(
        err_kind(&mut st, create_at_cmd(ROOT_INODE, "a", false, T0)),
        ErrorKind::IsADirectory
    );
    ok(&mut st, symlink_cmd(ROOT_INODE, "l", "/a", T0));
    assert_eq!(
        err_kind(&mut st, create_at_cmd(ROOT_INODE, "l", false, T0)),
        ErrorKind::AlreadyExists
    );
    let mkdir = |parent, name: &str| MetaCommand::MkdirAt {
        parent,
        name: name.to_string(),
        mode: 0o40700,
        uid: 0,
        gid: 0,
        now_ns: T0,
    };
    assert_eq!(
        err_kind(&mut st, mkdir(ROOT_INODE, "a")),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        err_kind(&mut st, mkdir(f.inode, "x")),
        ErrorKind::NotADirectory
    );
    assert_eq!(err_kind(&mut st, mkdir(99, "x")), ErrorKind::NotFound);
    let MetaResponse::Attr(m) = ok(&mut st, mkdir(ROOT_INODE, "m")) else {
        panic!()
    };
    assert_eq!(m.mode, 0o700);
}

#[test]
fn bad_names_are_invalid_paths() {
    let mut st = fs();
    let long = "x".repeat(256);
    for name in ["", ".", "..", "a/b", "a\0b", long.as_str()] {
        let e = err(&mut st, create_at_cmd(ROOT_INODE, name, false, T0));
        assert_eq!(e.kind(), ErrorKind::InvalidPath, "{name:?}");
        assert_eq!(
            st.lookup_at(ROOT_INODE, name).unwrap_err().kind(),
            ErrorKind::InvalidPath
        );
        assert_eq!(
            err_kind(&mut st, symlink_cmd(ROOT_INODE, name, "t", T0)),
            ErrorKind::InvalidPath
        );
    }
    create_at(&mut st, ROOT_INODE, &"x".repeat(255));
}

#[test]
fn unlink_at_and_rmdir_at() {
    let mut st = fs();
    let d = mkdir(&mut st, "/d").inode;
    let e = mkdir(&mut st, "/d/e").inode;
    let f = create(&mut st, "/d/f").inode;
    let chunks = write(&mut st, f, 2 * CHUNK);
    assert_eq!(
        err_kind(&mut st, unlink_cmd(d, "e", None)),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        err_kind(&mut st, unlink_cmd(d, "zz", None)),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(&mut st, unlink_cmd(f, "x", None)),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        err_kind(&mut st, rmdir_cmd(d, "f")),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        err_kind(&mut st, rmdir_cmd(ROOT_INODE, "d")),
        ErrorKind::NotEmpty
    );
    assert_eq!(err_kind(&mut st, rmdir_cmd(d, "zz")), ErrorKind::NotFound);
    let (freed, dropped) = removed(ok(&mut st, unlink_cmd(d, "f", None)));
    assert_eq!(freed, [(chunks[0], 1), (chunks[1], 1)]);
    assert!(dropped.is_empty());
    assert_eq!(st.attr(f).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(removed(ok(&mut st, rmdir_cmd(d, "e"))), (vec![], vec![]));
    assert_eq!(st.attr(e).unwrap_err().kind(), ErrorKind::NotFound);
    let dir = st.attr(d).unwrap();
    assert_eq!((dir.nlink, dir.size, dir.mtime_ns), (2, 0, T0 + 50));
    ok(&mut st, rmdir_cmd(ROOT_INODE, "d"));
    assert_eq!(
        st.totals(),
        Totals {
            directories: 1,
            ..Totals::default()
        }
    );
}

#[test]
fn rename_at_moves_and_replaces() {
    let mut st = fs();
    let a = mkdir(&mut st, "/a").inode;
    let b = mkdir(&mut st, "/b").inode;
    let sub = mkdir(&mut st, "/a/sub").inode;
    let f = create(&mut st, "/a/f").inode;
    let g = create(&mut st, "/b/g").inode;
    let chunks = write(&mut st, g, 10);
    // Onto itself: nothing happens.
    assert_eq!(
        removed(ok(&mut st, rename_at_cmd(a, "f", a, "f", true, false))),
        (vec![], vec![])
    );
    // Replacing a file frees its chunks.
    let (freed, _) = removed(ok(&mut st, rename_at_cmd(a, "f", b, "g", false, false)));
    assert_eq!(freed, [(chunks[0], 1)]);
    assert_eq!(st.lookup(&p("/b/g")).unwrap().inode, f);
    assert_eq!(st.path_of(f).unwrap().as_str(), "/b/g");
    assert_eq!(st.attr(f).unwrap().ctime_ns, T0 + 60);
    // Directories move across parents with their link counts.
    ok(&mut st, rename_at_cmd(a, "sub", b, "sub2", false, false));
    assert_eq!(
        (st.attr(a).unwrap().nlink, st.attr(b).unwrap().nlink),
        (2, 3)
    );
    assert_eq!(st.parent_of(sub), Some(b));
    // Errors.
    create(&mut st, "/a/h");
    mkdir(&mut st, "/a/full");
    create(&mut st, "/a/full/x");
    mkdir(&mut st, "/a/empty");
    let cases = [
        (
            rename_at_cmd(a, "h", b, "g", true, false),
            ErrorKind::AlreadyExists,
        ),
        (
            rename_at_cmd(a, "h", a, "empty", false, false),
            ErrorKind::IsADirectory,
        ),
        (
            rename_at_cmd(b, "sub2", a, "h", false, false),
            ErrorKind::NotADirectory,
        ),
        (
            rename_at_cmd(b, "sub2", a, "full", false, false),
            ErrorKind::NotEmpty,
        ),
        (
            rename_at_cmd(ROOT_INODE, "a", a, "x", false, false),
            ErrorKind::InvalidArgument,
        ),
        (
            rename_at_cmd(ROOT_INODE, "b", b, "g", false, true),
            ErrorKind::InvalidArgument,
        ),
        (
            rename_at_cmd(ROOT_INODE, "b", sub, "x", false, false),
            ErrorKind::InvalidArgument,
        ),
        (
            rename_at_cmd(a, "zz", b, "x", false, false),
            ErrorKind::NotFound,
        ),
        (
            rename_at_cmd(a, "h", 99, "x", false, false),
            ErrorKind::NotFound,
        ),
        (
            rename_at_cmd(a, "h", f, "x", false, false),
            ErrorKind::NotADirectory,
        ),
        (
            rename_at_cmd(a, "h", b, "..", false, false),
            ErrorKind::InvalidPath,
        ),
        (
            rename_at_cmd(a, "h", b, "g", true, true),
            ErrorKind::InvalidArgument,
        ),
    ];
    for (cmd, kind) in cases {
        assert_eq!(err_kind(&mut st, cmd.clone()), kind, "{cmd:?}");
    }
    // An empty directory may be replaced by a directory.
    ok(&mut st, rename_at_cmd(a, "full", a, "empty", false, false));
    assert_eq!(names(&st, "/a"), ["empty", "h"]);
}

#[test]
fn rename_at_exchange_swaps_entries() {
    let mut st = fs();
    let a = mkdir(&mut st, "/a").inode;
    let b = mkdir(&mut st, "/b").inode;
    let d = mkdir(&mut st, "/a/d").inode;
    mkdir(&mut st, "/a/d/inner");
    let f = create(&mut st, "/b/f").inode;
    // A directory and a file swap places across parents.
    let resp = ok(&mut st, rename_at_cmd(a, "d", b, "f", false, true));
    assert_eq!(removed(resp), (vec![], vec![]));
    assert_eq!(st.lookup(&p("/a/d")).unwrap().inode, f);
    assert_eq!(st.lookup(&p("/b/f")).unwrap().inode, d);
    assert_eq!(
        st.lookup(&p("/b/f/inner")).unwrap().file_type,
        FileType::Directory
    );
    assert_eq!(st.parent_of(d), Some(b));
    assert_eq!(st.path_of(f).unwrap().as_str(), "/a/d");
    assert_eq!(
        (st.attr(a).unwrap().nlink, st.attr(b).unwrap().nlink),
        (2, 3)
    );
    assert_eq!(
        (st.attr(f).unwrap().ctime_ns, st.attr(d).unwrap().ctime_ns),
        (T0 + 60, T0 + 60)
    );
    // Within one directory too; the target must exist.
    create(&mut st, "/a/x");
    ok(&mut st, rename_at_cmd(a, "x", a, "d", false, true));
    assert_eq!(st.lookup(&p("/a/x")).unwrap().inode, f);
    assert_eq!(
        err_kind(&mut st, rename_at_cmd(a, "x", a, "nope", false, true)),
        ErrorKind::NotFound
    );
    // A directory cannot be swapped with an entry inside itself.
    assert_eq!(
        err_kind(&mut st, rename_at_cmd(b, "f", d, "inner", false, true)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err_kind(&mut st, rename_at_cmd(d, "inner", b, "f", false, true)),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn set_attr_changes_what_it_is_given() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    let chunks = write(&mut st, f, 3 * CHUNK);
    let before = st.attr(f).unwrap();
    // Nothing given: nothing changes, not even ctime.
    let MetaResponse::Truncated { attr, freed } = ok(&mut st, setattr_cmd(f)) else {
        panic!()
    };
    assert_eq!((attr, freed), (before.clone(), vec![]));
    let mut cmd = setattr_cmd(f);
    if let MetaCommand::SetAttr {
        mode,
        uid,
        gid,
        atime_ns,
        mtime_ns,
        ..
    } = &mut cmd
    {
        (*mode, *uid, *gid) = (Some(0o104755), Some(7), Some(8));
        (*atime_ns, *mtime_ns) = (Some(-5), Some(42));
    }
    let MetaResponse::Truncated { attr, .. } = ok(&mut st, cmd) else {
        panic!()
    };
    assert_eq!((attr.mode, attr.uid, attr.gid), (0o4755, 7, 8));
    assert_eq!(
        (attr.atime_ns, attr.mtime_ns, attr.ctime_ns),
        (-5, 42, T0 + 70)
    );
    assert_eq!(attr.size, 3 * CHUNK);
    // A size acts as Truncate; an explicit mtime wins over the truncate's.
    let mut cmd = setattr_cmd(f);
    if let MetaCommand::SetAttr { size, mtime_ns, .. } = &mut cmd {
        (*size, *mtime_ns) = (Some(CHUNK), Some(1));
    }
    let MetaResponse::Truncated { attr, freed } = ok(&mut st, cmd) else {
        panic!()
    };
    assert_eq!(freed, [(chunks[1], 1), (chunks[2], 1)]);
    assert_eq!((attr.size, attr.chunk_count, attr.mtime_ns), (CHUNK, 1, 1));
    // Errors.
    let sized = |inode, s| {
        let mut cmd = setattr_cmd(inode);
        if let MetaCommand::SetAttr { size, .. } = &mut cmd {
            *size = Some(s);
        }
        cmd
    };
    assert_eq!(
        err_kind(&mut st, sized(ROOT_INODE, 0)),
        ErrorKind::IsADirectory
    );
    assert_eq!(err_kind(&mut st, sized(99, 0)), ErrorKind::NotFound);
    assert_eq!(
        err_kind(&mut st, sized(f, MAX_FILE_SIZE + 1)),
        ErrorKind::InvalidArgument
    );
    let MetaResponse::Attr(l) = ok(&mut st, symlink_cmd(ROOT_INODE, "l", "f", T0)) else {
        panic!()
    };
    assert_eq!(
        err_kind(&mut st, sized(l.inode, 0)),
        ErrorKind::InvalidArgument
    );
    // Directories and symlinks take mode and owner changes.
    let mut cmd = setattr_cmd(ROOT_INODE);
    if let MetaCommand::SetAttr { mode, .. } = &mut cmd {
        *mode = Some(0o1777);
    }
    ok(&mut st, cmd);
    assert_eq!(st.attr(ROOT_INODE).unwrap().mode, 0o1777);
}

#[test]
fn readdir_pages_like_list() {
    let mut st = fs();
    let d = mkdir(&mut st, "/d").inode;
    for name in ["c", "a", "b"] {
        create_at(&mut st, d, name);
    }
    let (page, more) = st.readdir(d, "", 2).unwrap();
    assert_eq!(
        page.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(more);
    assert_eq!(
        st.readdir(d, "b", 0).unwrap(),
        st.list(&p("/d"), "b", 0).unwrap()
    );
    let f = st.lookup(&p("/d/a")).unwrap().inode;
    assert_eq!(
        st.readdir(f, "", 0).unwrap_err().kind(),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        st.readdir(99, "", 0).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        st.lookup_at(d, "zz").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        st.lookup_at(f, "zz").unwrap_err().kind(),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        MetaState::new().readdir(1, "", 0),
        Err(MetaError::NotFormatted)
    );
}
