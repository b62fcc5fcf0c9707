//! Thin wrappers over the few POSIX calls `std` lacks: directory fsync, `flock`, `statvfs`,
//! `fallocate`, and a positional read that treats bytes past end-of-file as zeros (and can
//! be limited to the page cache).
//!
//! Invariant: every `unsafe` block here calls one libc function with a valid descriptor or
//! NUL-terminated path and checks its return value.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Flushes a directory's entries (creations, renames, removals) to disk.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes an exclusive, non-blocking `flock` on `file`; `WouldBlock` if someone holds it.
pub(crate) fn lock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: the descriptor is owned by `file`, which outlives the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// File system size, free space for unprivileged users, and used space, in bytes.
pub(crate) fn statvfs(path: &Path) -> io::Result<(u64, u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `statvfs` is plain old data; zeroed is a valid value that the call overwrites.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    let total = (st.f_blocks as u64).saturating_mul(frsize);
    let free = (st.f_bavail as u64).saturating_mul(frsize);
    let used = (st.f_blocks as u64)
        .saturating_sub(st.f_bfree as u64)
        .saturating_mul(frsize);
    Ok((total, free, used))
}

/// Allocates disk space for `[offset, offset + len)` of `file` without changing its size,
/// so later writes there cannot fail for lack of space. File systems that cannot
/// preallocate are left alone (the write then allocates as usual).
pub(crate) fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range too large",
        ));
    };
    // SAFETY: the descriptor is owned by `file`, which outlives the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, off, len) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => Ok(()),
        _ => Err(e),
    }
}

/// Reads `buf.len()` bytes at `offset`; bytes past end-of-file read as zeros. Returns how
/// many bytes came from the file.
pub(crate) fn read_at_or_zero(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    read_at_or_zero_mode(file, buf, offset, Wait::Yes)
}

/// Whether a read may wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    Yes,
    /// Only what the page cache holds (`preadv2` with `RWF_NOWAIT`); anything else fails
    /// with [`io::ErrorKind::WouldBlock`], so the read never sleeps on I/O.
    No,
}

/// [`read_at_or_zero`], optionally from the page cache only (see [`Wait::No`]).
pub(crate) fn read_at_or_zero_mode(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    wait: Wait,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        let got = match wait {
            Wait::Yes => file.read_at(&mut buf[done..], at),
            Wait::No => read_at_nowait(file, &mut buf[done..], at),
        };
        match got {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(done)
}

/// Asks the kernel to start reading `[offset, offset + len)` of `file` into the page cache
/// (`posix_fadvise(WILLNEED)`), so the reads that follow find it there instead of waiting
/// for the disk one piece at a time. A hint: a failure is ignored.
pub(crate) fn will_need(file: &File, offset: u64, len: u64) {
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: plain syscall on a valid, open file descriptor; no memory is passed.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), off, len, libc::POSIX_FADV_WILLNEED);
    }
}

/// One `preadv2(RWF_NOWAIT)`: reads what the page cache holds at `offset` (a short read
/// when only part of it is cached), `WouldBlock` when nothing is.
fn read_at_nowait(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the descriptor is owned by `file`, which outlives the call; `iov` points at
    // `buf`, which is valid for writes of `buf.len()` bytes for the whole call.
    let rc = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        // EOPNOTSUPP: the file system has no non-blocking reads (tmpfs here, kernel 6.18):
        // the caller's blocking read serves it instead of failing the read.
        Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) => io::Error::from(io::ErrorKind::WouldBlock),
        _ => e,
    })
}

/// Asks the kernel to start writing `[offset, offset+len)` of `file` back to disk without
/// waiting for it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). A hint: durability still
/// comes from `fdatasync`, so a failure here is ignored.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a valid, open file descriptor; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Chunk servers may keep their data on tmpfs, which has no non-blocking reads: a
    // cache-only read must answer data or WouldBlock there, never an I/O error.
    #[test]
    fn a_cache_only_read_on_tmpfs_is_data_or_would_block() {
        let dir = std::path::Path::new("/dev/shm");
        if !dir.is_dir() {
            eprintln!("skipped: no /dev/shm");
            return;
        }
        let path = dir.join(format!("cairn-nowait-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 8192]).expect("write");
        let file = File::open(&path).expect("open");
        let mut buf = vec![0u8; 8192];
        let got = read_at_or_zero_mode(&file, &mut buf, 0, Wait::No);
        let _ = std::fs::remove_file(&path);
        match got {
            Ok(n) => assert!(n == 8192 && buf.iter().all(|&b| b == 7)),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
        }
    }
}
