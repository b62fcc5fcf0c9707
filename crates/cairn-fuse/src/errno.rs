//! Maps client errors onto the errno a system call returns, at the FUSE edge only.
//!
//! Every [`cairn_client::Kind`] maps to one errno; two messages are refined because POSIX
//! has a more precise errno for them than the kind (a link count limit is `EMLINK`, a
//! length past the largest file `EFBIG`).

use cairn_client::{Error, Kind};
use fuser::Errno;

/// The errno for a failed client call.
pub fn errno(e: &Error) -> Errno {
    Errno::from_i32(raw(e))
}

fn raw(e: &Error) -> i32 {
    match e.kind() {
        Kind::NotFound => libc::ENOENT,
        Kind::AlreadyExists => libc::EEXIST,
        Kind::NotADirectory => libc::ENOTDIR,
        Kind::IsADirectory => libc::EISDIR,
        Kind::NotEmpty => libc::ENOTEMPTY,
        Kind::InvalidPath => libc::EINVAL,
        Kind::InvalidArgument if e.message().contains("too many links") => libc::EMLINK,
        Kind::InvalidArgument if e.message().contains("largest file size") => libc::EFBIG,
        Kind::InvalidArgument => libc::EINVAL,
        Kind::Locked => libc::EAGAIN,
        Kind::Timeout => libc::ETIMEDOUT,
        Kind::NoSpace => libc::ENOSPC,
        Kind::PermissionDenied => libc::EPERM,
        Kind::Stale => libc::ESTALE,
        Kind::ReplicationFailed | Kind::Unavailable | Kind::Corrupt | Kind::Internal => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_refinements() {
        let e = |k, m: &str| raw(&Error::new(k, m));
        assert_eq!(e(Kind::NotFound, "inode 1/a: not found"), libc::ENOENT);
        assert_eq!(e(Kind::NotEmpty, "x"), libc::ENOTEMPTY);
        assert_eq!(
            e(Kind::InvalidArgument, "inode 5: has too many links"),
            libc::EMLINK
        );
        assert_eq!(
            e(
                Kind::InvalidArgument,
                "size 9: is past the largest file size (2^60 bytes)"
            ),
            libc::EFBIG
        );
        assert_eq!(
            e(Kind::InvalidArgument, "cannot move a directory into itself"),
            libc::EINVAL
        );
        assert_eq!(e(Kind::Locked, "locked by session 3"), libc::EAGAIN);
        assert_eq!(e(Kind::Unavailable, "x"), libc::EIO);
    }
}
