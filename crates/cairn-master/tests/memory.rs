//! Measures what the master's soft state about replicas (`Cluster`) costs per chunk.
//!
//! A counting global allocator tracks live heap bytes; the test fills a `Cluster` with 3
//! replicas of each of many chunks and checks the bytes per chunk against the budget (the
//! issue's ≤ 100 bytes per chunk for the whole master leaves ≤ 40 for this soft state). It
//! must never share the process with other tests that allocate a lot at the same time: the
//! counter is global, so the cases run one at a time under a lock.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use cairn_master::cluster::{Cluster, Server, ServerId};
use cairn_proto::pb;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The counter is process-wide: cases must not overlap.
static SERIAL: Mutex<()> = Mutex::new(());

/// Enough chunks that per-chunk costs dominate fixed ones, few enough for a debug build.
const CHUNKS: u64 = 1_000_000;
const BUDGET_BYTES_PER_CHUNK: f64 = 40.0;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Chunk servers pick random 64-bit ids; the test must not get away with small ones.
fn server_id(i: u64) -> ServerId {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn server(id: ServerId) -> Server {
    Server {
        id,
        addr: format!("10.0.0.{}:6000", id % 250),
        capacity: pb::Capacity {
            free_bytes: 1 << 40,
            ..Default::default()
        },
        last_beat: Instant::now(),
        alive: true,
        active_requests: 0,
        commands: None,
        session: 0,
        http_addr: String::new(),
    }
}

/// Three distinct servers out of `n` for `chunk`, spread pseudo-randomly.
fn holders(chunk: u64, n: u64) -> [u64; 3] {
    if n == 3 {
        return [0, 1, 2];
    }
    let h = server_id(chunk);
    let a = h % n;
    let b = (a + 1 + (h >> 16) % (n - 1)) % n;
    let mut c = (h >> 32) % n;
    while c == a || c == b {
        c = (c + 1) % n;
    }
    [a, b, c]
}

fn measure(n_servers: u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ids: Vec<ServerId> = (0..n_servers).map(server_id).collect();
    let mut cluster = Cluster::default();
    for id in &ids {
        cluster.servers.insert(*id, server(*id));
    }
    let before = live();
    let start = Instant::now();
    for chunk in 1..=CHUNKS {
        for s in holders(chunk, n_servers) {
            cluster.add_replica(chunk, ids[s as usize], 1);
        }
    }
    let fill = start.elapsed();
    let with_attention = (live() - before) as f64 / CHUNKS as f64;
    // The re-replication scheduler drains the work set every tick once safe mode is over.
    cluster.attention.clear();
    let drained = (live() - before) as f64 / CHUNKS as f64;
    eprintln!(
        "{n_servers} servers, {CHUNKS} chunks x 3 replicas: {with_attention:.1} bytes/chunk \
         (every chunk awaiting the scheduler), {drained:.1} bytes/chunk after it drained; \
         filled in {fill:?}"
    );
    assert_eq!(cluster.located_chunks() as u64, CHUNKS);

    // A full report from one server, as the heartbeat handler applies it: forget what it
    // held, then add every reported replica back.
    let victim = ids[0];
    let start = Instant::now();
    let held = cluster.chunks_of(victim);
    let scan = start.elapsed();
    let start = Instant::now();
    let forgotten = cluster.forget_replicas_of(victim);
    for c in &forgotten {
        cluster.add_replica(*c, victim, 1);
    }
    let report = start.elapsed();
    assert_eq!(forgotten, held);
    assert_eq!(cluster.replica_count(victim), held.len());
    let start = Instant::now();
    let lost = cluster.mark_dead(victim);
    let death = start.elapsed();
    eprintln!(
        "{n_servers} servers: chunks_of one server ({} chunks) took {scan:?}, a full report \
         {report:?}, mark_dead {death:?}",
        held.len()
    );
    assert_eq!(lost.len(), held.len());
    assert!(
        with_attention <= BUDGET_BYTES_PER_CHUNK,
        "{with_attention:.1} bytes per chunk with {n_servers} servers (budget {BUDGET_BYTES_PER_CHUNK})"
    );
}

#[test]
fn three_servers_cost_at_most_40_bytes_per_chunk() {
    measure(3);
}

#[test]
fn twelve_servers_cost_at_most_40_bytes_per_chunk() {
    measure(12);
}
