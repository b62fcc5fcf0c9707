//! Free space: the reserve a chunk server keeps unused on its data directory's disk.
//!
//! The reserve is either configured or, by default, 1 GiB or 5% of the disk, whichever is
//! smaller. Below it the store refuses new replicas (mutations of existing replicas still
//! apply, so a full disk never breaks a write in progress), the master places nothing new
//! on the server, and re-replication picks other targets.
//!
//! Invariant: the one `unsafe` block calls `statvfs` with a NUL-terminated path and a valid
//! out-pointer, and checks its return value.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Ceiling of the automatic reserve.
pub const AUTO_RESERVE_MAX: u64 = 1 << 30;
/// The automatic reserve's share of the disk, in percent.
pub const AUTO_RESERVE_PERCENT: u64 = 5;

/// The reserve to use for the disk holding `dir`: `configured`, or the automatic one.
pub fn resolve_reserve(dir: &Path, configured: Option<u64>) -> io::Result<u64> {
    match configured {
        Some(bytes) => Ok(bytes),
        None => Ok(auto_reserve(disk_size(dir)?)),
    }
}

/// 1 GiB or 5% of a disk of `total` bytes, whichever is smaller.
pub fn auto_reserve(total: u64) -> u64 {
    (total / 100 * AUTO_RESERVE_PERCENT).min(AUTO_RESERVE_MAX)
}

/// Size of the file system holding `dir`, in bytes.
fn disk_size(dir: &Path) -> io::Result<u64> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `statvfs` is plain old data; zeroed is a valid value that the call overwrites.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_blocks as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_reserve_is_five_percent_capped_at_one_gib() {
        assert_eq!(auto_reserve(100 << 20), 5 << 20);
        assert_eq!(auto_reserve(1 << 40), 1 << 30);
        assert_eq!(auto_reserve(0), 0);
    }

    #[test]
    fn configured_reserve_wins_and_auto_reads_the_disk() {
        let dir = std::env::temp_dir();
        assert_eq!(resolve_reserve(&dir, Some(7)).unwrap(), 7);
        let auto = resolve_reserve(&dir, None).unwrap();
        assert!(auto > 0 && auto <= AUTO_RESERVE_MAX, "{auto}");
    }
}
