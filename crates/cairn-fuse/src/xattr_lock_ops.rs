//! Extended attribute, byte-range lock and `fallocate` requests. Errors of the xattr
//! protocol are answered here (`ENODATA`, `ERANGE` for a short buffer, `E2BIG`,
//! `EOPNOTSUPP` for POSIX ACLs, which Cairn does not keep).

use std::ffi::OsStr;

use fuser::{Errno, INodeNo, LockOwner, ReplyEmpty, ReplyLock, ReplyXattr};

use crate::fs::{CairnFs, e};
use crate::misc::MAX_XATTR_VALUE;
use crate::namespace::name_str;

impl CairnFs {
    pub(crate) fn setxattr_op(
        &self,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::ERANGE));
        };
        let name = name.to_string();
        if position != 0 {
            return reply.error(Errno::EINVAL);
        }
        if value.len() > MAX_XATTR_VALUE {
            return reply.error(Errno::from_i32(libc::E2BIG));
        }
        let value = value.to_vec();
        spawn!(
            self,
            reply,
            |core| async move {
                core.setxattr(ino.0, &name, &value, flags)
                    .await
                    .map_err(|err| {
                        if name.starts_with("system.posix_acl_") {
                            Errno::from_i32(libc::EOPNOTSUPP)
                        } else {
                            e(err)
                        }
                    })
            },
            |found| if found {
                reply.ok()
            } else {
                reply.error(Errno::from_i32(libc::ENODATA))
            }
        );
    }

    pub(crate) fn getxattr_op(&self, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::ERANGE));
        };
        // Answered at once from the cache when it can be (the kernel asks every new file
        // for `security.capability` at its first write): a task switch costs more.
        if let Some(v) = self.core.cache.xattr(ino.0, name) {
            return answer_xattr(v, size, reply);
        }
        let name = name.to_string();
        spawn!(
            self,
            reply,
            |core| async move { core.getxattr(ino.0, &name).await.map_err(e) },
            |v| answer_xattr(v, size, reply)
        );
    }

    pub(crate) fn listxattr_op(&self, ino: INodeNo, size: u32, reply: ReplyXattr) {
        spawn!(
            self,
            reply,
            |core| async move { core.listxattr(ino.0).await.map_err(e) },
            |names| {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(n.as_bytes());
                    buf.push(0);
                }
                if size == 0 {
                    reply.size(buf.len() as u32)
                } else if buf.len() > size as usize {
                    reply.error(Errno::from_i32(libc::ERANGE))
                } else {
                    reply.data(&buf)
                }
            }
        );
    }

    pub(crate) fn removexattr_op(&self, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::ERANGE));
        };
        let name = name.to_string();
        spawn!(
            self,
            reply,
            |core| async move { core.removexattr(ino.0, &name).await.map_err(e) },
            |found| if found {
                reply.ok()
            } else {
                reply.error(Errno::from_i32(libc::ENODATA))
            }
        );
    }

    #[allow(clippy::too_many_arguments)] // the kernel request's fields, as fuser passes them
    pub(crate) fn getlk_op(
        &self,
        ino: INodeNo,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        spawn!(
            self,
            reply,
            |core| async move {
                core.getlk(ino.0, lock_owner.0, start, end, typ)
                    .await
                    .map_err(e)
            },
            |v| {
                let (s, end, t) = v;
                reply.locked(s, end, t, if t == libc::F_UNLCK { pid } else { 0 })
            }
        );
    }

    #[allow(clippy::too_many_arguments)] // the kernel request's fields, as fuser passes them
    pub(crate) fn setlk_op(
        &self,
        ino: INodeNo,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        spawn!(
            self,
            reply,
            |core| async move {
                core.setlk(ino.0, lock_owner.0, start, end, typ, sleep)
                    .await
                    .map_err(e)
            },
            |_v| reply.ok()
        );
    }

    pub(crate) fn fallocate_op(
        &self,
        ino: INodeNo,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        spawn!(
            self,
            reply,
            |core| async move { core.fallocate(ino.0, offset, length, mode).await.map_err(e) },
            |done| if done {
                reply.ok()
            } else {
                reply.error(Errno::from_i32(libc::EOPNOTSUPP))
            }
        );
    }
}

/// Answers a getxattr with `value` (`None`: absent) for a buffer of `size` bytes (0: the
/// caller asks for the length).
fn answer_xattr(value: Option<bytes::Bytes>, size: u32, reply: ReplyXattr) {
    match value {
        None => reply.error(Errno::from_i32(libc::ENODATA)),
        Some(v) if size == 0 => reply.size(v.len() as u32),
        Some(v) if v.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
        Some(v) => reply.data(&v),
    }
}
