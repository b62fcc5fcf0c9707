//! The `fuser::Filesystem` implementation: a thin adapter. Each request is handed to a
//! task on the mount's tokio runtime, which answers the kernel when the work is done, so
//! slow requests (a flush, a lock wait) never hold up others; errors become errnos here
//! and nowhere else. Directory listing and `statfs` are served in `dir_ops.rs`; extended
//! attributes, locks and `fallocate` in `xattr_lock_ops.rs`; file requests in `file_ops.rs`.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use cairn_client::{RenameFlags as Flags, SetAttr};
use fuser::{
    BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow,
};
use tokio::runtime::Handle;

use crate::convert::{mknod_kind, time_set};
use crate::core::Core;
use crate::errno::errno;
use crate::misc::DirStream;
use crate::namespace::{AttrChange, new_node};

/// Generation of every inode: inode ids are never reused.
pub(crate) const GEN: Generation = Generation(0);

/// The file system the kernel talks to.
pub struct CairnFs {
    pub core: Arc<Core>,
    pub rt: Handle,
    dirs: std::sync::Mutex<std::collections::HashMap<u64, Arc<tokio::sync::Mutex<DirStream>>>>,
    next_dir: std::sync::atomic::AtomicU64,
}

impl CairnFs {
    pub fn new(core: Arc<Core>, rt: Handle) -> CairnFs {
        CairnFs {
            core,
            rt,
            dirs: Default::default(),
            next_dir: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub(crate) fn dir(&self, fh: u64) -> Option<Arc<tokio::sync::Mutex<DirStream>>> {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
    }
}

pub(crate) fn e(err: cairn_client::Error) -> Errno {
    errno(&err)
}

impl Filesystem for CairnFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_POSIX_LOCKS
            | InitFlags::FUSE_FLOCK_LOCKS
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_AUTO_INVAL_DATA
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_ASYNC_DIO;
        let supported = config.capabilities() & wanted;
        if let Err(missing) = config.add_capabilities(supported) {
            tracing::warn!(?missing, "kernel lacks some FUSE capabilities");
        }
        let _ = config
            .set_max_readahead(4 << 20)
            .or_else(|max| config.set_max_readahead(max));
        let _ = config
            .set_max_write(1 << 20)
            .or_else(|max| config.set_max_write(max));
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        let core = self.core.clone();
        let flush_all = async move {
            for ino in core.files.with_local_data() {
                if let Err(e) = core.flush_inode(ino).await {
                    tracing::error!(ino, error = %e, "could not flush a file at unmount");
                }
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            self.rt.spawn(flush_all);
        } else {
            self.rt.block_on(flush_all);
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name!(name, reply);
        // Answered at once from the cache when it can be: a task switch costs more than
        // the rest of a cached lookup.
        match self.core.lookup_cached(parent.0, &name) {
            Some(Ok(n)) => return reply.entry(&self.core.entry_ttl(), &self.core.kattr(&n), GEN),
            Some(Err(err)) => return reply.error(e(err)),
            None => {}
        }
        spawn!(
            self,
            reply,
            |core| async move { core.lookup(parent.0, &name).await.map_err(e) },
            |n| reply.entry(&core.entry_ttl(), &core.kattr(&n), GEN)
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        self.core.forget(ino.0);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some(n) = self.core.cache.attr(ino.0) {
            return reply.attr(&self.core.attr_ttl(), &self.core.kattr(&n));
        }
        spawn!(
            self,
            reply,
            |core| async move { core.getattr(ino.0).await.map_err(e) },
            |n| reply.attr(&core.attr_ttl(), &core.kattr(&n))
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = AttrChange {
            set: SetAttr {
                mode,
                uid,
                gid,
                atime: time_set(atime),
                mtime: time_set(mtime),
            },
            size,
        };
        spawn!(
            self,
            reply,
            |core| async move { core.setattr(ino.0, change).await.map_err(e) },
            |n| reply.attr(&core.attr_ttl(), &core.kattr(&n))
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        spawn!(
            self,
            reply,
            |core| async move { core.readlink(ino.0).await.map_err(e) },
            |t| reply.data(t.as_bytes())
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = name!(name, reply);
        let n = new_node(mode, req.uid(), req.gid());
        let kind = match mknod_kind(mode) {
            Ok(k) => k,
            Err(()) => return reply.error(Errno::EINVAL),
        };
        spawn!(
            self,
            reply,
            |core| async move {
                let made = match kind {
                    Some(k) => core.mknod(parent.0, &name, k, rdev, n).await,
                    None => match core.create(parent.0, &name, n, true, false, false).await {
                        Ok((node, fh)) => core.release(fh, None).await.map(|()| node),
                        Err(err) => Err(err),
                    },
                };
                made.map_err(e)
            },
            |n| reply.entry(&core.entry_ttl(), &core.kattr(&n), GEN)
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name!(name, reply);
        let n = new_node(mode, req.uid(), req.gid());
        spawn!(
            self,
            reply,
            |core| async move { core.mkdir(parent.0, &name, n).await.map_err(e) },
            |n| reply.entry(&core.entry_ttl(), &core.kattr(&n), GEN)
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name!(name, reply);
        spawn!(
            self,
            reply,
            |core| async move { core.unlink(parent.0, &name).await.map_err(e) },
            |_v| reply.ok()
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name!(name, reply);
        spawn!(
            self,
            reply,
            |core| async move { core.rmdir(parent.0, &name).await.map_err(e) },
            |_v| reply.ok()
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let name = name!(link_name, reply);
        let Some(target) = target.to_str().map(str::to_string) else {
            return reply.error(Errno::EINVAL);
        };
        let n = new_node(0o777, req.uid(), req.gid());
        spawn!(
            self,
            reply,
            |core| async move { core.symlink(parent.0, &name, &target, n).await.map_err(e) },
            |n| reply.entry(&core.entry_ttl(), &core.kattr(&n), GEN)
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let name = name!(name, reply);
        let newname = name!(newname, reply);
        if flags.contains(RenameFlags::RENAME_WHITEOUT)
            || (flags.contains(RenameFlags::RENAME_NOREPLACE)
                && flags.contains(RenameFlags::RENAME_EXCHANGE))
        {
            return reply.error(Errno::EINVAL);
        }
        let f = Flags {
            no_replace: flags.contains(RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(RenameFlags::RENAME_EXCHANGE),
        };
        spawn!(
            self,
            reply,
            |core| async move {
                core.rename(parent.0, &name, newparent.0, &newname, f)
                    .await
                    .map_err(e)
            },
            |_v| reply.ok()
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let name = name!(newname, reply);
        spawn!(
            self,
            reply,
            |core| async move { core.link(ino.0, newparent.0, &name).await.map_err(e) },
            |n| reply.entry(&core.entry_ttl(), &core.kattr(&n), GEN)
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.open_op(ino, reply)
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.read_op(fh, offset, size, reply)
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.write_op(ino, offset, data, flags, reply)
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.flush_op(ino, lock_owner, reply)
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.release_op(fh, lock_owner, reply)
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.fsync_op(ino, reply)
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fh = self
            .next_dir
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Default::default());
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.readdir_op(ino, fh, offset, reply)
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.readdirplus_op(ino, fh, offset, reply)
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Namespace changes are durable in the master's log before they are answered.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.statfs_op(reply)
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        self.setxattr_op(ino, name, value, flags, position, reply)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.getxattr_op(ino, name, size, reply)
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.listxattr_op(ino, size, reply)
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.removexattr_op(ino, name, reply)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.create_op(req, parent, name, mode, flags, reply)
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        self.getlk_op(ino, lock_owner, start, end, typ, pid, reply)
    }

    fn setlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        self.setlk_op(ino, lock_owner, start, end, typ, sleep, reply)
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.fallocate_op(ino, offset, length, mode, reply)
    }
}
