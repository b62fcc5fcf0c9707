//! Special files: FIFOs, sockets, character and block devices (`MknodAt`).
//!
//! They hold no data, so they are stored as empty file inodes that carry their kind and
//! device number in the reserved extended attribute [`SPECIAL_XATTR`], set in the same
//! command that creates the inode (so a special node is never seen without its kind).
//! This keeps the inode record, [`crate::FileType`] and [`crate::Attr`] (and so every
//! persisted format) unchanged; the master's POSIX service reports the kind, hides the
//! reserved attribute and refuses to change it.
//!
//! Invariant: the value of [`SPECIAL_XATTR`] is exactly 5 bytes, the kind's tag then the
//! device number (u32 little-endian), and only inodes created by `MknodAt` have it.

use serde::{Deserialize, Serialize};

use crate::node::Inode;
use crate::state::MetaState;
use crate::{InodeId, MetaError, MetaResponse};

/// Name of the extended attribute that marks a special node; reserved (clients of the
/// POSIX service can neither see nor change it).
pub const SPECIAL_XATTR: &str = "cairn.special";

/// The kind of a special node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialKind {
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl SpecialKind {
    fn tag(self) -> u8 {
        match self {
            SpecialKind::Fifo => 1,
            SpecialKind::Socket => 2,
            SpecialKind::CharDevice => 3,
            SpecialKind::BlockDevice => 4,
        }
    }

    fn from_tag(tag: u8) -> Option<SpecialKind> {
        Some(match tag {
            1 => SpecialKind::Fifo,
            2 => SpecialKind::Socket,
            3 => SpecialKind::CharDevice,
            4 => SpecialKind::BlockDevice,
            _ => return None,
        })
    }
}

/// The fields of [`crate::MetaCommand::MknodAt`].
pub(crate) struct MknodReq<'a> {
    pub parent: InodeId,
    pub name: &'a str,
    pub kind: SpecialKind,
    pub rdev: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub now_ns: i64,
}

fn encode(kind: SpecialKind, rdev: u32) -> Box<[u8]> {
    let mut v = Vec::with_capacity(5);
    v.push(kind.tag());
    v.extend_from_slice(&rdev.to_le_bytes());
    v.into_boxed_slice()
}

impl MetaState {
    pub(crate) fn mknod_at(&mut self, r: &MknodReq<'_>) -> Result<MetaResponse, MetaError> {
        self.check_free(r.parent, r.name)?;
        let goal = self.config_default_goal();
        self.counts.files += 1;
        let node = Inode::new_file(r.parent, r.mode, r.uid, r.gid, goal, r.now_ns);
        let attr = self.add_new(r.parent, r.name, node, r.now_ns);
        self.xattrs
            .entry(attr.inode)
            .or_default()
            .insert(SPECIAL_XATTR.into(), encode(r.kind, r.rdev));
        Ok(MetaResponse::Attr(attr))
    }

    /// Kind and device number of a special node; `None` for every other inode.
    pub fn special(&self, inode: InodeId) -> Option<(SpecialKind, u32)> {
        let v = self.xattrs.get(&inode)?.get(SPECIAL_XATTR)?;
        let (&tag, rdev) = v.split_first()?;
        let rdev: [u8; 4] = rdev.try_into().ok()?;
        Some((SpecialKind::from_tag(tag)?, u32::from_le_bytes(rdev)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileType, MetaCommand, ROOT_INODE};

    fn formatted() -> MetaState {
        let mut st = MetaState::new();
        let fmt = MetaCommand::Format {
            chunk_size: 1 << 20,
            default_goal: 2,
            lease_key: [0; 32],
            now_ns: 1,
        };
        st.apply(None, &fmt).expect("format");
        st
    }

    #[test]
    fn mknod_creates_a_marked_empty_file() {
        let mut st = formatted();
        let cmd = MetaCommand::MknodAt {
            parent: ROOT_INODE,
            name: "dev".into(),
            kind: SpecialKind::CharDevice,
            rdev: 0x0103,
            mode: 0o620,
            uid: 7,
            gid: 8,
            now_ns: 5,
        };
        let MetaResponse::Attr(a) = st.apply(None, &cmd).expect("mknod") else {
            panic!("unexpected response");
        };
        assert_eq!(
            (a.file_type, a.size, a.mode, a.uid, a.gid),
            (FileType::File, 0, 0o620, 7, 8)
        );
        assert_eq!(st.special(a.inode), Some((SpecialKind::CharDevice, 0x0103)));
        assert_eq!(st.special(ROOT_INODE), None);
        // The name is taken now.
        assert!(matches!(
            st.apply(None, &cmd),
            Err(MetaError::AlreadyExists(_))
        ));
        st.check_invariants().expect("invariants");
    }
}
