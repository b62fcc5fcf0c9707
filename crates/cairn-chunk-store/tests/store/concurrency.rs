//! Concurrent commits share journal syncs; one chunk's operations stay ordered and atomic.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_chunk_store::StoreError;

use crate::common::*;

#[test]
fn concurrent_commits_to_different_chunks_share_syncs() {
    const THREADS: u64 = 8;
    const COMMITS: u64 = 12;
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    for t in 0..THREADS {
        write(&s, t, 0, &[0; 1], 1, 1, true).unwrap();
    }
    // Slow syncs make committers pile up behind the running one.
    s.faults().set_sync_delay(Duration::from_millis(5));
    let before = s.stats();
    let barrier = Barrier::new(THREADS as usize);
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let (s, barrier) = (&s, &barrier);
            sc.spawn(move || {
                barrier.wait();
                for i in 0..COMMITS {
                    let data = pattern(t * 100 + i, 3000);
                    write(s, t, i * 3000, &data, 1, i + 2, false).unwrap();
                }
            });
        }
    });
    let after = s.stats();
    let records = after.journal_records - before.journal_records;
    let syncs = after.journal_syncs - before.journal_syncs;
    assert_eq!(records, THREADS * COMMITS);
    assert!(
        syncs < records,
        "group commit: {syncs} syncs for {records} records"
    );
    s.faults().clear();
    let check = |s: &cairn_chunk_store::ChunkStore| {
        for t in 0..THREADS {
            let mut m = vec![0u8; 1];
            for i in 0..COMMITS {
                model_write(&mut m, i * 3000, &pattern(t * 100 + i, 3000));
            }
            assert_eq!(read_all(s, t, 1), m);
            assert_eq!(s.info(t).unwrap().serial, COMMITS + 1);
        }
    };
    check(&s);
    drop(s);
    let (s, r) = open(d.path());
    // The first small write of each chunk was a journaled Create.
    assert_eq!(r.journal_records_replayed as u64, records + THREADS);
    check(&s);
}

#[test]
fn racing_committers_on_one_chunk_apply_each_serial_once() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 1, 0, &[0; 8], 1, 1, true).unwrap();
    let wins = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for t in 0..4u8 {
            let (s, wins) = (&s, &wins);
            sc.spawn(move || {
                for _ in 0..30 {
                    let serial = s.info(1).unwrap().serial + 1;
                    match write(s, 1, 0, &[t; 8], 1, serial, false) {
                        Ok(i) => {
                            assert_eq!(i.serial, serial);
                            wins.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(StoreError::OutOfOrder { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    assert_eq!(s.info(1).unwrap().serial, 1 + wins.load(Ordering::SeqCst));
}

#[test]
fn readers_see_whole_commits_while_a_writer_works() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    const LEN: usize = 40_000;
    write(&s, 1, 0, &[1; LEN], 1, 1, true).unwrap();
    let done = AtomicU64::new(0);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            for serial in 2..=40u64 {
                write(&s, 1, 0, &[serial as u8; LEN], 1, serial, false).unwrap();
            }
            done.store(1, Ordering::SeqCst);
        });
        for _ in 0..2 {
            sc.spawn(|| {
                let mut last = 0;
                let mut buf = vec![0u8; LEN];
                while done.load(Ordering::SeqCst) == 0 {
                    assert_eq!(s.read(1, 1, 0, &mut buf).unwrap(), LEN);
                    let v = buf[0];
                    assert!(buf.iter().all(|&b| b == v), "torn read");
                    assert!(v >= last, "went back in time");
                    last = v;
                    s.verify(1).unwrap();
                }
            });
        }
    });
}
