//! Inode records as the state stores them.
//!
//! Kept small on purpose (the master holds every inode in memory, 72 bytes each): a name
//! is stored once, as the key of its parent's entry map ([`crate::dir_entries`]), never in
//! the inode; a file's chunk slots and goal share 16 bytes ([`crate::slots`]), with no
//! allocation for a file of zero chunks or one chunk in slot 0, and a far-out write costs
//! one entry, not a run of holes; versions live in the chunk table only.
//!
//! Checkpoints still see the layout of before: a file body serializes as `length`, `goal`
//! and a `Vec<Slot>` of the allocated slots, a directory as a map of name to inode.
//!
//! Everything most inodes lack (extended attributes, locks, append reservations, the
//! directories of a hard-linked inode's further names) lives in side tables keyed by
//! inode, not here.
//!
//! Invariants: `Slot::index` strictly increases along `FileBody::slots`; `Slot::chunk` is
//! never 0 (a checkpoint that breaks either does not load); `parent` is a directory
//! holding one of this inode's names (a directory has exactly one), the root's parent is
//! the root itself; a symlink target is 1..=4096 bytes.

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dir_entries::DirEntries;
use crate::slots::FileSlots;
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileBody {
    pub length: u64,
    /// Allocated slots only (absent indices are holes), and the replication goal.
    pub slots: FileSlots,
}

/// How a file body was serialized before [`FileSlots`]; it must stay so.
#[derive(Deserialize)]
#[serde(rename = "FileBody")]
struct FileBodyRepr {
    length: u64,
    goal: u8,
    slots: Vec<Slot>,
}

/// Serializes as [`FileBodyRepr`] without building its vector.
struct SlotSeq<'a>(&'a FileSlots);

impl Serialize for SlotSeq<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Postcard writes the length first, and a filtered iterator does not know it.
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for slot in self.0.iter() {
            seq.serialize_element(&slot)?;
        }
        seq.end()
    }
}

impl Serialize for FileBody {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FileBody", 3)?;
        st.serialize_field("length", &self.length)?;
        st.serialize_field("goal", &self.goal())?;
        st.serialize_field("slots", &SlotSeq(&self.slots))?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for FileBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = FileBodyRepr::deserialize(d)?;
        if r.slots.iter().any(|s| s.chunk == 0)
            || r.slots.windows(2).any(|w| w[0].index >= w[1].index)
        {
            return Err(serde::de::Error::custom(
                "file slots must be sorted by index and name no chunk 0",
            ));
        }
        Ok(FileBody {
            length: r.length,
            slots: FileSlots::from_sorted(r.goal, r.slots),
        })
    }
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
    pub entries: DirEntries,
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
            slots: FileSlots::new(goal),
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
            Body::File(f) => (FileType::File, f.length, f.goal(), f.slots.slot_count()),
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
    pub fn goal(&self) -> u8 {
        self.slots.goal()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    // Guards the per-file memory budget: an inode record must stay within 72 bytes, and
    // the inode table's `Option<Inode>` must need no tag of its own.
    #[test]
    fn inode_stays_small() {
        assert!(
            std::mem::size_of::<Inode>() <= 72,
            "{}",
            std::mem::size_of::<Inode>()
        );
        assert_eq!(
            std::mem::size_of::<Option<Inode>>(),
            std::mem::size_of::<Inode>()
        );
    }

    /// The file body as it was declared before `FileSlots`.
    #[derive(Serialize, Deserialize)]
    struct OldFileBody {
        length: u64,
        goal: u8,
        slots: Vec<Slot>,
    }

    /// The directory body as it was declared before `DirEntries`.
    #[derive(Serialize)]
    struct OldDirBody {
        entries: BTreeMap<compact_str::CompactString, InodeId>,
    }

    #[test]
    fn file_body_serializes_as_before() {
        let cases: [&[(u64, u64)]; 4] = [
            &[],
            &[(0, 5)],
            &[(0, 5), (1, 6), (3, 8)],
            &[(7, 1), (1 << 50, 2)],
        ];
        for case in cases {
            let slots: Vec<Slot> = case
                .iter()
                .map(|&(index, chunk)| Slot { index, chunk })
                .collect();
            let old = OldFileBody {
                length: 12345,
                goal: 3,
                slots: slots.clone(),
            };
            let new = FileBody {
                length: 12345,
                slots: FileSlots::from_sorted(3, slots),
            };
            let bytes = postcard::to_allocvec(&old).expect("encode");
            assert_eq!(postcard::to_allocvec(&new).expect("encode"), bytes);
            let back: FileBody = postcard::from_bytes(&bytes).expect("decode");
            assert_eq!(back, new);
            assert_eq!(back.goal(), 3);
        }
        for bad in [vec![(1, 5), (1, 6)], vec![(2, 5), (1, 6)], vec![(0, 0)]] {
            let old = OldFileBody {
                length: 0,
                goal: 1,
                slots: bad
                    .iter()
                    .map(|&(index, chunk)| Slot { index, chunk })
                    .collect(),
            };
            let bytes = postcard::to_allocvec(&old).expect("encode");
            assert!(postcard::from_bytes::<FileBody>(&bytes).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dir_body_serializes_as_before() {
        let mut old = OldDirBody {
            entries: BTreeMap::new(),
        };
        let mut new = DirBody::default();
        for (i, name) in ["b", "a", "c", &"long".repeat(10)].into_iter().enumerate() {
            old.entries.insert(name.into(), i as u64 + 2);
            new.entries.insert(name.into(), i as u64 + 2);
        }
        let bytes = postcard::to_allocvec(&old).expect("encode");
        assert_eq!(postcard::to_allocvec(&new).expect("encode"), bytes);
        let back: DirBody = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, new);
    }
}
