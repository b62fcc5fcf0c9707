//! Directory listing and file-system statistics requests: `readdir` and `readdirplus`
//! served from the handle's directory stream (`misc.rs`), and `statfs` from the cluster's
//! capacity divided by the replication goal.

use fuser::{
    Errno, FileHandle, FileType, INodeNo, ReplyDirectory, ReplyDirectoryPlus, ReplyStatfs,
};

use crate::convert::file_type;
use crate::fs::{CairnFs, GEN, e};

impl CairnFs {
    pub(crate) fn readdir_op(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(stream) = self.dir(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let core = self.core.clone();
        self.rt.spawn(async move {
            let mut s = stream.lock().await;
            let mut i = offset as usize;
            loop {
                if let Err(err) = core.fill_stream(ino.0, &mut s, i.saturating_sub(2)).await {
                    return reply.error(e(err));
                }
                let full = match i {
                    0 => reply.add(ino, 1, FileType::Directory, "."),
                    1 => reply.add(INodeNo(s.parent), 2, FileType::Directory, ".."),
                    _ => match s.entries.get(i - 2) {
                        Some((name, n)) => {
                            reply.add(INodeNo(n.attr.inode), i as u64 + 1, file_type(n), name)
                        }
                        None => break,
                    },
                };
                if full {
                    break;
                }
                i += 1;
            }
            reply.ok();
        });
    }

    pub(crate) fn readdirplus_op(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(stream) = self.dir(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let core = self.core.clone();
        self.rt.spawn(async move {
            let mut s = stream.lock().await;
            let ttl = core.entry_ttl();
            let mut i = offset as usize;
            loop {
                if let Err(err) = core.fill_stream(ino.0, &mut s, i.saturating_sub(2)).await {
                    return reply.error(e(err));
                }
                let Some(dir) = s.dir.clone() else { break };
                let full = match i {
                    0 => reply.add(ino, 1, ".", &ttl, &core.kattr(&dir), GEN),
                    1 => {
                        let mut a = core.kattr(&dir);
                        a.ino = INodeNo(s.parent);
                        reply.add(INodeNo(s.parent), 2, "..", &ttl, &a, GEN)
                    }
                    _ => match s.entries.get(i - 2) {
                        Some((name, n)) => reply.add(
                            INodeNo(n.attr.inode),
                            i as u64 + 1,
                            name,
                            &ttl,
                            &core.kattr(n),
                            GEN,
                        ),
                        None => break,
                    },
                };
                if full {
                    break;
                }
                i += 1;
            }
            reply.ok();
        });
    }

    pub(crate) fn statfs_op(&self, reply: ReplyStatfs) {
        spawn!(
            self,
            reply,
            |core| async move { core.statfs().await.map_err(e) },
            |s| {
                const BSIZE: u64 = 4096;
                let goal = u64::from(s.goal.max(1));
                let blocks = s.total_bytes / goal / BSIZE;
                let free = s.free_bytes / goal / BSIZE;
                let ffree = (1u64 << 32).saturating_sub(s.inodes);
                reply.statfs(
                    blocks,
                    free,
                    free,
                    s.inodes + ffree,
                    ffree,
                    BSIZE as u32,
                    255,
                    BSIZE as u32,
                )
            }
        );
    }
}
