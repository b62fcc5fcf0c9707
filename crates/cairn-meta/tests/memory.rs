//! Memory budget of the namespace: live heap bytes per empty file and per chunk, measured
//! with a counting global allocator over states built through `apply`.
//!
//! Budget (the master as a whole aims at 150 bytes per file and 100 per chunk; the rest is
//! the master's soft state): at most 110 bytes per empty file, at most 40 bytes per chunk
//! (the chunk record plus what its file's slot costs). Run with `--nocapture` to see the
//! figures. This binary holds one test only, so no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use cairn_meta::*;

/// Counts live bytes requested and, beside them, what a glibc-style allocator would round
/// each request up to (16-byte granules with an 8-byte header, 32 bytes at least).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ROUNDED: AtomicIsize = AtomicIsize::new(0);

fn rounded(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ROUNDED.fetch_add(rounded(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        ROUNDED.fetch_sub(rounded(layout.size()), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        ROUNDED.fetch_add(
            rounded(new_size) - rounded(layout.size()),
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn now() -> (isize, isize) {
    (
        LIVE.load(Ordering::Relaxed),
        ROUNDED.load(Ordering::Relaxed),
    )
}

fn per(before: (isize, isize), after: (isize, isize), n: usize) -> (f64, f64) {
    (
        (after.0 - before.0) as f64 / n as f64,
        (after.1 - before.1) as f64 / n as f64,
    )
}

fn apply(st: &mut MetaState, cmd: MetaCommand) -> MetaResponse {
    st.apply(None, &cmd)
        .unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"))
}

const DIRS: usize = 8;
const FILES_PER_DIR: usize = 25_000;
const CHUNKED: usize = 100_000;
/// Chunks each of the multi-chunk files gets (reported, not budgeted).
const MULTI: u64 = 4;

fn format() -> MetaState {
    let mut st = MetaState::new();
    apply(
        &mut st,
        MetaCommand::Format {
            chunk_size: 64 << 20,
            default_goal: 2,
            lease_key: [1; 32],
            now_ns: 1,
        },
    );
    st
}

/// Creates `DIRS` directories of `FILES_PER_DIR` empty files named `f0000000`...,
/// created in name order or in a fixed scrambled order; answers the file ids and the live
/// and rounded bytes per file this cost.
fn populate(st: &mut MetaState, scrambled: bool) -> (Vec<InodeId>, (f64, f64)) {
    let mut files = Vec::with_capacity(DIRS * FILES_PER_DIR);
    let mut dirs = Vec::with_capacity(DIRS);
    let base = now();
    for d in 0..DIRS {
        let cmd = MetaCommand::MkdirAt {
            parent: ROOT_INODE,
            name: format!("d{d:03}"),
            mode: 0o755,
            uid: 1,
            gid: 1,
            now_ns: 2,
        };
        match apply(st, cmd) {
            MetaResponse::Attr(a) => dirs.push(a.inode),
            other => panic!("mkdir answered {other:?}"),
        }
    }
    for i in 0..FILES_PER_DIR {
        // 7919 is prime, so this visits every number below FILES_PER_DIR once.
        let n = if scrambled {
            (i * 7919) % FILES_PER_DIR
        } else {
            i
        };
        for &dir in &dirs {
            let cmd = MetaCommand::CreateAt {
                parent: dir,
                name: format!("f{n:07}"),
                mode: 0o644,
                uid: 1,
                gid: 1,
                exclusive: true,
                now_ns: 3,
            };
            match apply(st, cmd) {
                MetaResponse::Created { attr, .. } => files.push(attr.inode),
                other => panic!("create answered {other:?}"),
            }
        }
    }
    // `files` and `dirs` (the test's own) were allocated in full before `base`.
    let cost = per(base, now(), files.len());
    (files, cost)
}

#[test]
fn namespace_stays_within_its_memory_budget() {
    let mut st = format();
    let empty = now();
    let (files, (file_live, file_rounded)) = populate(&mut st, false);

    let base = now();
    for &inode in files.iter().take(CHUNKED) {
        apply(&mut st, MetaCommand::AllocChunk { inode, index: 0 });
    }
    let (chunk_live, chunk_rounded) = per(base, now(), CHUNKED);

    let multi_files = &files[CHUNKED..CHUNKED + 10_000];
    let base = now();
    for &inode in multi_files {
        for index in 0..MULTI {
            apply(&mut st, MetaCommand::AllocChunk { inode, index });
        }
    }
    let (multi_live, _) = per(base, now(), multi_files.len() * MULTI as usize);
    assert_eq!(st.totals().files, files.len() as u64);
    assert_eq!(
        st.totals().chunks,
        (CHUNKED + multi_files.len() * MULTI as usize) as u64
    );
    drop(st);

    let mut scrambled = format();
    let (_, (scrambled_live, scrambled_rounded)) = populate(&mut scrambled, true);
    eprintln!(
        "namespace memory ({} files in {DIRS} directories; live bytes requested, then with \
         glibc-style rounding):\n  \
         per empty file, created in name order: {file_live:.1} ({file_rounded:.1})\n  \
         per empty file, created scrambled:     {scrambled_live:.1} ({scrambled_rounded:.1})\n  \
         per chunk, one-chunk files:            {chunk_live:.1} ({chunk_rounded:.1})\n  \
         per chunk, {MULTI}-chunk files:              {multi_live:.1}\n  \
         empty formatted state: {} bytes",
        files.len(),
        empty.0
    );
    assert!(file_live <= 110.0, "{file_live:.1} bytes per file");
    assert!(
        scrambled_live <= 110.0,
        "{scrambled_live:.1} bytes per file"
    );
    assert!(chunk_live <= 40.0, "{chunk_live:.1} bytes per chunk");
}
