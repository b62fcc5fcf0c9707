//! Crash safety: crashes at each point of the commit protocol, lost page cache, torn
//! journal tails, leftover staging files.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;

use cairn_chunk_store::{CrashPoint, StoreConfig, StoreError};

use crate::common::*;

#[test]
fn crash_after_journal_sync_is_replayed() {
    for point in [CrashPoint::AfterJournalSync, CrashPoint::MidApply] {
        let d = tmpdir(false);
        let (s, _) = open(d.path());
        let mut m = pattern(1, 30_000);
        write(&s, 1, 0, &m, 1, 1, true).unwrap();
        s.faults().crash_at(point);
        let data = pattern(2, 20_000);
        assert!(matches!(
            write(&s, 1, 25_000, &data, 1, 2, false),
            Err(StoreError::Io(_))
        ));
        assert!(s.faults().halted());
        let mut b = [0u8; 1];
        assert!(
            s.read(1, 1, 0, &mut b).is_err(),
            "a halted store refuses work"
        );
        drop(s);
        let (s, r) = open(d.path());
        assert_eq!(r.journal_records_replayed, 1, "{point:?}");
        model_write(&mut m, 25_000, &data);
        assert_eq!(s.info(1).unwrap().serial, 2);
        assert_eq!(read_all(&s, 1, 1), m, "{point:?}");
        assert_eq!(s.verify(1).unwrap(), m.len() as u64);
    }
}

#[test]
fn a_small_new_replica_acknowledged_by_its_journal_record_survives_a_crash() {
    // The crash comes after the Create record is durable and before the replica file is
    // written (AfterJournalSync), or while it is being written (MidApply).
    for point in [CrashPoint::AfterJournalSync, CrashPoint::MidApply] {
        let d = tmpdir(false);
        let (s, _) = open(d.path());
        let data = pattern(7, 5000);
        s.faults().crash_at(point);
        assert!(write(&s, 9, 1000, &data, 3, 1, true).is_err(), "{point:?}");
        drop(s);
        let (s, r) = open(d.path());
        assert_eq!(r.journal_records_replayed, 1, "{point:?}");
        let info = s.info(9).expect("the replica is back");
        assert_eq!((info.version, info.serial, info.length), (3, 1, 6000));
        let mut want = vec![0u8; 1000];
        want.extend_from_slice(&data);
        assert_eq!(read_all(&s, 9, 3), want, "{point:?}");
        assert_eq!(s.verify(9).unwrap(), 6000);
        // A deleted one stays deleted, though its Create record is still in the journal.
        s.delete(9).unwrap();
        drop(s);
        let (s, _) = open(d.path());
        assert!(s.info(9).is_none() && !chunk_file(d.path(), 9).exists());
    }
}

#[test]
fn lost_in_place_writes_are_rebuilt_from_the_journal() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let mut m = pattern(1, 50_000);
    write(&s, 1, 0, &m, 1, 1, true).unwrap();
    s.checkpoint().unwrap();
    let path = chunk_file(d.path(), 1);
    let image = fs::read(&path).unwrap();
    // Mutations applied in place without sync: a power cut may lose all of them.
    let w = pattern(2, 9000);
    write(&s, 1, 4000, &w, 1, 2, false).unwrap();
    model_write(&mut m, 4000, &w);
    s.truncate(1, 1, 3, false, 30_001, CAP).unwrap();
    m.truncate(30_001);
    write(&s, 1, 40_000, &[9; 100], 1, 4, false).unwrap();
    model_write(&mut m, 40_000, &[9; 100]);
    s.set_version(1, 1, 2).unwrap();
    drop(s);
    fs::write(&path, &image).unwrap();
    let (s, r) = open(d.path());
    assert_eq!(r.journal_records_replayed, 4);
    let i = s.info(1).unwrap();
    assert_eq!((i.version, i.serial, i.length), (2, 0, m.len() as u64));
    assert_eq!(read_all(&s, 1, 2), m);
    assert_eq!(s.verify(1).unwrap(), m.len() as u64);
}

#[test]
fn a_torn_journal_tail_is_cut_and_earlier_commits_survive() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let mut m = pattern(1, 10_000);
    write(&s, 1, 0, &m, 1, 1, true).unwrap();
    write(&s, 1, 100, &[7; 300], 1, 2, false).unwrap();
    model_write(&mut m, 100, &[7; 300]);
    // The last record is durable but not applied when the "crash" hits; then we tear it.
    s.faults().crash_at(CrashPoint::AfterJournalSync);
    write(&s, 1, 0, &pattern(5, 6000), 1, 3, false).unwrap_err();
    drop(s);
    let j = journal_files(d.path());
    assert_eq!(j.len(), 1);
    // The journal is zero-filled ahead: its records end at the last non-zero byte.
    let bytes = fs::read(&j[0]).unwrap();
    let len = bytes.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    OpenOptions::new()
        .write(true)
        .open(&j[0])
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let (s, r) = open(d.path());
    assert!(r.torn_tail_cut);
    assert_eq!(r.journal_records_replayed, 1);
    assert_eq!(s.info(1).unwrap().serial, 2);
    assert_eq!(read_all(&s, 1, 1), m);

    // Garbage after valid records is cut the same way.
    write(&s, 1, 0, &[3; 10], 1, 3, false).unwrap();
    model_write(&mut m, 0, &[3; 10]);
    drop(s);
    let j = journal_files(d.path());
    let bytes = fs::read(&j[0]).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    let f = OpenOptions::new().write(true).open(&j[0]).unwrap();
    f.write_all_at(&pattern(9, 333), end).unwrap();
    drop(f);
    let (s, r) = open(d.path());
    assert!(r.torn_tail_cut);
    assert_eq!(r.journal_records_replayed, 1);
    assert_eq!(read_all(&s, 1, 1), m);
    drop(s);
    let (_s, r) = open(d.path());
    assert!(!r.torn_tail_cut, "recovery leaves a clean journal");
    assert_eq!(journal_files(d.path()).len(), 1);
}

#[test]
fn uncommitted_new_replicas_never_appear() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    // A staged write abandoned by a dying process (spilled to a temp file).
    let mut st = s.stage(1, 0, CAP).unwrap();
    st.write(&pattern(1, 50_000)).unwrap();
    std::mem::forget(st);
    fs::write(d.path().join("staging").join("junk"), b"x").unwrap();
    // A commit that dies after the temp file is durable but before the rename.
    s.faults().crash_at(CrashPoint::BeforeRename);
    assert!(write(&s, 2, 0, &pattern(2, 50_000), 1, 1, true).is_err());
    drop(s);
    assert_eq!(staging_count(d.path()), 3);
    let (s, r) = open(d.path());
    assert_eq!(r.temp_files_removed, 3);
    assert_eq!(r.replicas, 0);
    assert!(s.replicas().is_empty());
    assert_eq!(staging_count(d.path()), 0);
}

#[test]
fn journal_rotation_keeps_everything() {
    let d = tmpdir(false);
    let cfg = StoreConfig {
        journal_rotate_bytes: 64 * 1024,
        ..cfg()
    };
    let (s, _) = open_with(d.path(), cfg.clone());
    let mut m = Vec::new();
    write(&s, 1, 0, &[0; 1], 1, 1, true).unwrap();
    model_write(&mut m, 0, &[0]);
    for i in 2..40u64 {
        let data = pattern(i, 7000);
        let off = (i * 9973) % 200_000;
        write(&s, 1, off, &data, 1, i, false).unwrap();
        model_write(&mut m, off, &data);
    }
    let st = s.stats();
    assert!(st.rotations >= 3, "{st:?}");
    assert_eq!(st.rotation_failures, 0);
    drop(s);
    assert_eq!(journal_files(d.path()).len(), 1);
    let (s, r) = open_with(d.path(), cfg);
    assert!(r.journal_records_replayed < 10, "{r:?}");
    assert_eq!(read_all(&s, 1, 1), m);
}
