//! Inode records as the state stores them.
//!
//! Kept small on purpose (the master holds every inode in memory): a name is stored once,
//! as the key of its parent's entry map, never in the inode; a file's chunk slots are a
//! sparse, index-sorted vector of `(index, chunk id)` so a far-out write costs one entry,
//! not a run of holes; versions live in the chunk table only.
//!
//! Everything most inodes lack (extended attributes, locks, append reservations, the
//! directories of a hard-linked inode's further names) lives in side tables keyed by
//! inode, not here.
//!
//! Invariants: `Slot::index` strictly increases along `FileBody::slots`; `Slot::chunk` is
//! never 0; `parent` is a directory holding one of this inode's names (a directory has
//! exactly one), the root's parent is the root itself; a symlink target is 1..=4096 bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Attr, ChunkId, FileType, InodeId};

/// One inode: common attributes plus what its type adds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Inode {
    pub parent: InodeId,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub body: Body,
}

/// The type-specific part of an inode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Body {
    File(FileBody),
    Dir(DirBody),
    /// A symbolic link and its target (never followed by the state).
    Symlink(Box<str>),
}

/// A regular file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileBody {
    pub length: u64,
    pub goal: u8,
    /// Allocated slots only, sorted by index; absent indices are holes.
    pub slots: Vec<Slot>,
}

/// An allocated chunk slot of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Slot {
    pub index: u64,
    pub chunk: ChunkId,
}

/// A directory: its entries by name, in byte order (which is what listings return).
/// Names up to 24 bytes (nearly all) are stored inside the entry, not in an allocation of
/// their own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DirBody {
    pub entries: BTreeMap<compact_str::CompactString, InodeId>,
}

impl Inode {
    /// A new, empty directory under `parent` (nlink 2: its name and its own ".").
    pub fn new_dir(parent: InodeId, mode: u32, uid: u32, gid: u32, now_ns: i64) -> Inode {
        Inode::new(
            parent,
            mode,
            uid,
            gid,
            2,
            now_ns,
            Body::Dir(DirBody::default()),
        )
    }

    /// A new, empty file under `parent`.
    pub fn new_file(parent: InodeId, mode: u32, uid: u32, gid: u32, goal: u8, now: i64) -> Inode {
        let body = Body::File(FileBody {
            length: 0,
            goal,
            slots: Vec::new(),
        });
        Inode::new(parent, mode, uid, gid, 1, now, body)
    }

    /// A new symlink under `parent` (mode 0o777, as POSIX symlinks have).
    pub fn new_symlink(parent: InodeId, target: &str, uid: u32, gid: u32, now: i64) -> Inode {
        Inode::new(
            parent,
            0o777,
            uid,
            gid,
            1,
            now,
            Body::Symlink(target.into()),
        )
    }

    fn new(
        parent: InodeId,
        mode: u32,
        uid: u32,
        gid: u32,
        nlink: u32,
        now: i64,
        body: Body,
    ) -> Inode {
        Inode {
            parent,
            mode: mode & crate::MODE_MASK,
            uid,
            gid,
            nlink,
            atime_ns: now,
            mtime_ns: now,
            ctime_ns: now,
            body,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir(_))
    }

    pub fn as_dir(&self) -> Option<&DirBody> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_dir_mut(&mut self) -> Option<&mut DirBody> {
        match &mut self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_file(&self) -> Option<&FileBody> {
        match &self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_file_mut(&mut self) -> Option<&mut FileBody> {
        match &mut self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    /// Records a change of content: mtime and ctime become `now_ns`.
    pub fn touch(&mut self, now_ns: i64) {
        self.mtime_ns = now_ns;
        self.ctime_ns = now_ns;
    }

    /// The attributes callers see.
    pub fn attr(&self, inode: InodeId) -> Attr {
        let (file_type, size, goal, chunk_count) = match &self.body {
            Body::File(f) => (FileType::File, f.length, f.goal, f.slot_count()),
            Body::Dir(d) => (FileType::Directory, d.entries.len() as u64, 0, 0),
            Body::Symlink(t) => (FileType::Symlink, t.len() as u64, 0, 0),
        };
        Attr {
            inode,
            file_type,
            size,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            atime_ns: self.atime_ns,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            nlink: self.nlink,
            goal,
            chunk_count,
        }
    }
}

impl FileBody {
    /// Number of slots: last allocated index + 1, or 0.
    pub fn slot_count(&self) -> u64 {
        self.slots.last().map_or(0, |s| s.index + 1)
    }

    /// Position of the first slot with index >= `index`.
    pub fn first_at_or_after(&self, index: u64) -> usize {
        self.slots.partition_point(|s| s.index < index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Guards the per-file memory budget: an inode record must stay within 96 bytes.
    #[test]
    fn inode_stays_small() {
        assert!(
            std::mem::size_of::<Inode>() <= 96,
            "{}",
            std::mem::size_of::<Inode>()
        );
    }

    #[test]
    fn slot_count_counts_holes() {
        let mut f = FileBody {
            length: 0,
            goal: 1,
            slots: vec![],
        };
        assert_eq!(f.slot_count(), 0);
        f.slots = vec![Slot { index: 0, chunk: 5 }, Slot { index: 7, chunk: 9 }];
        assert_eq!(f.slot_count(), 8);
        assert_eq!(f.first_at_or_after(1), 1);
        assert_eq!(f.first_at_or_after(8), 2);
    }
}
