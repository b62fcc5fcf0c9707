//! Injected ENOSPC and EIO: the failing operation reports it, nothing stored is damaged,
//! and the store works again once the fault is gone.

use cairn_chunk_store::StoreError;
use std::fs;

use crate::common::*;

#[test]
fn enospc_while_staging_or_committing_damages_nothing() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let m = pattern(1, 30_000);
    write(&s, 1, 0, &m, 1, 1, true).unwrap();
    let journal_len = fs::metadata(&journal_files(d.path())[0]).unwrap().len();

    s.faults().fail_writes(u64::MAX);
    // Staging past the memory limit spills to a file: refused.
    let mut st = s.stage(2, 0, CAP).unwrap();
    assert!(matches!(
        st.write(&pattern(2, 50_000)),
        Err(StoreError::NoSpace(_))
    ));
    drop(st);
    assert_eq!(staging_count(d.path()), 0);
    // A small (in-memory) write to the existing replica: refused at commit.
    let mut st = s.stage(1, 0, CAP).unwrap();
    st.write(&[9; 100]).unwrap();
    assert!(matches!(
        s.commit_write(st, 1, 2, false),
        Err(StoreError::NoSpace(_))
    ));
    // A truncate (no space to reserve): refused when appending to the journal.
    assert!(matches!(
        s.truncate(1, 1, 2, false, 10, CAP),
        Err(StoreError::NoSpace(_))
    ));
    assert!(matches!(
        s.set_version(1, 1, 2),
        Err(StoreError::NoSpace(_))
    ));
    // A new replica from memory: refused while writing its file.
    let mut st = s.stage(3, 0, CAP).unwrap();
    st.write(&[1; 10]).unwrap();
    assert!(matches!(
        s.commit_write(st, 1, 1, true),
        Err(StoreError::NoSpace(_))
    ));
    assert!(matches!(
        s.truncate(4, 1, 1, true, 10, CAP),
        Err(StoreError::NoSpace(_))
    ));

    assert_eq!(s.info(1).unwrap().serial, 1);
    assert_eq!(read_all(&s, 1, 1), m);
    assert!(s.info(3).is_none() && s.info(4).is_none());
    assert_eq!(staging_count(d.path()), 0);
    assert_eq!(
        fs::metadata(&journal_files(d.path())[0]).unwrap().len(),
        journal_len
    );

    s.faults().clear();
    write(&s, 1, 0, &[9; 100], 1, 2, false).unwrap();
    s.truncate(1, 1, 3, false, 20_000, CAP).unwrap();
    write(&s, 3, 0, &[1; 10], 1, 1, true).unwrap();
    let mut want = m[..20_000].to_vec();
    want[..100].fill(9);
    drop(s);
    let (s, r) = open(d.path());
    // The write and truncate of chunk 1, and chunk 3's journaled Create.
    assert_eq!(r.journal_records_replayed, 3);
    assert!(!r.torn_tail_cut);
    assert_eq!(read_all(&s, 1, 1), want);
    assert_eq!(read_all(&s, 3, 1), vec![1; 10]);
}

#[test]
fn enospc_in_the_middle_of_a_journal_append_is_cut_back() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 1, 0, &[1; 100], 1, 1, true).unwrap();
    write(&s, 1, 0, &[2; 100], 1, 2, false).unwrap();
    let journal_len = fs::metadata(&journal_files(d.path())[0]).unwrap().len();
    let mut st = s.stage(1, 0, CAP).unwrap();
    st.write(&[3; 100]).unwrap();
    // A truncate reserves no space: its first hooked write is the journal append.
    s.faults().fail_writes(1);
    assert!(matches!(
        s.truncate(1, 1, 3, false, 50, CAP),
        Err(StoreError::NoSpace(_))
    ));
    assert_eq!(
        fs::metadata(&journal_files(d.path())[0]).unwrap().len(),
        journal_len
    );
    s.commit_write(st, 1, 3, false).unwrap();
    drop(s);
    let (s, r) = open(d.path());
    // Chunk 1's journaled Create, its second write, and the last commit.
    assert_eq!((r.journal_records_replayed, r.torn_tail_cut), (3, false));
    assert_eq!(read_all(&s, 1, 1), vec![3; 100]);
}

#[test]
fn a_failed_journal_sync_discards_the_record() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 1, 0, &[1; 100], 1, 1, true).unwrap();
    s.faults().fail_syncs(1);
    let err = write(&s, 1, 0, &[2; 100], 1, 2, false).unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err}");
    assert_eq!(s.info(1).unwrap().serial, 1);
    assert_eq!(read_all(&s, 1, 1), vec![1; 100]);
    // The mutation can be retried with the same serial.
    write(&s, 1, 0, &[3; 50], 1, 2, false).unwrap();
    drop(s);
    let (s, r) = open(d.path());
    // Chunk 1's journaled Create and the retried write; the failed one was discarded.
    assert_eq!(r.journal_records_replayed, 2);
    let mut want = vec![3; 50];
    want.extend([1; 50]);
    assert_eq!(read_all(&s, 1, 1), want);
}

#[test]
fn a_failed_sync_of_a_new_replica_leaves_nothing() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    s.faults().fail_syncs(1);
    assert!(matches!(
        write(&s, 1, 0, &pattern(1, 50_000), 1, 1, true),
        Err(StoreError::Io(_))
    ));
    assert!(s.info(1).is_none());
    assert!(!chunk_file(d.path(), 1).exists());
    assert_eq!(staging_count(d.path()), 0);
    write(&s, 1, 0, &pattern(1, 50_000), 1, 1, true).unwrap();
}

#[test]
fn a_failed_checkpoint_keeps_the_journal() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 1, 0, &[1; 10], 1, 1, true).unwrap();
    write(&s, 1, 0, &[2; 500], 1, 2, false).unwrap();
    let j = journal_files(d.path());
    s.faults().fail_syncs(1);
    assert!(matches!(s.checkpoint(), Err(StoreError::Io(_))));
    assert_eq!(journal_files(d.path()), j, "journal kept");
    write(&s, 1, 0, &[3; 600], 1, 3, false).unwrap();
    s.checkpoint().unwrap();
    assert_ne!(journal_files(d.path()), j);
    assert_eq!(s.stats().rotations, 1);
    drop(s);
    let (s, r) = open(d.path());
    assert_eq!(r.journal_records_replayed, 0);
    assert_eq!(read_all(&s, 1, 1), vec![3; 600]);
}
