//! Giving freed heap memory back to the operating system, and measuring the live heap.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse. After a large transient
//! buffer (a master checkpoint serializes the whole namespace) that slack can be several
//! times what the live data needs, and it shows as resident memory that operators and
//! capacity planning read as the master's footprint. Measured: a master holding 200,000
//! chunks went from 70 MB to 27 MB resident on one `malloc_trim`.
//!
//! Must never be called on a hot path: a trim walks the heap and holds arena locks.
//! [`TrimPolicy`] decides when a periodic check should trim on its own.

/// Returns free heap memory to the operating system where the allocator supports it
/// (glibc on Linux); elsewhere does nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only touches the allocator's own free lists; it takes no
    // pointers and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// When a long-running server should give free heap back on its own, between the trims
/// that follow its big transient buffers: work that allocates and frees (bursts of
/// requests, expired leases swept away) leaves slack that no checkpoint follows.
///
/// A trim is due when the process is resident for at least `min_slack` bytes and a
/// quarter of the live heap more than the live heap needs, and its resident size grew
/// by `min_slack` since the last trim (what a trim cannot give back, such as code pages
/// and fragments, does not make every later check trim again).
#[derive(Debug, Clone)]
pub struct TrimPolicy {
    pub min_slack: u64,
    /// Resident size right after the last trim.
    after_last: u64,
}

impl TrimPolicy {
    pub fn new(min_slack: u64) -> TrimPolicy {
        TrimPolicy {
            min_slack,
            after_last: 0,
        }
    }

    /// Whether a process with this resident size and live heap should trim now.
    pub fn due(&self, resident: u64, heap: u64) -> bool {
        let slack = resident.saturating_sub(heap);
        slack >= self.min_slack
            && slack >= heap / 4
            && resident >= self.after_last.saturating_add(self.min_slack)
    }

    /// Records the resident size a trim left.
    pub fn trimmed(&mut self, resident_after: u64) {
        self.after_last = resident_after;
    }

    /// Checks the process and trims if due; returns the resident bytes given back.
    pub fn check(&mut self) -> Option<u64> {
        let (resident, heap) = (resident_bytes()?, heap_in_use()?);
        if !self.due(resident, heap) {
            return None;
        }
        release_free_memory();
        let after = resident_bytes().unwrap_or(resident);
        self.trimmed(after);
        Some(resident.saturating_sub(after))
    }
}

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`: in-use heap
/// blocks plus mmapped ones), i.e. the live heap without the allocator's free memory;
/// `None` where the allocator cannot tell. It walks the free lists: not for hot paths.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's own statistics.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks as u64).saturating_add(m.hblkhd as u64))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// The process's resident set size (`VmRSS` in `/proc/self/status`); `None` where that
/// is unavailable.
pub fn resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod policy_tests {
    use super::TrimPolicy;

    const MB: u64 = 1 << 20;

    #[test]
    fn trims_only_real_slack_and_not_again_for_what_stays() {
        let mut p = TrimPolicy::new(32 * MB);
        assert!(
            !p.due(40 * MB, 20 * MB),
            "20 MB of slack is below the minimum"
        );
        assert!(
            !p.due(500 * MB, 420 * MB),
            "80 MB is under a quarter of a 420 MB heap"
        );
        assert!(p.due(200 * MB, 100 * MB));
        // The trim left 150 MB resident (code, fragments): not again until it grows.
        p.trimmed(150 * MB);
        assert!(!p.due(160 * MB, 100 * MB));
        assert!(p.due(190 * MB, 100 * MB));
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Both tests measure the whole process's heap: they must not run at once.
    static HEAP: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn heap_in_use_counts_live_blocks() {
        let _one = HEAP.lock().unwrap_or_else(|p| p.into_inner());
        let before = super::heap_in_use().expect("glibc");
        let blocks: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 64 << 10]).collect();
        let during = super::heap_in_use().expect("glibc");
        assert!(blocks.iter().all(|b| b.len() == 64 << 10));
        drop(blocks);
        let after = super::heap_in_use().expect("glibc");
        // Other tests may allocate meanwhile, so only the 16 MiB step is certain.
        assert!(during >= before + (15 << 20), "{before} -> {during}");
        assert!(after + (15 << 20) <= during, "{during} -> {after}");
    }

    #[test]
    fn freed_memory_in_the_middle_of_the_heap_goes_back() {
        let _one = HEAP.lock().unwrap_or_else(|p| p.into_inner());
        // 32 MiB in blocks below the mmap threshold, so they come from the heap, each
        // followed by a small block that stays live: freed, the big blocks are holes
        // that cannot merge into the top of the heap, so the allocator keeps them.
        let mut pins = Vec::with_capacity(512);
        let mut blocks = Vec::with_capacity(512);
        for i in 0..512 {
            blocks.push(vec![i as u8 | 1; 64 << 10]);
            pins.push(vec![1u8; 64]);
        }
        drop(blocks);
        let before = super::resident_bytes().expect("procfs");
        super::release_free_memory();
        let after = super::resident_bytes().expect("procfs");
        assert!(pins.iter().all(|p| p.iter().all(|&b| b == 1)));
        assert!(
            before.saturating_sub(after) >= 16 << 20,
            "resident {before} -> {after} bytes"
        );
    }
}
