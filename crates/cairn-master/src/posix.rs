//! The POSIX view of the namespace on the master: inode-based operations for mounts.
//!
//! Each operation turns into one `MetaCommand` (time stamps decided here, before the
//! command is logged) or one read of the state. What a command leaves behind is settled
//! exactly as for the path-based operations (`Master::settle`): freed chunks are deleted
//! from chunk servers, and lock waiters granted or dropped are woken.
//!
//! Rules added here, beyond the state machine's:
//! - a new inode in a set-group-ID directory takes the directory's group, and a new
//!   directory there inherits the set-group-ID bit (as ext4 and every POSIX file system
//!   do; the kernel leaves this to the file system);
//! - extended attribute names starting with `cairn.` are reserved: they are hidden from
//!   listings and reads, and setting or removing one is refused (`PermissionDenied`), so the
//!   marker of special nodes ([`cairn_meta::SPECIAL_XATTR`]) can never be forged or lost.

use cairn_common::time::now_ns;
use cairn_meta::{
    Attr, FileType, InodeId, MetaCommand, MetaError, MetaResponse, MetaState, RequestId,
    SpecialKind, XattrMode,
};
use cairn_proto::pb;

use crate::error::MasterError;
use crate::master::{Master, attr_to_pb};
use crate::sessions::session;

/// Prefix of extended attribute names the file system keeps for itself.
const RESERVED_XATTR_PREFIX: &str = "cairn.";
/// Set-group-ID bit.
const S_ISGID: u32 = 0o2000;
/// Largest directory page one `ReadDir` answers.
const MAX_READDIR_PAGE: usize = 10_000;

/// Who creates a new inode, and with which permission bits.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A [`pb::SetAttrRequest`] decoded.
#[derive(Clone, Debug, Default)]
pub struct SetAttrArgs {
    pub inode: InodeId,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime_ns: Option<i64>,
    pub mtime_ns: Option<i64>,
    pub atime_now: bool,
    pub mtime_now: bool,
    pub session_id: u64,
}

/// Converts a special kind to its wire form.
fn special_to_pb(kind: Option<SpecialKind>) -> pb::SpecialKind {
    match kind {
        None => pb::SpecialKind::None,
        Some(SpecialKind::Fifo) => pb::SpecialKind::Fifo,
        Some(SpecialKind::Socket) => pb::SpecialKind::Socket,
        Some(SpecialKind::CharDevice) => pb::SpecialKind::CharDevice,
        Some(SpecialKind::BlockDevice) => pb::SpecialKind::BlockDevice,
    }
}

/// Decodes a special kind from the wire (`None` for NONE or an unknown value).
pub fn special_from_pb(kind: i32) -> Option<SpecialKind> {
    match pb::SpecialKind::try_from(kind) {
        Ok(pb::SpecialKind::Fifo) => Some(SpecialKind::Fifo),
        Ok(pb::SpecialKind::Socket) => Some(SpecialKind::Socket),
        Ok(pb::SpecialKind::CharDevice) => Some(SpecialKind::CharDevice),
        Ok(pb::SpecialKind::BlockDevice) => Some(SpecialKind::BlockDevice),
        _ => None,
    }
}

/// The node of `attr` as a mount sees it (its special kind read from `meta`).
pub fn node_of(meta: &MetaState, attr: &Attr) -> pb::Node {
    let special = if attr.file_type == FileType::File {
        meta.special(attr.inode)
    } else {
        None
    };
    pb::Node {
        attr: Some(attr_to_pb(attr)),
        special: special_to_pb(special.map(|(k, _)| k)) as i32,
        rdev: special.map_or(0, |(_, rdev)| rdev),
    }
}

fn unexpected(r: MetaResponse) -> MasterError {
    MasterError::Internal(format!("unexpected response {r:?}"))
}

fn attr_of(r: &MetaResponse) -> Option<&Attr> {
    match r {
        MetaResponse::Attr(a)
        | MetaResponse::Created { attr: a, .. }
        | MetaResponse::Truncated { attr: a, .. } => Some(a),
        _ => None,
    }
}

fn reserved(name: &str) -> bool {
    name.starts_with(RESERVED_XATTR_PREFIX)
}

impl Master {
    /// Proposes `cmd`, settles what it left behind, and answers the node it names.
    async fn propose_node(
        &self,
        req: Option<RequestId>,
        cmd: MetaCommand,
    ) -> Result<pb::Node, MasterError> {
        let r = self.meta.propose(req, cmd).await?;
        self.settle(&r);
        let Some(attr) = attr_of(&r) else {
            return Err(unexpected(r));
        };
        Ok(node_of(&self.meta.read(), attr))
    }

    /// Proposes `cmd` and settles what it left behind.
    async fn propose_settled(
        &self,
        req: Option<RequestId>,
        cmd: MetaCommand,
    ) -> Result<(), MasterError> {
        let r = self.meta.propose(req, cmd).await?;
        self.settle(&r);
        Ok(())
    }

    /// The owner a new inode in `parent` gets: the set-group-ID rule applied.
    fn inherit(&self, parent: InodeId, o: Owner, dir: bool) -> Result<Owner, MasterError> {
        let p = self.meta.read().attr(parent)?;
        if p.mode & S_ISGID == 0 {
            return Ok(o);
        }
        let mode = if dir { o.mode | S_ISGID } else { o.mode };
        Ok(Owner {
            mode,
            uid: o.uid,
            gid: p.gid,
        })
    }

    pub fn fs_lookup_at(&self, parent: InodeId, name: &str) -> Result<pb::Node, MasterError> {
        let meta = self.meta.read();
        let attr = meta.lookup_at(parent, name)?;
        Ok(node_of(&meta, &attr))
    }

    pub fn fs_get_attr(&self, inode: InodeId) -> Result<pb::Node, MasterError> {
        let meta = self.meta.read();
        let attr = meta.attr(inode)?;
        Ok(node_of(&meta, &attr))
    }

    pub async fn fs_set_attr(
        &self,
        req: Option<RequestId>,
        a: SetAttrArgs,
    ) -> Result<pb::Node, MasterError> {
        let now = now_ns();
        let cmd = MetaCommand::SetAttr {
            inode: a.inode,
            mode: a.mode.map(|m| m & 0o7777),
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            atime_ns: if a.atime_now { Some(now) } else { a.atime_ns },
            mtime_ns: if a.mtime_now { Some(now) } else { a.mtime_ns },
            session: session(a.session_id),
            now_ns: now,
        };
        self.propose_node(req, cmd).await
    }

    pub async fn fs_mkdir_at(
        &self,
        req: Option<RequestId>,
        parent: InodeId,
        name: String,
        o: Owner,
    ) -> Result<pb::Node, MasterError> {
        let o = self.inherit(parent, o, true)?;
        let cmd = MetaCommand::MkdirAt {
            parent,
            name,
            mode: o.mode & 0o7777,
            uid: o.uid,
            gid: o.gid,
            now_ns: now_ns(),
        };
        self.propose_node(req, cmd).await
    }

    /// Creates a file; with `prepare_write` also places its first chunk (see
    /// `prepared.rs`) and answers a lease on it.
    pub async fn fs_create_at(
        &self,
        req: Option<RequestId>,
        parent: InodeId,
        name: String,
        o: Owner,
        exclusive: bool,
        prepare_write: bool,
    ) -> Result<(pb::Node, Option<pb::PrepareWriteResponse>), MasterError> {
        let o = self.inherit(parent, o, false)?;
        let cmd = MetaCommand::CreateAt {
            parent,
            name,
            mode: o.mode & 0o7777,
            uid: o.uid,
            gid: o.gid,
            exclusive,
            now_ns: now_ns(),
        };
        let r = self.meta.propose(req, cmd).await?;
        self.settle(&r);
        let Some(attr) = attr_of(&r) else {
            return Err(unexpected(r));
        };
        let attr = attr.clone();
        let first = if prepare_write {
            self.prepare_first_chunk(&attr).await
        } else {
            None
        };
        Ok((node_of(&self.meta.read(), &attr), first))
    }

    pub async fn fs_mknod_at(
        &self,
        req: Option<RequestId>,
        parent: InodeId,
        name: String,
        kind: SpecialKind,
        rdev: u32,
        o: Owner,
    ) -> Result<pb::Node, MasterError> {
        let o = self.inherit(parent, o, false)?;
        let cmd = MetaCommand::MknodAt {
            parent,
            name,
            kind,
            rdev,
            mode: o.mode & 0o7777,
            uid: o.uid,
            gid: o.gid,
            now_ns: now_ns(),
        };
        self.propose_node(req, cmd).await
    }

    pub async fn fs_symlink_at(
        &self,
        req: Option<RequestId>,
        parent: InodeId,
        name: String,
        target: String,
        o: Owner,
    ) -> Result<pb::Node, MasterError> {
        let o = self.inherit(parent, o, false)?;
        let cmd = MetaCommand::SymlinkAt {
            parent,
            name,
            target,
            uid: o.uid,
            gid: o.gid,
            now_ns: now_ns(),
        };
        self.propose_node(req, cmd).await
    }

    pub async fn fs_link_at(
        &self,
        req: Option<RequestId>,
        inode: InodeId,
        new_parent: InodeId,
        new_name: String,
    ) -> Result<pb::Node, MasterError> {
        let cmd = MetaCommand::LinkAt {
            inode,
            new_parent,
            new_name,
            now_ns: now_ns(),
        };
        self.propose_node(req, cmd).await
    }

    pub async fn fs_unlink_at(
        &self,
        req: Option<RequestId>,
        parent: InodeId,
        name: String,
        session_id: u64,
    ) -> Result<Option<pb::Node>, MasterError> {
        let cmd = MetaCommand::UnlinkAt {
            parent,
            name,
            session: session(session_id),
            now_ns: now_ns(),
        };
        self.propose_settled(req, cmd).await?;
        Ok(self.dir_node(parent))
    }

    pub async fn fs_rmdir_at(
        &self,
        req: Option<RequestId>,
        parent: InodeId,
        name: String,
    ) -> Result<Option<pb::Node>, MasterError> {
        let cmd = MetaCommand::RmdirAt {
            parent,
            name,
            now_ns: now_ns(),
        };
        self.propose_settled(req, cmd).await?;
        Ok(self.dir_node(parent))
    }

    pub async fn fs_rename_at(
        &self,
        req: Option<RequestId>,
        r: pb::RenameAtRequest,
    ) -> Result<pb::RenameAtResponse, MasterError> {
        let (parent, new_parent) = (r.parent, r.new_parent);
        let cmd = MetaCommand::RenameAt {
            parent: r.parent,
            name: r.name,
            new_parent: r.new_parent,
            new_name: r.new_name,
            no_replace: r.no_replace,
            exchange: r.exchange,
            session: session(r.session_id),
            now_ns: now_ns(),
        };
        self.propose_settled(req, cmd).await?;
        Ok(pb::RenameAtResponse {
            parent: self.dir_node(parent),
            new_parent: self.dir_node(new_parent),
        })
    }

    /// A directory's node as it is now, for answers that changed it (absent if it is gone:
    /// another request may have removed it since).
    fn dir_node(&self, dir: InodeId) -> Option<pb::Node> {
        let meta = self.meta.read();
        let attr = meta.attr(dir).ok()?;
        Some(node_of(&meta, &attr))
    }

    pub fn fs_read_dir(&self, r: &pb::ReadDirRequest) -> Result<pb::ReadDirResponse, MasterError> {
        let limit = match r.limit as usize {
            0 => cairn_meta::DEFAULT_LIST_LIMIT,
            n => n.min(MAX_READDIR_PAGE),
        };
        let meta = self.meta.read();
        let (page, truncated) = meta.readdir(r.inode, &r.start_after, limit)?;
        let dir = meta.attr(r.inode)?;
        let entries = page
            .iter()
            .map(|(name, attr)| pb::FsDirEntry {
                name: name.clone(),
                node: Some(node_of(&meta, attr)),
            })
            .collect();
        Ok(pb::ReadDirResponse {
            entries,
            truncated,
            dir: Some(node_of(&meta, &dir)),
            parent: meta.parent_of(r.inode).unwrap_or(r.inode),
        })
    }

    pub fn fs_read_link(&self, inode: InodeId) -> Result<String, MasterError> {
        Ok(self.meta.read().readlink(inode)?)
    }

    /// The value of an attribute; `None` when absent (or reserved).
    pub fn fs_get_xattr(&self, inode: InodeId, name: &str) -> Result<Option<Vec<u8>>, MasterError> {
        let meta = self.meta.read();
        if reserved(name) {
            meta.attr(inode)?;
            return Ok(None);
        }
        match meta.get_xattr(inode, name) {
            Ok(v) => Ok(Some(v)),
            Err(MetaError::NoAttribute(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn fs_list_xattr(&self, inode: InodeId) -> Result<Vec<String>, MasterError> {
        let mut names = self.meta.read().list_xattr(inode)?;
        names.retain(|n| !reserved(n));
        Ok(names)
    }

    /// Sets an attribute; `false` when `XATTR_REPLACE` found none (nothing changed).
    pub async fn fs_set_xattr(
        &self,
        req: Option<RequestId>,
        inode: InodeId,
        name: String,
        value: Vec<u8>,
        mode: XattrMode,
    ) -> Result<bool, MasterError> {
        if reserved(&name) {
            return Err(MetaError::PermissionDenied(format!("attribute {name}")).into());
        }
        let cmd = MetaCommand::SetXattr {
            inode,
            name,
            value,
            mode,
            now_ns: now_ns(),
        };
        match self.meta.propose(req, cmd).await {
            Ok(_) => Ok(true),
            Err(MasterError::Meta(MetaError::NoAttribute(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes an attribute; `false` when there was none.
    pub async fn fs_remove_xattr(
        &self,
        req: Option<RequestId>,
        inode: InodeId,
        name: String,
    ) -> Result<bool, MasterError> {
        if reserved(&name) {
            return Err(MetaError::PermissionDenied(format!("attribute {name}")).into());
        }
        let cmd = MetaCommand::RemoveXattr {
            inode,
            name,
            now_ns: now_ns(),
        };
        match self.meta.propose(req, cmd).await {
            Ok(_) => Ok(true),
            Err(MasterError::Meta(MetaError::NoAttribute(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Capacity of the live chunk servers and the namespace's inode count.
    pub fn fs_stat_fs(&self) -> pb::StatFsResponse {
        let (inodes, goal, chunk_size) = {
            let meta = self.meta.read();
            let t = meta.totals();
            (
                t.files + t.directories + t.symlinks,
                meta.default_goal(),
                meta.chunk_size(),
            )
        };
        let (total_bytes, free_bytes) =
            self.cluster()
                .servers
                .values()
                .filter(|s| s.alive)
                .fold((0u64, 0u64), |(t, f), s| {
                    (
                        t.saturating_add(s.capacity.total_bytes),
                        f.saturating_add(s.capacity.free_bytes),
                    )
                });
        pb::StatFsResponse {
            total_bytes,
            free_bytes,
            goal: u32::from(goal),
            chunk_size,
            inodes,
        }
    }
}
