//! Unit tests of symlinks, hard links and extended attributes. Every failing command also
//! checks that the state is unchanged.

mod common;

use cairn_meta::*;
use common::*;

fn symlink(st: &mut MetaState, parent: InodeId, name: &str, target: &str) -> Attr {
    match ok(st, symlink_cmd(parent, name, target, T0 + 3)) {
        MetaResponse::Attr(a) => a,
        other => panic!("symlink answered {other:?}"),
    }
}

#[test]
fn symlinks_are_stored_and_never_followed() {
    let mut st = fs();
    mkdir(&mut st, "/d");
    let l = symlink(&mut st, ROOT_INODE, "l", "/d");
    assert_eq!(
        (
            l.file_type,
            l.size,
            l.mode,
            l.nlink,
            l.uid,
            l.goal,
            l.chunk_count
        ),
        (FileType::Symlink, 2, 0o777, 1, 10, 0, 0)
    );
    assert_eq!(st.readlink(l.inode).unwrap(), "/d");
    assert_eq!(
        st.readlink(ROOT_INODE).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(st.readlink(99).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(st.lookup(&p("/l")).unwrap(), l);
    assert_eq!(st.totals().symlinks, 1);
    // Paths through a symlink are not directories.
    assert_eq!(
        st.lookup(&p("/l/x")).unwrap_err().kind(),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        err_kind(&mut st, create_cmd("/l/x", false, T0)),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        err_kind(&mut st, mkdir_cmd("/l/x", true, T0)),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        err_kind(&mut st, mkdir_cmd("/l", false, T0)),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        err_kind(&mut st, create_cmd("/l", true, T0)),
        ErrorKind::AlreadyExists
    );
    let alloc = MetaCommand::AllocChunk {
        inode: l.inode,
        index: 0,
    };
    assert_eq!(err_kind(&mut st, alloc), ErrorKind::InvalidArgument);
    assert_eq!(
        st.file_chunks(l.inode, 0, 0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Target rules.
    for target in [String::new(), "x".repeat(4097), "a\0b".to_string()] {
        let e = err_kind(&mut st, symlink_cmd(ROOT_INODE, "m", &target, T0));
        assert_eq!(e, ErrorKind::InvalidArgument);
    }
    let long = symlink(&mut st, ROOT_INODE, "long", &"x".repeat(4096));
    assert_eq!(long.size, 4096);
    assert_eq!(
        err_kind(&mut st, symlink_cmd(ROOT_INODE, "l", "t", T0)),
        ErrorKind::AlreadyExists
    );
    // Symlinks move, get replaced and go like files.
    ok(&mut st, rename_cmd("/l", "/d/l", false, T0));
    assert_eq!(st.readlink(l.inode).unwrap(), "/d");
    ok(&mut st, rename_cmd("/long", "/d/l", false, T0));
    assert_eq!(st.totals().symlinks, 1);
    ok(&mut st, delete_cmd("/d", true, T0));
    assert_eq!(
        st.totals(),
        Totals {
            directories: 1,
            ..Totals::default()
        }
    );
}

#[test]
fn hard_links_count_names_and_free_with_the_last() {
    let mut st = fs();
    let a = mkdir(&mut st, "/a").inode;
    let b = mkdir(&mut st, "/b").inode;
    let f = create(&mut st, "/a/f").inode;
    let chunks = write(&mut st, f, 2 * CHUNK);
    let MetaResponse::Attr(attr) = ok(&mut st, link_cmd(f, b, "g", T0 + 7)) else {
        panic!()
    };
    assert_eq!((attr.inode, attr.nlink, attr.ctime_ns), (f, 2, T0 + 7));
    ok(&mut st, link_cmd(f, a, "f2", T0 + 8));
    assert_eq!(st.lookup(&p("/b/g")).unwrap().nlink, 3);
    assert_eq!(st.totals().files, 1);
    assert_eq!(st.totals().bytes, 2 * CHUNK);
    // Errors.
    assert_eq!(
        err_kind(&mut st, link_cmd(a, b, "x", T0)),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        err_kind(&mut st, link_cmd(f, b, "g", T0)),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        err_kind(&mut st, link_cmd(99, b, "x", T0)),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(&mut st, link_cmd(f, f, "x", T0)),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        err_kind(&mut st, link_cmd(f, b, "", T0)),
        ErrorKind::InvalidPath
    );
    // Removing the first name keeps the inode reachable under another.
    let (freed, _) = removed(ok(&mut st, unlink_cmd(a, "f", None)));
    assert!(freed.is_empty());
    let left = st.attr(f).unwrap();
    assert_eq!((left.nlink, left.ctime_ns), (2, T0 + 50));
    assert!(["/a/f2", "/b/g"].contains(&st.path_of(f).unwrap().as_str()));
    // Deleting the directory holding one name, then renaming the other.
    ok(&mut st, delete_cmd("/a", true, T0));
    assert_eq!(st.path_of(f).unwrap().as_str(), "/b/g");
    ok(&mut st, rename_cmd("/b/g", "/h", false, T0));
    assert_eq!(st.path_of(f).unwrap().as_str(), "/h");
    assert_eq!(st.lookup(&p("/h")).unwrap().nlink, 1);
    // Two names in one directory; renaming one onto the other does nothing.
    ok(&mut st, link_cmd(f, ROOT_INODE, "h2", T0));
    assert_eq!(
        freed_of(ok(&mut st, rename_cmd("/h", "/h2", false, T0))),
        vec![]
    );
    assert_eq!(names(&st, "/"), ["b", "h", "h2"]);
    // The last name frees the chunks.
    removed(ok(&mut st, unlink_cmd(ROOT_INODE, "h", None)));
    let (freed, _) = removed(ok(&mut st, unlink_cmd(ROOT_INODE, "h2", None)));
    assert_eq!(freed, [(chunks[0], 1), (chunks[1], 1)]);
    assert_eq!(st.totals().files, 0);
    assert_eq!(st.attr(f).unwrap_err().kind(), ErrorKind::NotFound);
}

fn freed_of(resp: MetaResponse) -> Vec<(ChunkId, u64)> {
    freed(resp)
}

#[test]
fn hard_links_to_symlinks_and_replacing_a_linked_file() {
    let mut st = fs();
    let l = symlink(&mut st, ROOT_INODE, "l", "target");
    ok(&mut st, link_cmd(l.inode, ROOT_INODE, "l2", T0));
    assert_eq!(st.lookup(&p("/l2")).unwrap().nlink, 2);
    let f = create(&mut st, "/f").inode;
    let chunks = write(&mut st, f, 10);
    ok(&mut st, link_cmd(f, ROOT_INODE, "f2", T0));
    // Replacing one name of a linked file frees nothing.
    create(&mut st, "/x");
    assert_eq!(
        freed_of(ok(&mut st, rename_cmd("/x", "/f", false, T0))),
        vec![]
    );
    assert_eq!(st.attr(f).unwrap().nlink, 1);
    let (freed, _) = removed(ok(
        &mut st,
        rename_at_cmd(ROOT_INODE, "l", ROOT_INODE, "f2", false, false),
    ));
    assert_eq!(freed, [(chunks[0], 1)]);
    assert_eq!(st.lookup(&p("/f2")).unwrap().nlink, 2);
    // Exchanging two names of one inode does nothing.
    ok(
        &mut st,
        rename_at_cmd(ROOT_INODE, "f2", ROOT_INODE, "l2", false, true),
    );
    assert_eq!(st.totals().symlinks, 1);
}

#[test]
fn link_count_is_bounded() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    for i in 1..MAX_LINKS {
        st.apply(None, &link_cmd(f, ROOT_INODE, &format!("n{i}"), T0))
            .unwrap();
    }
    assert_eq!(st.attr(f).unwrap().nlink, MAX_LINKS);
    assert_eq!(
        err_kind(&mut st, link_cmd(f, ROOT_INODE, "last", T0)),
        ErrorKind::InvalidArgument
    );
}

fn set_xattr(inode: InodeId, name: &str, value: &[u8], mode: XattrMode) -> MetaCommand {
    MetaCommand::SetXattr {
        inode,
        name: name.to_string(),
        value: value.to_vec(),
        mode,
        now_ns: T0 + 80,
    }
}

fn remove_xattr(inode: InodeId, name: &str) -> MetaCommand {
    MetaCommand::RemoveXattr {
        inode,
        name: name.to_string(),
        now_ns: T0 + 90,
    }
}

#[test]
fn xattrs_follow_their_modes() {
    let mut st = fs();
    let f = create(&mut st, "/f").inode;
    assert_eq!(st.list_xattr(f).unwrap(), Vec::<String>::new());
    ok(&mut st, set_xattr(f, "user.b", b"1", XattrMode::CreateOnly));
    assert_eq!(st.attr(f).unwrap().ctime_ns, T0 + 80);
    ok(&mut st, set_xattr(f, "user.a", b"", XattrMode::Any));
    let e = err(&mut st, set_xattr(f, "user.b", b"2", XattrMode::CreateOnly));
    assert_eq!(e, MetaError::AlreadyExists(format!("inode {f}: user.b")));
    let e = err(
        &mut st,
        set_xattr(f, "user.c", b"2", XattrMode::ReplaceOnly),
    );
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            ErrorKind::NotFound,
            format!("inode {f}: user.c: no such attribute")
        )
    );
    assert!(matches!(e, MetaError::NoAttribute(_)));
    ok(
        &mut st,
        set_xattr(f, "user.b", b"22", XattrMode::ReplaceOnly),
    );
    assert_eq!(st.get_xattr(f, "user.b").unwrap(), b"22");
    assert_eq!(st.get_xattr(f, "user.a").unwrap(), b"");
    assert!(matches!(
        st.get_xattr(f, "user.z"),
        Err(MetaError::NoAttribute(_))
    ));
    assert_eq!(st.list_xattr(f).unwrap(), ["user.a", "user.b"]);
    ok(&mut st, remove_xattr(f, "user.a"));
    assert_eq!(st.attr(f).unwrap().ctime_ns, T0 + 90);
    assert!(matches!(
        err(&mut st, remove_xattr(f, "user.a")),
        MetaError::NoAttribute(_)
    ));
    // Directories and symlinks carry xattrs too.
    ok(
        &mut st,
        set_xattr(ROOT_INODE, "user.x", b"r", XattrMode::Any),
    );
    assert_eq!(st.list_xattr(ROOT_INODE).unwrap(), ["user.x"]);
    // Limits and unknown inodes.
    let cases = [
        (
            set_xattr(f, "", b"", XattrMode::Any),
            ErrorKind::InvalidArgument,
        ),
        (
            set_xattr(f, &"n".repeat(256), b"", XattrMode::Any),
            ErrorKind::InvalidArgument,
        ),
        (
            set_xattr(f, "a\0b", b"", XattrMode::Any),
            ErrorKind::InvalidArgument,
        ),
        (
            set_xattr(f, "big", &[0; MAX_XATTR_VALUE + 1], XattrMode::Any),
            ErrorKind::InvalidArgument,
        ),
        (
            set_xattr(99, "user.a", b"", XattrMode::Any),
            ErrorKind::NotFound,
        ),
        (remove_xattr(99, "user.a"), ErrorKind::NotFound),
        (remove_xattr(f, ""), ErrorKind::InvalidArgument),
    ];
    for (cmd, kind) in cases {
        assert_eq!(err_kind(&mut st, cmd), kind);
    }
    assert_eq!(
        st.get_xattr(99, "a").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(st.list_xattr(99).unwrap_err().kind(), ErrorKind::NotFound);
    // The per-inode total is bounded; replacing a value counts the new size only.
    for i in 0..3 {
        ok(
            &mut st,
            set_xattr(f, &format!("v{i}"), &[i; MAX_XATTR_VALUE], XattrMode::Any),
        );
    }
    ok(
        &mut st,
        set_xattr(f, "v0", &[9; MAX_XATTR_VALUE], XattrMode::Any),
    );
    let full = set_xattr(f, "v3", &[0; MAX_XATTR_VALUE], XattrMode::Any);
    assert_eq!(err_kind(&mut st, full), ErrorKind::InvalidArgument);
    // Xattrs go with the inode.
    ok(&mut st, delete_cmd("/f", false, T0));
    create(&mut st, "/f");
    st.check_invariants().unwrap();
}
