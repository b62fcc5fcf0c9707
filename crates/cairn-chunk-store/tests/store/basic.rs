//! Round trips, holes, short reads, version/serial rules, truncate, install, delete, locking.

use cairn_chunk_store::{ChunkStore, StoreConfig, StoreError};

use crate::common::*;

#[test]
fn create_and_read_back_at_many_sizes_and_offsets() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let sizes = [0usize, 1, 4095, 4096, 4097, 3 * 4096 + 5, 100_000];
    let offsets = [0u64, 1, 4095, 4096, 10_000];
    let mut id = 0;
    for &len in &sizes {
        for &off in &offsets {
            id += 1;
            let data = pattern(id, len);
            let info = write(&s, id, off, &data, 5, 1, true).unwrap();
            let want_len = if len == 0 { 0 } else { off + len as u64 };
            assert_eq!((info.length, info.version, info.serial), (want_len, 5, 1));
            let mut model = Vec::new();
            model_write(&mut model, off, &data);
            assert_eq!(read_all(&s, id, 5), model, "len {len} off {off}");
            // Reads at odd places, including across the end.
            for (at, n) in [
                (0u64, 1usize),
                (off, 4097),
                (want_len.saturating_sub(3), 10),
                (want_len, 5),
            ] {
                let mut buf = vec![0xeeu8; n];
                let got = s.read(id, 5, at, &mut buf).unwrap();
                let want_n = (want_len.saturating_sub(at) as usize).min(n);
                assert_eq!(got, want_n);
                let from = (at as usize).min(model.len());
                assert_eq!(&buf[..got], &model[from..from + got]);
            }
        }
    }
    let full = pattern(99, CAP as usize);
    write(&s, 1000, 0, &full, 1, 1, true).unwrap();
    assert_eq!(read_all(&s, 1000, 1), full);
    assert_eq!(s.verify(1000).unwrap(), CAP);
    assert_eq!(s.replicas().len(), id as usize + 1);
}

#[test]
fn mutations_of_an_existing_replica_follow_a_model() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let mut m = Vec::new();
    let writes: [(u64, usize); 6] = [
        (0, 10_000),
        (5000, 100),       // overwrite inside a block
        (20_000, 30_000),  // gap of holes, then multi-block
        (4096, 8192),      // aligned
        (49_999, 1),       // the last byte
        (200_000, 20_000), // far gap, beyond the memory stage limit
    ];
    for (i, &(off, len)) in writes.iter().enumerate() {
        let data = pattern(i as u64 + 7, len);
        let info = write(&s, 1, off, &data, 3, i as u64 + 1, i == 0).unwrap();
        model_write(&mut m, off, &data);
        assert_eq!(info.length, m.len() as u64);
        assert_eq!(read_all(&s, 1, 3), m, "after write {i}");
    }
    assert_eq!(s.verify(1).unwrap(), m.len() as u64);
    drop(s);
    let (s, r) = open(d.path());
    assert_eq!(r.replicas, 1);
    assert_eq!(read_all(&s, 1, 3), m);
}

#[test]
fn version_and_serial_rules() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let one = [1u8];
    assert!(matches!(
        write(&s, 9, 0, &one, 1, 1, false),
        Err(StoreError::NotFound(9))
    ));
    assert!(matches!(
        write(&s, 9, 0, &one, 1, 2, true),
        Err(StoreError::OutOfOrder {
            have: 0,
            got: 2,
            ..
        })
    ));
    assert!(s.info(9).is_none());
    write(&s, 9, 0, &one, 4, 1, true).unwrap();
    assert!(matches!(
        write(&s, 9, 0, &one, 3, 2, false),
        Err(StoreError::Stale {
            have: 4,
            want: 3,
            ..
        })
    ));
    assert!(matches!(
        write(&s, 9, 0, &one, 4, 1, false),
        Err(StoreError::OutOfOrder {
            have: 1,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        write(&s, 9, 0, &one, 4, 3, false),
        Err(StoreError::OutOfOrder {
            have: 1,
            got: 3,
            ..
        })
    ));
    // `create` on an existing replica is an ordinary mutation.
    write(&s, 9, 1, &one, 4, 2, true).unwrap();
    let mut buf = [0u8; 4];
    assert!(matches!(
        s.read(9, 5, 0, &mut buf),
        Err(StoreError::Stale {
            have: 4,
            want: 5,
            ..
        })
    ));
    assert!(matches!(
        s.read(8, 4, 0, &mut buf),
        Err(StoreError::NotFound(8))
    ));

    assert!(matches!(
        s.set_version(9, 4, 4),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        s.set_version(9, 2, 3),
        Err(StoreError::Stale {
            have: 4,
            want: 2,
            ..
        })
    ));
    let i = s.set_version(9, 4, 6).unwrap();
    assert_eq!((i.version, i.serial, i.length), (6, 0, 2));
    assert_eq!(s.set_version(9, 4, 6).unwrap(), i, "idempotent at `to`");
    assert!(matches!(
        s.set_version(8, 1, 2),
        Err(StoreError::NotFound(8))
    ));
    assert!(matches!(
        write(&s, 9, 0, &one, 6, 2, false),
        Err(StoreError::OutOfOrder { have: 0, .. })
    ));
    write(&s, 9, 0, &[7], 6, 1, false).unwrap();
    drop(s);
    let (s, _) = open(d.path());
    assert_eq!(s.info(9).map(|i| (i.version, i.serial)), Some((6, 1)));
    assert_eq!(read_all(&s, 9, 6), vec![7, 1]);
}

#[test]
fn capacity_limits_are_invalid_arguments() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    assert!(matches!(
        s.stage(1, CAP + 1, CAP),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        s.stage(1, 0, 0),
        Err(StoreError::InvalidArgument(_))
    ));
    let mut st = s.stage(1, CAP - 10, CAP).unwrap();
    st.write(&[1; 10]).unwrap();
    assert!(matches!(
        st.write(&[1]),
        Err(StoreError::InvalidArgument(_))
    ));
    s.commit_write(st, 1, 1, true).unwrap();
    assert!(matches!(
        s.truncate(1, 1, 2, false, CAP + 1, CAP),
        Err(StoreError::InvalidArgument(_))
    ));
    // A staged write for a larger capacity cannot overflow the replica's own.
    let mut st = s.stage(1, CAP, 2 * CAP).unwrap();
    st.write(&[1; 10]).unwrap();
    assert!(matches!(
        s.commit_write(st, 1, 2, false),
        Err(StoreError::InvalidArgument(_))
    ));
    assert_eq!(s.info(1).unwrap().serial, 1);
}

#[test]
fn truncate_shrinks_grows_with_zeros_and_creates() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let data = pattern(1, 20_000);
    write(&s, 1, 0, &data, 1, 1, true).unwrap();
    s.truncate(1, 1, 2, false, 5000, CAP).unwrap();
    assert_eq!(read_all(&s, 1, 1), data[..5000]);
    // Growing must not resurrect the dropped bytes of the partial block.
    let i = s.truncate(1, 1, 3, false, 12_000, CAP).unwrap();
    assert_eq!(i.length, 12_000);
    let mut m = data[..5000].to_vec();
    m.resize(12_000, 0);
    assert_eq!(read_all(&s, 1, 1), m);
    // A write past the end after a shrink: the gap reads as zeros.
    s.truncate(1, 1, 4, false, 3000, CAP).unwrap();
    write(&s, 1, 9000, &[5; 10], 1, 5, false).unwrap();
    let mut m = data[..3000].to_vec();
    model_write(&mut m, 9000, &[5; 10]);
    assert_eq!(read_all(&s, 1, 1), m);
    // Truncate to the same length still consumes the serial.
    assert_eq!(s.truncate(1, 1, 6, false, 9010, CAP).unwrap().serial, 6);

    assert!(matches!(
        s.truncate(2, 1, 1, false, 10, CAP),
        Err(StoreError::NotFound(2))
    ));
    let i = s.truncate(2, 7, 1, true, 100_000, CAP).unwrap();
    assert_eq!((i.version, i.length, i.serial), (7, 100_000, 1));
    assert_eq!(read_all(&s, 2, 7), vec![0; 100_000]);
    assert_eq!(s.verify(2).unwrap(), 100_000);
    drop(s);
    let (s, _) = open(d.path());
    assert_eq!(read_all(&s, 1, 1), m);
    assert_eq!(read_all(&s, 2, 7), vec![0; 100_000]);
}

#[test]
fn install_replaces_atomically_and_survives_reopen() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 3, 0, &pattern(1, 50_000), 1, 1, true).unwrap();
    write(&s, 3, 10, &pattern(2, 100), 1, 2, false).unwrap();
    let new = pattern(3, 30_000);
    let mut st = s.stage(3, 0, CAP).unwrap();
    st.write(&new).unwrap();
    let i = s.install(st, 9, 4).unwrap();
    assert_eq!((i.version, i.serial, i.length), (9, 4, 30_000));
    assert_eq!(read_all(&s, 3, 9), new);
    let mut st = s.stage(4, 5, CAP).unwrap();
    st.write(&[1]).unwrap();
    assert!(matches!(
        s.install(st, 1, 1),
        Err(StoreError::InvalidArgument(_))
    ));
    let mut st = s.stage(4, 0, CAP).unwrap();
    st.write(&[1, 2]).unwrap();
    s.install(st, 2, 0).unwrap();
    drop(s);
    // The journal still names the old incarnation of chunk 3: replay must skip it.
    let (s, r) = open(d.path());
    assert_eq!(r.journal_records_replayed, 0);
    assert_eq!(read_all(&s, 3, 9), new);
    assert_eq!(read_all(&s, 4, 2), vec![1, 2]);
    assert_eq!(staging_count(d.path()), 0);
}

#[test]
fn delete_is_durable_and_old_records_never_touch_a_new_replica() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 5, 0, &pattern(1, 9000), 1, 1, true).unwrap();
    write(&s, 5, 100, &pattern(2, 9000), 1, 2, false).unwrap();
    write(&s, 6, 0, &[1], 1, 1, true).unwrap();
    s.delete(5).unwrap();
    assert!(matches!(s.delete(5), Err(StoreError::NotFound(5))));
    assert!(s.info(5).is_none());
    assert!(!chunk_file(d.path(), 5).exists());
    s.delete(6).unwrap();
    let fresh = pattern(3, 500);
    write(&s, 6, 0, &fresh, 2, 1, true).unwrap();
    drop(s);
    let (s, r) = open(d.path());
    assert_eq!(r.replicas, 1);
    // Only the fresh replica's own Create record applies: chunk 5's write and delete and
    // the old chunk 6's create and delete name replicas that are gone.
    assert_eq!(r.journal_records_replayed, 1);
    assert!(s.info(5).is_none() && !chunk_file(d.path(), 5).exists());
    assert_eq!(read_all(&s, 6, 2), fresh);
}

#[test]
fn staged_writes_leave_nothing_behind() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let mut st = s.stage(1, 0, CAP).unwrap();
    st.write(&pattern(1, 100_000)).unwrap();
    assert_eq!(st.len(), 100_000);
    assert_eq!(staging_count(d.path()), 1, "spilled to a temp file");
    drop(st);
    assert_eq!(staging_count(d.path()), 0);
    write(&s, 1, 0, &pattern(1, 100_000), 1, 1, true).unwrap();
    write(&s, 1, 0, &pattern(2, 100_000), 1, 2, true).unwrap();
    assert_eq!(staging_count(d.path()), 0);
    assert!(s.info(2).is_none());
}

#[test]
fn a_directory_is_used_by_one_store_at_a_time() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let err = ChunkStore::open(d.path(), cfg()).expect_err("second open must fail");
    assert!(
        matches!(err, StoreError::Io(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{err}"
    );
    drop(s);
    open(d.path());
}

#[test]
fn capacity_and_reserve() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 1, 0, &[1; 1000], 1, 1, true).unwrap();
    s.truncate(2, 1, 1, true, 5000, CAP).unwrap();
    let c = s.capacity().unwrap();
    assert_eq!(c.replica_bytes, 6000);
    assert!(c.total_bytes > 0 && c.free_bytes <= c.total_bytes);
    drop(s);
    let (s, _) = open_with(
        d.path(),
        StoreConfig {
            reserve_bytes: u64::MAX,
            ..cfg()
        },
    );
    assert!(matches!(s.stage(3, 0, CAP), Err(StoreError::NoSpace(_))));
    assert!(matches!(
        s.truncate(3, 1, 1, true, 10, CAP),
        Err(StoreError::NoSpace(_))
    ));
    let mut st = s.stage(1, 0, CAP).unwrap();
    st.write(&[2; 10]).unwrap();
    s.commit_write(st, 1, 2, false)
        .expect("existing replicas still mutate");
    let mut st = s.stage(1, 0, CAP).unwrap();
    st.write(&[2; 10]).unwrap();
    assert!(matches!(s.install(st, 1, 1), Err(StoreError::NoSpace(_))));
}
