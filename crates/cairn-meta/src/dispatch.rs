//! Routes each [`MetaCommand`] to its handler. Nothing here decides anything: every rule
//! lives in the handler's module.

use crate::posix::SetAttrReq;
use crate::rename_at::RenameAtReq;
use crate::special::MknodReq;
use crate::state::MetaState;
use crate::{LockInfo, MetaCommand, MetaError, MetaResponse};

impl MetaState {
    pub(crate) fn execute(&mut self, cmd: &MetaCommand) -> Result<MetaResponse, MetaError> {
        use MetaCommand as C;
        match cmd {
            C::Format {
                chunk_size,
                default_goal,
                lease_key,
                now_ns,
            } => self.format(*chunk_size, *default_goal, *lease_key, *now_ns),
            _ if !self.is_formatted() => Err(MetaError::NotFormatted),
            C::Mkdir {
                path,
                parents,
                mode,
                uid,
                gid,
                now_ns,
            } => self.mkdir(path, *parents, *mode, *uid, *gid, *now_ns),
            C::Create {
                path,
                overwrite,
                mode,
                uid,
                gid,
                goal,
                now_ns,
                session,
            } => self.create(
                path, *overwrite, *mode, *uid, *gid, *goal, *now_ns, *session,
            ),
            C::Delete {
                path,
                recursive,
                now_ns,
                session,
            } => self.delete(path, *recursive, *now_ns, *session),
            C::Rename {
                from,
                to,
                no_replace,
                now_ns,
                session,
            } => self.rename(from, to, *no_replace, *now_ns, *session),
            C::AllocChunk { inode, index } => self.alloc_chunk(*inode, *index),
            C::ReserveChunkIds { count } => self.reserve_chunk_ids(*count),
            C::CommitWriteNew {
                inode,
                end,
                new_chunks,
                now_ns,
                session,
            } => self.commit_write_new(*inode, *end, new_chunks, *now_ns, *session),
            C::SetChunkVersion { chunk_id, version } => self.set_chunk_version(*chunk_id, *version),
            C::CommitWrite {
                inode,
                end,
                now_ns,
                session,
            } => self.commit_write(*inode, *end, *now_ns, *session),
            C::Truncate {
                inode,
                size,
                now_ns,
                session,
            } => self.truncate(*inode, *size, *now_ns, *session),
            C::OpenSession { owner, now_ns } => self.open_session(owner, *now_ns),
            C::CloseSession { session_id } | C::ExpireSession { session_id } => {
                self.close_session(*session_id)
            }
            C::Lock {
                session_id,
                inode,
                owner,
                kind,
                start,
                end,
                mandatory,
                wait,
                waiter_id,
            } => {
                let req = LockInfo {
                    session_id: *session_id,
                    owner: *owner,
                    kind: *kind,
                    start: *start,
                    end: *end,
                    mandatory: *mandatory,
                };
                self.lock(*inode, req, *wait, *waiter_id)
            }
            C::Unlock {
                session_id,
                inode,
                owner,
                start,
                end,
            } => self.unlock(*session_id, *inode, *owner, *start, *end),
            C::CancelWait {
                session_id,
                waiter_id,
            } => self.cancel_wait(*session_id, *waiter_id),
            C::ReserveAppend {
                inode,
                len,
                session,
            } => self.reserve_append(*inode, *len, *session),
            C::MkdirAt {
                parent,
                name,
                mode,
                uid,
                gid,
                now_ns,
            } => self.mkdir_at(*parent, name, *mode, *uid, *gid, *now_ns),
            C::CreateAt {
                parent,
                name,
                mode,
                uid,
                gid,
                exclusive,
                now_ns,
            } => self.create_at(*parent, name, *mode, *uid, *gid, *exclusive, *now_ns),
            C::SymlinkAt {
                parent,
                name,
                target,
                uid,
                gid,
                now_ns,
            } => self.symlink_at(*parent, name, target, *uid, *gid, *now_ns),
            C::LinkAt {
                inode,
                new_parent,
                new_name,
                now_ns,
            } => self.link_at(*inode, *new_parent, new_name, *now_ns),
            C::UnlinkAt {
                parent,
                name,
                session,
                now_ns,
            } => self.unlink_at(*parent, name, *session, *now_ns),
            C::RmdirAt {
                parent,
                name,
                now_ns,
            } => self.rmdir_at(*parent, name, *now_ns),
            C::RenameAt {
                parent,
                name,
                new_parent,
                new_name,
                no_replace,
                exchange,
                session,
                now_ns,
            } => self.rename_at(&RenameAtReq {
                parent: *parent,
                name,
                new_parent: *new_parent,
                new_name,
                no_replace: *no_replace,
                exchange: *exchange,
                session: *session,
                now_ns: *now_ns,
            }),
            C::SetAttr {
                inode,
                mode,
                uid,
                gid,
                size,
                atime_ns,
                mtime_ns,
                session,
                now_ns,
            } => self.set_attr(&SetAttrReq {
                inode: *inode,
                mode: *mode,
                uid: *uid,
                gid: *gid,
                size: *size,
                atime_ns: *atime_ns,
                mtime_ns: *mtime_ns,
                session: *session,
                now_ns: *now_ns,
            }),
            C::SetXattr {
                inode,
                name,
                value,
                mode,
                now_ns,
            } => self.set_xattr(*inode, name, value, *mode, *now_ns),
            C::RemoveXattr {
                inode,
                name,
                now_ns,
            } => self.remove_xattr(*inode, name, *now_ns),
            C::MknodAt {
                parent,
                name,
                kind,
                rdev,
                mode,
                uid,
                gid,
                now_ns,
            } => self.mknod_at(&MknodReq {
                parent: *parent,
                name,
                kind: *kind,
                rdev: *rdev,
                mode: *mode,
                uid: *uid,
                gid: *gid,
                now_ns: *now_ns,
            }),
        }
    }
}
