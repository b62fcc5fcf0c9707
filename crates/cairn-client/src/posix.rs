//! The POSIX view by inode, for mounts: lookups, attributes, directory pages with
//! attributes (readdirplus), creation and removal of every kind of node, renames with
//! `RENAME_NOREPLACE`/`RENAME_EXCHANGE`, extended attributes and file-system statistics.
//! Data by inode (reads, writes, truncation) and byte-range locks are in `posix_io.rs`.
//!
//! Every call goes to the master's `cairn.v1.FileSystem` service with the library's retry
//! rules (an unavailable master is retried until the deadline; mutating calls carry one
//! request id over all attempts, so a retry is applied once). Calls that a mandatory lock
//! may refuse carry the client's session.

use bytes::Bytes;
use cairn_proto::pb;
use cairn_proto::pb::file_system_client::FileSystemClient;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::{Attr, Client, Inner};
use cairn_proto::ErrorKind;
use std::sync::Arc;

/// Builds the closure `MasterConn::call_on` retries, for the POSIX service.
macro_rules! fs_rpc {
    ($method:ident, $req:expr) => {{
        let req = $req;
        move |mut c: FileSystemClient<Channel>| {
            let req = req.clone();
            async move { c.$method(req).await }
        }
    }};
}

/// What a node is beyond files, directories and symlinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialKind {
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// An inode as a mount sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub attr: Attr,
    /// Set for FIFOs, sockets and device nodes (whose `attr.file_type` is `File`).
    pub special: Option<SpecialKind>,
    /// Device number of a device node; 0 otherwise.
    pub rdev: u32,
}

impl Node {
    pub(crate) fn from_pb(n: Option<pb::Node>) -> Result<Node> {
        let n = n.ok_or_else(|| Error::new(ErrorKind::Internal, "the master sent no node"))?;
        let special = match pb::SpecialKind::try_from(n.special) {
            Ok(pb::SpecialKind::Fifo) => Some(SpecialKind::Fifo),
            Ok(pb::SpecialKind::Socket) => Some(SpecialKind::Socket),
            Ok(pb::SpecialKind::CharDevice) => Some(SpecialKind::CharDevice),
            Ok(pb::SpecialKind::BlockDevice) => Some(SpecialKind::BlockDevice),
            _ => None,
        };
        Ok(Node {
            attr: Attr::from_pb(n.attr)?,
            special,
            rdev: n.rdev,
        })
    }
}

/// A node the master may leave out of an answer (an older master, or one that is gone).
fn optional_node(n: Option<pb::Node>) -> Result<Option<Node>> {
    n.map(|n| Node::from_pb(Some(n))).transpose()
}

/// Owner and permission bits of a new node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewNode {
    /// Permission bits (`0o7777`), the umask already applied.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Attribute changes; `None` leaves one alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
}

impl SetAttr {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == SetAttr::default()
    }
}

/// A time stamp to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    /// Nanoseconds since the Unix epoch.
    At(i64),
    /// The master's clock (`UTIME_NOW`).
    Now,
}

/// How `set_xattr` treats an existing attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrFlag {
    Any,
    /// `XATTR_CREATE`: fail with `AlreadyExists` if it exists.
    Create,
    /// `XATTR_REPLACE`: answer `false` if it does not exist.
    Replace,
}

/// How `rename_at` treats the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// `RENAME_NOREPLACE`.
    pub no_replace: bool,
    /// `RENAME_EXCHANGE`.
    pub exchange: bool,
}

/// One page of a directory.
#[derive(Clone, Debug)]
pub struct DirPage {
    pub entries: Vec<(String, Node)>,
    /// More entries follow the last one.
    pub truncated: bool,
    /// The directory itself.
    pub dir: Node,
    /// Its parent (the root's is the root).
    pub parent: u64,
}

/// Capacity and inode count of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Raw bytes over live chunk servers (every replica counts).
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Replicas each byte of a new file takes.
    pub goal: u32,
    pub chunk_size: u64,
    pub inodes: u64,
}

/// The POSIX view of a cluster, by inode. Cheap to clone; shares the client's connections
/// and session.
#[derive(Clone)]
pub struct Posix {
    pub(crate) inner: Arc<Inner>,
}

impl Client {
    /// The POSIX view by inode (what a FUSE mount uses).
    pub fn posix(&self) -> Posix {
        Posix {
            inner: self.inner.clone(),
        }
    }
}

fn time_fields(t: Option<TimeSet>) -> (Option<i64>, bool) {
    match t {
        None => (None, false),
        Some(TimeSet::At(ns)) => (Some(ns), false),
        Some(TimeSet::Now) => (None, true),
    }
}

impl Posix {
    async fn node_call<F, Fut>(&self, what: &str, f: F) -> Result<Node>
    where
        F: Fn(FileSystemClient<Channel>) -> Fut,
        Fut: std::future::Future<
                Output = std::result::Result<tonic::Response<pb::NodeResponse>, tonic::Status>,
            >,
    {
        let m = &self.inner.master;
        Node::from_pb(m.call_on(what, &m.fs, f).await?.node)
    }

    fn req(&self) -> Option<pb::RequestId> {
        Some(self.inner.master.request_id())
    }

    /// The node named `name` in directory `parent`.
    pub async fn lookup_at(&self, parent: u64, name: &str) -> Result<Node> {
        let r = pb::LookupAtRequest {
            parent,
            name: name.to_string(),
        };
        self.node_call("lookup", fs_rpc!(lookup_at, r)).await
    }

    /// The node `inode`.
    pub async fn get_attr(&self, inode: u64) -> Result<Node> {
        self.node_call("getattr", fs_rpc!(get_attr, pb::GetAttrRequest { inode }))
            .await
    }

    /// Changes attributes other than the size (see `Posix::truncate` for that).
    pub async fn set_attr(&self, inode: u64, s: SetAttr) -> Result<Node> {
        let (atime_ns, atime_now) = time_fields(s.atime);
        let (mtime_ns, mtime_now) = time_fields(s.mtime);
        let r = pb::SetAttrRequest {
            req: self.req(),
            inode,
            mode: s.mode,
            uid: s.uid,
            gid: s.gid,
            size: None,
            atime_ns,
            mtime_ns,
            atime_now,
            mtime_now,
            session_id: self.inner.session_id(),
        };
        self.node_call("setattr", fs_rpc!(set_attr, r)).await
    }

    pub async fn mkdir_at(&self, parent: u64, name: &str, n: NewNode) -> Result<Node> {
        let r = pb::MkdirAtRequest {
            req: self.req(),
            parent,
            name: name.to_string(),
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
        };
        self.node_call("mkdir", fs_rpc!(mkdir_at, r)).await
    }

    /// Creates a regular file; without `exclusive` an existing file is answered as it is.
    pub async fn create_at(
        &self,
        parent: u64,
        name: &str,
        n: NewNode,
        exclusive: bool,
    ) -> Result<Node> {
        self.create_at_for(parent, name, n, exclusive, false).await
    }

    /// [`Posix::create_at`]; with `prepare_write`, keeps the lease the master answers for a
    /// new file's first chunk, so its first write needs no `PrepareWrite`. Only for a
    /// caller that still holds its data when it commits (a `Stale` commit means: write it
    /// again, then commit again).
    pub async fn create_at_for(
        &self,
        parent: u64,
        name: &str,
        n: NewNode,
        exclusive: bool,
        prepare_write: bool,
    ) -> Result<Node> {
        let r = pb::CreateAtRequest {
            req: self.req(),
            parent,
            name: name.to_string(),
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            exclusive,
            prepare_write,
        };
        let m = &self.inner.master;
        let resp = m.call_on("create", &m.fs, fs_rpc!(create_at, r)).await?;
        let node = Node::from_pb(resp.node)?;
        if let Some(first) = resp.first_write {
            self.inner.learn_chunk_size(first.chunk_size);
            self.inner.prepared.offer(node.attr.inode, first);
        }
        Ok(node)
    }

    /// Creates a FIFO, socket or device node.
    pub async fn mknod_at(
        &self,
        parent: u64,
        name: &str,
        kind: SpecialKind,
        rdev: u32,
        n: NewNode,
    ) -> Result<Node> {
        let kind = match kind {
            SpecialKind::Fifo => pb::SpecialKind::Fifo,
            SpecialKind::Socket => pb::SpecialKind::Socket,
            SpecialKind::CharDevice => pb::SpecialKind::CharDevice,
            SpecialKind::BlockDevice => pb::SpecialKind::BlockDevice,
        } as i32;
        let r = pb::MknodAtRequest {
            req: self.req(),
            parent,
            name: name.to_string(),
            kind,
            rdev,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
        };
        self.node_call("mknod", fs_rpc!(mknod_at, r)).await
    }

    pub async fn symlink_at(
        &self,
        parent: u64,
        name: &str,
        target: &str,
        n: NewNode,
    ) -> Result<Node> {
        let r = pb::SymlinkAtRequest {
            req: self.req(),
            parent,
            name: name.to_string(),
            target: target.to_string(),
            uid: n.uid,
            gid: n.gid,
        };
        self.node_call("symlink", fs_rpc!(symlink_at, r)).await
    }

    /// Adds name `new_name` in `new_parent` for `inode` (a hard link).
    pub async fn link_at(&self, inode: u64, new_parent: u64, new_name: &str) -> Result<Node> {
        let r = pb::LinkAtRequest {
            req: self.req(),
            inode,
            new_parent,
            new_name: new_name.to_string(),
        };
        self.node_call("link", fs_rpc!(link_at, r)).await
    }

    /// Removes a non-directory entry; the inode goes with its last name.
    ///
    /// Answers the parent directory as the removal left it (None if it is gone already).
    pub async fn unlink_at(&self, parent: u64, name: &str) -> Result<Option<Node>> {
        let r = pb::UnlinkAtRequest {
            req: self.req(),
            parent,
            name: name.to_string(),
            session_id: self.inner.session_id(),
        };
        let m = &self.inner.master;
        let resp = m.call_on("unlink", &m.fs, fs_rpc!(unlink_at, r)).await?;
        optional_node(resp.parent)
    }

    /// Removes an empty directory; answers its parent as the removal left it.
    pub async fn rmdir_at(&self, parent: u64, name: &str) -> Result<Option<Node>> {
        let r = pb::RmdirAtRequest {
            req: self.req(),
            parent,
            name: name.to_string(),
        };
        let m = &self.inner.master;
        let resp = m.call_on("rmdir", &m.fs, fs_rpc!(rmdir_at, r)).await?;
        optional_node(resp.parent)
    }

    /// Renames `parent/name` to `new_parent/new_name` atomically; answers both parent
    /// directories as the rename left them.
    pub async fn rename_at(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        flags: RenameFlags,
    ) -> Result<(Option<Node>, Option<Node>)> {
        let r = pb::RenameAtRequest {
            req: self.req(),
            parent,
            name: name.to_string(),
            new_parent,
            new_name: new_name.to_string(),
            no_replace: flags.no_replace,
            exchange: flags.exchange,
            session_id: self.inner.session_id(),
        };
        let m = &self.inner.master;
        let resp = m.call_on("rename", &m.fs, fs_rpc!(rename_at, r)).await?;
        Ok((optional_node(resp.parent)?, optional_node(resp.new_parent)?))
    }

    /// Entries of directory `inode` with names after `start_after`, at most `limit` (0: the
    /// master's default), each with its attributes.
    pub async fn read_dir(&self, inode: u64, start_after: &str, limit: u32) -> Result<DirPage> {
        let r = pb::ReadDirRequest {
            inode,
            start_after: start_after.to_string(),
            limit,
        };
        let m = &self.inner.master;
        let resp = m.call_on("readdir", &m.fs, fs_rpc!(read_dir, r)).await?;
        let entries = resp
            .entries
            .into_iter()
            .map(|e| Ok((e.name, Node::from_pb(e.node)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(DirPage {
            entries,
            truncated: resp.truncated,
            dir: Node::from_pb(resp.dir)?,
            parent: resp.parent,
        })
    }

    pub async fn read_link(&self, inode: u64) -> Result<String> {
        let m = &self.inner.master;
        let r = pb::ReadLinkRequest { inode };
        Ok(m.call_on("readlink", &m.fs, fs_rpc!(read_link, r))
            .await?
            .target)
    }

    /// The value of extended attribute `name`; `None` if the inode has none of that name.
    pub async fn get_xattr(&self, inode: u64, name: &str) -> Result<Option<Bytes>> {
        let m = &self.inner.master;
        let r = pb::GetXattrRequest {
            inode,
            name: name.to_string(),
        };
        let resp = m.call_on("getxattr", &m.fs, fs_rpc!(get_xattr, r)).await?;
        Ok(resp.found.then_some(resp.value))
    }

    /// Sets extended attribute `name`; `false` when `Replace` found none.
    pub async fn set_xattr(
        &self,
        inode: u64,
        name: &str,
        value: Bytes,
        flag: XattrFlag,
    ) -> Result<bool> {
        let flag = match flag {
            XattrFlag::Any => pb::XattrFlag::Any,
            XattrFlag::Create => pb::XattrFlag::Create,
            XattrFlag::Replace => pb::XattrFlag::Replace,
        } as i32;
        let r = pb::SetXattrRequest {
            req: self.req(),
            inode,
            name: name.to_string(),
            value,
            flag,
        };
        let m = &self.inner.master;
        Ok(m.call_on("setxattr", &m.fs, fs_rpc!(set_xattr, r))
            .await?
            .found)
    }

    pub async fn list_xattr(&self, inode: u64) -> Result<Vec<String>> {
        let m = &self.inner.master;
        let r = pb::ListXattrRequest { inode };
        Ok(m.call_on("listxattr", &m.fs, fs_rpc!(list_xattr, r))
            .await?
            .names)
    }

    /// Removes extended attribute `name`; `false` when there was none.
    pub async fn remove_xattr(&self, inode: u64, name: &str) -> Result<bool> {
        let r = pb::RemoveXattrRequest {
            req: self.req(),
            inode,
            name: name.to_string(),
        };
        let m = &self.inner.master;
        Ok(m.call_on("removexattr", &m.fs, fs_rpc!(remove_xattr, r))
            .await?
            .found)
    }

    pub async fn stat_fs(&self) -> Result<StatFs> {
        let m = &self.inner.master;
        let r = m
            .call_on("statfs", &m.fs, fs_rpc!(stat_fs, pb::StatFsRequest {}))
            .await?;
        Ok(StatFs {
            total_bytes: r.total_bytes,
            free_bytes: r.free_bytes,
            goal: r.goal,
            chunk_size: r.chunk_size,
            inodes: r.inodes,
        })
    }
}
