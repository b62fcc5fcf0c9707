//! File requests: `create`, `open`, `read`, `write`, `flush`, `release` and `fsync`,
//! each handed to a task on the mount's runtime (`data.rs` does the work). A `close`
//! with nothing buffered and no lock to drop is answered at once, without a task.

use std::ffi::OsStr;

use fuser::{
    FileHandle, FopenFlags, INodeNo, LockOwner, OpenFlags, ReplyCreate, ReplyData, ReplyEmpty,
    ReplyOpen, ReplyWrite, Request,
};

use crate::fs::{CairnFs, GEN, e};
use crate::namespace::new_node;

impl CairnFs {
    pub(crate) fn open_op(&self, ino: INodeNo, reply: ReplyOpen) {
        spawn!(
            self,
            reply,
            |core| async move { core.open_file(ino.0).await.map_err(e) },
            |v| {
                let (fh, keep) = v;
                let flags = if keep {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags)
            }
        );
    }

    pub(crate) fn read_op(&self, fh: FileHandle, offset: u64, size: u32, reply: ReplyData) {
        spawn!(
            self,
            reply,
            |core| async move { core.read(fh.0, offset, size).await.map_err(e) },
            |b| reply.data(&b)
        );
    }

    pub(crate) fn write_op(
        &self,
        ino: INodeNo,
        offset: u64,
        data: &[u8],
        flags: OpenFlags,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        let append = flags.0 & libc::O_APPEND != 0;
        spawn!(
            self,
            reply,
            |core| async move { core.write(ino.0, offset, &data, append).await.map_err(e) },
            |n| reply.written(n)
        );
    }

    pub(crate) fn flush_op(&self, ino: INodeNo, lock_owner: LockOwner, reply: ReplyEmpty) {
        if self.core.flush_is_noop(ino.0, lock_owner.0) {
            // Nothing to send or unlock (a reader's close): no task switch for it.
            return reply.ok();
        }
        spawn!(
            self,
            reply,
            |core| async move { core.flush(ino.0, lock_owner.0).await.map_err(e) },
            |_v| reply.ok()
        );
    }

    pub(crate) fn release_op(
        &self,
        fh: FileHandle,
        lock_owner: Option<LockOwner>,
        reply: ReplyEmpty,
    ) {
        spawn!(
            self,
            reply,
            |core| async move { core.release(fh.0, lock_owner.map(|o| o.0)).await.map_err(e) },
            |_v| reply.ok()
        );
    }

    pub(crate) fn fsync_op(&self, ino: INodeNo, reply: ReplyEmpty) {
        spawn!(
            self,
            reply,
            |core| async move { core.flush_inode(ino.0).await.map_err(e) },
            |_v| reply.ok()
        );
    }

    pub(crate) fn create_op(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name!(name, reply);
        let n = new_node(mode, req.uid(), req.gid());
        let exclusive = flags & libc::O_EXCL != 0;
        let truncate = flags & libc::O_TRUNC != 0;
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        spawn!(
            self,
            reply,
            |core| async move {
                core.create(parent.0, &name, n, exclusive, truncate, write)
                    .await
                    .map_err(e)
            },
            |v| {
                let (node, fh) = v;
                reply.created(
                    &core.entry_ttl(),
                    &core.kattr(&node),
                    GEN,
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            }
        );
    }
}
