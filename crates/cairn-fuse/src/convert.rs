//! Conversions between Cairn's nodes and the kernel's view: file attributes, file types,
//! time stamps.
//!
//! Inode numbers are the master's inode ids unchanged (the FUSE root, 1, is the namespace
//! root), so they are stable across mounts and restarts and hard links share one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_client::{FileType as Kind, Node, SpecialKind};
use fuser::{FileAttr, FileType, INodeNo};

/// Block size reported in `st_blksize`: large, so tools move data in big writes that the
/// mount merges into chunk-aligned mutations anyway.
pub const BLKSIZE: u32 = 128 << 10;
/// Size reported for directories (their entry count is not a byte size).
const DIR_SIZE: u64 = 4096;

/// Nanoseconds since the epoch as a `SystemTime` (negative values before the epoch).
pub fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// A `SystemTime` as nanoseconds since the epoch, saturating at the `i64` range.
pub fn ns_of(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// The kernel's file type of a node.
pub fn file_type(n: &Node) -> FileType {
    match (n.attr.file_type, n.special) {
        (Kind::Directory, _) => FileType::Directory,
        (Kind::Symlink, _) => FileType::Symlink,
        (Kind::File, None) => FileType::RegularFile,
        (Kind::File, Some(SpecialKind::Fifo)) => FileType::NamedPipe,
        (Kind::File, Some(SpecialKind::Socket)) => FileType::Socket,
        (Kind::File, Some(SpecialKind::CharDevice)) => FileType::CharDevice,
        (Kind::File, Some(SpecialKind::BlockDevice)) => FileType::BlockDevice,
    }
}

/// The kernel's attributes of a node.
pub fn file_attr(n: &Node) -> FileAttr {
    let a = &n.attr;
    let size = match a.file_type {
        Kind::Directory => DIR_SIZE,
        _ => a.size,
    };
    FileAttr {
        ino: INodeNo(a.inode),
        size,
        blocks: size.div_ceil(512),
        atime: time_of(a.atime_ns),
        mtime: time_of(a.mtime_ns),
        ctime: time_of(a.ctime_ns),
        crtime: time_of(a.ctime_ns),
        kind: file_type(n),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: n.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The special kind `mknod` asks for in its mode's type bits; `None` for a regular file,
/// `Err` for a type mknod cannot make (directories, symlinks).
pub fn mknod_kind(mode: u32) -> Result<Option<SpecialKind>, ()> {
    match mode & libc::S_IFMT {
        0 | libc::S_IFREG => Ok(None),
        libc::S_IFIFO => Ok(Some(SpecialKind::Fifo)),
        libc::S_IFSOCK => Ok(Some(SpecialKind::Socket)),
        libc::S_IFCHR => Ok(Some(SpecialKind::CharDevice)),
        libc::S_IFBLK => Ok(Some(SpecialKind::BlockDevice)),
        _ => Err(()),
    }
}

/// A time to set, as the kernel asks for it.
pub fn time_set(t: Option<fuser::TimeOrNow>) -> Option<cairn_client::TimeSet> {
    t.map(|t| match t {
        fuser::TimeOrNow::Now => cairn_client::TimeSet::Now,
        fuser::TimeOrNow::SpecificTime(t) => cairn_client::TimeSet::At(ns_of(t)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_nanoseconds() {
        for ns in [0i64, 1, 1_700_000_000_123_456_789, -1_500_000_000] {
            assert_eq!(ns_of(time_of(ns)), ns);
        }
    }

    #[test]
    fn mknod_types() {
        assert_eq!(
            mknod_kind(libc::S_IFIFO | 0o644),
            Ok(Some(SpecialKind::Fifo))
        );
        assert_eq!(mknod_kind(libc::S_IFREG | 0o644), Ok(None));
        assert_eq!(mknod_kind(0o644), Ok(None));
        assert!(mknod_kind(libc::S_IFDIR | 0o755).is_err());
    }
}
