//! Unit tests of `ReplicaMap`: every form a replica set can take, and the moves between
//! them. They must never depend on a particular chunk's form for anything but the check
//! that memory is given back.

use super::*;

fn r(server: ServerId, version: u64) -> Replica {
    Replica { server, version }
}

/// Checks the invariants: no empty page, no chunk in both forms, nothing spilled that
/// fits a page, per-server counts that match the contents.
fn check(m: &ReplicaMap) {
    let mut counts = vec![0usize; m.slots.ids.len()];
    for (key, page) in &m.pages {
        assert_ne!(page.present, 0, "empty page {key} kept");
        for i in bits(page.present) {
            let chunk = key * PAGE + i as u64;
            assert!(
                !m.spill.contains_key(&chunk),
                "{chunk} in a page and spilled"
            );
            let rec = page.recs[i];
            assert_ne!(rec.slots[0], 0);
            let used = rec.slots.iter().take_while(|c| **c != 0).count();
            assert!(rec.slots[used..].iter().all(|c| *c == 0));
            for c in &rec.slots[..used] {
                counts[*c as usize - 1] += 1;
            }
        }
    }
    for (chunk, v) in &m.spill {
        assert!(!v.is_empty());
        assert!(m.pack(v).is_none(), "{chunk} spilled but fits a page");
        for x in v {
            counts[m.slots.by_id[&x.server]] += 1;
        }
    }
    assert_eq!(counts, m.slots.counts);
}

#[test]
fn common_case_stays_compact_and_keeps_order() {
    let mut m = ReplicaMap::default();
    m.add(1, 30, 5);
    m.add(1, u64::MAX, 5);
    m.add(1, 10, 5);
    m.add(1, 30, 5); // a repeated report changes nothing
    check(&m);
    assert!(m.spill.is_empty());
    assert_eq!(m.get(1), *[r(30, 5), r(u64::MAX, 5), r(10, 5)].as_slice());
    assert_eq!(m.count(30), 1);
    assert!(m.get(2).is_empty());
    assert!(m.get(u64::MAX).is_empty());
}

#[test]
fn a_replica_at_another_version_spills_and_comes_back() {
    let mut m = ReplicaMap::default();
    for s in [1, 2, 3] {
        m.add(7, s, 4);
    }
    m.add(7, 2, 5);
    check(&m);
    assert!(m.spill.contains_key(&7) && m.pages.is_empty());
    assert_eq!(m.get(7), *[r(1, 4), r(2, 5), r(3, 4)].as_slice());
    m.add(7, 1, 5);
    m.add(7, 3, 5);
    check(&m);
    assert!(m.spill.is_empty());
    assert_eq!(m.get(7), *[r(1, 5), r(2, 5), r(3, 5)].as_slice());
    // A stale replica leaving also brings the rest back to the page.
    m.add(7, 9, 1);
    assert!(m.spill.contains_key(&7));
    assert!(m.remove(7, 9));
    check(&m);
    assert!(m.spill.is_empty());
}

#[test]
fn more_replicas_than_fit_spill_in_order() {
    let mut m = ReplicaMap::default();
    for s in 1..=5 {
        m.add(64, s, 2);
    }
    check(&m);
    assert_eq!(m.get(64).len(), 5);
    assert_eq!(m.get(64)[3], r(4, 2));
    assert!(m.remove(64, 1));
    assert!(m.remove(64, 4));
    check(&m);
    assert!(m.spill.is_empty(), "three left: back in a page");
    assert_eq!(m.get(64), *[r(2, 2), r(3, 2), r(5, 2)].as_slice());
}

#[test]
fn a_version_past_32_bits_spills() {
    let mut m = ReplicaMap::default();
    let v = u64::from(u32::MAX) + 1;
    m.add(3, 1, v);
    m.add(4, 1, u64::from(u32::MAX));
    check(&m);
    assert!(m.spill.contains_key(&3) && !m.spill.contains_key(&4));
    assert_eq!(m.get(3), *[r(1, v)].as_slice());
    assert_eq!(m.chunks_of(1), vec![3, 4]);
}

#[test]
fn servers_past_the_16_bit_slots_spill() {
    let mut m = ReplicaMap::default();
    // Fill every 16-bit slot code, then add one server more.
    for s in 0..u64::from(u16::MAX) {
        m.slots.intern(s + 1_000);
    }
    let huge = u64::MAX - 1;
    m.add(10, 1_000, 1);
    m.add(10, huge, 1);
    m.add(11, 1_000, 1);
    check(&m);
    assert!(m.spill.contains_key(&10) && !m.spill.contains_key(&11));
    assert_eq!(m.get(10), *[r(1_000, 1), r(huge, 1)].as_slice());
    assert_eq!(m.count(huge), 1);
    assert_eq!(m.chunks_of(huge), vec![10]);
    assert_eq!(m.located(|s| s == huge), 1);
    assert_eq!(m.remove_server(huge), vec![10]);
    check(&m);
    assert!(m.spill.is_empty());
    assert_eq!(m.get(10), *[r(1_000, 1)].as_slice());
}

#[test]
fn removing_the_last_replica_frees_the_page() {
    let mut m = ReplicaMap::default();
    m.add(128, 1, 1);
    m.add(129, 1, 1);
    m.add(200, 2, 1);
    assert_eq!(m.pages.len(), 2);
    assert!(m.remove(128, 1));
    assert!(!m.remove(128, 1));
    assert!(!m.remove(5, 1));
    assert_eq!(m.pages.len(), 2);
    assert!(m.remove(129, 1));
    check(&m);
    assert_eq!(m.pages.len(), 1);
    assert_eq!(m.count(1), 0);
    assert!(m.chunks_of(1).is_empty());
    // A chunk that moves to the spill map leaves no empty page behind either.
    for s in 3..=6 {
        m.add(200, s, 1);
    }
    check(&m);
    assert!(m.pages.is_empty());
}

#[test]
fn remove_chunk_returns_every_replica() {
    let mut m = ReplicaMap::default();
    m.add(1, 1, 1);
    m.add(1, 2, 2);
    m.add(2, 1, 1);
    assert_eq!(m.remove_chunk(1), vec![r(1, 1), r(2, 2)]);
    assert!(m.remove_chunk(1).is_empty());
    assert_eq!(m.remove_chunk(2), vec![r(1, 1)]);
    check(&m);
    assert!(m.pages.is_empty() && m.spill.is_empty());
    assert_eq!((m.count(1), m.count(2)), (0, 0));
}

#[test]
fn remove_server_and_chunks_of_cover_pages_and_spill() {
    let mut m = ReplicaMap::default();
    for c in 1..=200 {
        m.add(c, 1, 1);
        m.add(c, 2, 1);
        if c % 2 == 0 {
            m.add(c, 3, 1);
        }
    }
    m.add(50, 3, 9); // spilled: 3 at another version
    for s in 4..=6 {
        m.add(77, s, 1); // spilled: 5 replicas
    }
    check(&m);
    assert_eq!(m.count(3), 100);
    assert_eq!(m.chunks_of(3).len(), 100);
    assert_eq!(m.chunks_of(3)[..3], [2, 4, 6]);
    assert_eq!(m.chunks_of(99), Vec::<ChunkId>::new());
    assert_eq!(m.located(|s| s == 3), 100);
    assert_eq!(m.located(|s| s != 99), 200);

    let gone = m.remove_server(2);
    assert_eq!(gone, (1..=200).collect::<Vec<_>>());
    check(&m);
    assert_eq!(m.count(2), 0);
    assert_eq!(m.get(1), *[r(1, 1)].as_slice());
    assert_eq!(m.get(50), *[r(1, 1), r(3, 9)].as_slice());
    assert_eq!(m.get(77).len(), 4);
    assert_eq!(m.get(77)[1], r(4, 1));
    assert!(m.remove_server(2).is_empty());

    m.remove_server(1);
    m.remove_server(3);
    check(&m);
    assert_eq!(m.get(77), *[r(4, 1), r(5, 1), r(6, 1)].as_slice());
    assert_eq!(m.located(|_| true), 1);
    m.remove_server(5);
    m.remove_server(4);
    m.remove_server(6);
    check(&m);
    assert!(m.pages.is_empty() && m.spill.is_empty());
}
