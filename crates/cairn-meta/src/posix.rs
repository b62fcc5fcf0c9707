//! Inode-based POSIX commands, the ones a FUSE mount issues: MkdirAt, CreateAt,
//! SymlinkAt, LinkAt, UnlinkAt, RmdirAt and SetAttr (RenameAt is in `rename_at.rs`).
//!
//! They address entries as `(parent inode, name)`; names are checked with
//! [`cairn_proto::path::validate_name`] (a bad one is `InvalidPath`). Error subjects read
//! "inode P/name" or "inode N" (paths would cost a walk up the tree on every error).
//! Like every handler, each checks everything before changing anything.
//!
//! Invariants kept (with `entries.rs`): nlink of a file or symlink = its names, of a
//! directory = 2 + subdirectories; a symlink's size is its target's length; hard links are
//! never made to directories.

use crate::node::Inode;
use crate::state::MetaState;
use crate::{
    Attr, InodeId, MAX_FILE_SIZE, MAX_LINKS, MAX_SYMLINK_TARGET, MODE_MASK, MetaError,
    MetaResponse, SessionId,
};

/// The fields of [`crate::MetaCommand::SetAttr`].
pub(crate) struct SetAttrReq {
    pub inode: InodeId,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime_ns: Option<i64>,
    pub mtime_ns: Option<i64>,
    pub session: Option<SessionId>,
    pub now_ns: i64,
}

/// "inode P/name", the subject of errors about an entry.
pub(crate) fn at(parent: InodeId, name: &str) -> String {
    format!("inode {parent}/{name}")
}

impl MetaState {
    /// The inode named `name` in directory `parent`: `InvalidPath` for a bad name,
    /// `NotFound` / `NotADirectory` for a bad parent, `NotFound` for a missing entry.
    pub(crate) fn entry(&self, parent: InodeId, name: &str) -> Result<InodeId, MetaError> {
        self.find_entry(parent, name)?
            .ok_or_else(|| MetaError::NotFound(at(parent, name)))
    }

    /// The inode named `name` in directory `parent`, if any; errors as for `entry`.
    pub(crate) fn find_entry(
        &self,
        parent: InodeId,
        name: &str,
    ) -> Result<Option<InodeId>, MetaError> {
        cairn_proto::path::validate_name(name).map_err(|e| MetaError::bad_name(name, e))?;
        Ok(self.live_dir(parent)?.entries.get(name).copied())
    }

    /// Checks that `name` is valid and free in directory `parent`.
    pub(crate) fn check_free(&self, parent: InodeId, name: &str) -> Result<(), MetaError> {
        match self.find_entry(parent, name)? {
            Some(_) => Err(MetaError::AlreadyExists(at(parent, name))),
            None => Ok(()),
        }
    }

    /// Inserts a new inode under a free `name` of `parent` and answers its attributes.
    pub(crate) fn add_new(
        &mut self,
        parent: InodeId,
        name: &str,
        inode: Inode,
        now_ns: i64,
    ) -> Attr {
        let id = self.alloc_inode_id();
        self.inodes.insert(id, inode);
        self.link_entry(parent, name, id, now_ns);
        self.node(id).attr(id)
    }

    pub(crate) fn mkdir_at(
        &mut self,
        parent: InodeId,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        self.check_free(parent, name)?;
        self.counts.directories += 1;
        let dir = Inode::new_dir(parent, mode, uid, gid, now_ns);
        Ok(MetaResponse::Attr(self.add_new(parent, name, dir, now_ns)))
    }

    #[allow(clippy::too_many_arguments)] // mirrors the fields of MetaCommand::CreateAt
    pub(crate) fn create_at(
        &mut self,
        parent: InodeId,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        exclusive: bool,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        if let Some(existing) = self.find_entry(parent, name)? {
            let node = self.node(existing);
            if node.is_dir() {
                return Err(MetaError::IsADirectory(at(parent, name)));
            }
            if exclusive || node.as_file().is_none() {
                return Err(MetaError::AlreadyExists(at(parent, name)));
            }
            return Ok(MetaResponse::Created {
                attr: node.attr(existing),
                freed: Vec::new(),
            });
        }
        let goal = self.config_default_goal();
        self.counts.files += 1;
        let file = Inode::new_file(parent, mode, uid, gid, goal, now_ns);
        let attr = self.add_new(parent, name, file, now_ns);
        Ok(MetaResponse::Created {
            attr,
            freed: Vec::new(),
        })
    }

    pub(crate) fn symlink_at(
        &mut self,
        parent: InodeId,
        name: &str,
        target: &str,
        uid: u32,
        gid: u32,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        if target.is_empty() || target.len() > MAX_SYMLINK_TARGET || target.contains('\0') {
            return Err(MetaError::invalid(
                "symlink target",
                "must be 1 to 4096 bytes without NUL",
            ));
        }
        self.check_free(parent, name)?;
        self.counts.symlinks += 1;
        let link = Inode::new_symlink(parent, target, uid, gid, now_ns);
        Ok(MetaResponse::Attr(self.add_new(parent, name, link, now_ns)))
    }

    pub(crate) fn link_at(
        &mut self,
        inode: InodeId,
        new_parent: InodeId,
        new_name: &str,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        let node = self.live(inode)?;
        if node.is_dir() {
            return Err(MetaError::PermissionDenied(format!(
                "hard link to directory inode {inode}"
            )));
        }
        if node.nlink >= MAX_LINKS {
            return Err(MetaError::invalid(
                format_args!("inode {inode}"),
                "has too many links",
            ));
        }
        self.check_free(new_parent, new_name)?;
        let node = self.node_mut(inode);
        node.nlink += 1;
        node.ctime_ns = now_ns;
        self.link_entry(new_parent, new_name, inode, now_ns);
        Ok(MetaResponse::Attr(self.node(inode).attr(inode)))
    }

    pub(crate) fn unlink_at(
        &mut self,
        parent: InodeId,
        name: &str,
        session: Option<SessionId>,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        let child = self.entry(parent, name)?;
        if self.node(child).is_dir() {
            return Err(MetaError::IsADirectory(at(parent, name)));
        }
        self.check_write(child, session)?;
        Ok(self.remove_entry(parent, name, now_ns))
    }

    pub(crate) fn rmdir_at(
        &mut self,
        parent: InodeId,
        name: &str,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        let child = self.entry(parent, name)?;
        match self.node(child).as_dir() {
            None => return Err(MetaError::NotADirectory(at(parent, name))),
            Some(d) if !d.entries.is_empty() => {
                return Err(MetaError::NotEmpty(at(parent, name)));
            }
            Some(_) => {}
        }
        Ok(self.remove_entry(parent, name, now_ns))
    }

    /// Removes entry `name` of `parent` (checked by the caller) and drops what goes with it.
    pub(crate) fn remove_entry(
        &mut self,
        parent: InodeId,
        name: &str,
        now_ns: i64,
    ) -> MetaResponse {
        let (mut freed, mut dropped) = (Vec::new(), Vec::new());
        let child = self.unlink_entry(parent, name, now_ns);
        self.drop_subtree(child, now_ns, &mut freed, &mut dropped);
        freed.sort_unstable();
        MetaResponse::Removed { freed, dropped }
    }

    pub(crate) fn set_attr(&mut self, req: &SetAttrReq) -> Result<MetaResponse, MetaError> {
        let inode = req.inode;
        self.live(inode)?;
        if let Some(size) = req.size {
            self.file(inode)?;
            if size > MAX_FILE_SIZE {
                return Err(MetaError::invalid(
                    format_args!("size {size}"),
                    "is past the largest file size (2^60 bytes)",
                ));
            }
            self.check_write(inode, req.session)?;
        }
        let freed = match req.size {
            Some(size) => self.resize(inode, size, req.now_ns),
            None => Vec::new(),
        };
        let node = self.node_mut(inode);
        if let Some(mode) = req.mode {
            node.mode = mode & MODE_MASK;
        }
        if let Some(uid) = req.uid {
            node.uid = uid;
        }
        if let Some(gid) = req.gid {
            node.gid = gid;
        }
        if let Some(atime) = req.atime_ns {
            node.atime_ns = atime;
        }
        if let Some(mtime) = req.mtime_ns {
            node.mtime_ns = mtime;
        }
        let changed = req.mode.is_some()
            || req.uid.is_some()
            || req.gid.is_some()
            || req.size.is_some()
            || req.atime_ns.is_some()
            || req.mtime_ns.is_some();
        if changed {
            node.ctime_ns = req.now_ns;
        }
        Ok(MetaResponse::Truncated {
            attr: node.attr(inode),
            freed,
        })
    }
}
