//! Damaged bytes on disk are detected and never returned.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use cairn_chunk_store::StoreError;

use crate::common::*;

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn a_flipped_data_byte_fails_only_its_block() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let data = pattern(1, 40_000);
    write(&s, 1, 0, &data, 1, 1, true).unwrap();
    let d0 = data_offset(CAP, 4096);
    flip(&chunk_file(d.path(), 1), d0 + 2 * 4096 + 17);

    let mut buf = vec![0u8; 100];
    let err = s.read(1, 1, 2 * 4096 + 50, &mut buf).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { chunk_id: 1, .. }),
        "{err}"
    );
    assert!(
        buf.iter().all(|&b| b == 0),
        "nothing of a failed read is handed out"
    );
    // A read spanning the bad block fails as a whole.
    let mut big = vec![0u8; 20_000];
    assert!(matches!(
        s.read(1, 1, 0, &mut big),
        Err(StoreError::Corrupt { .. })
    ));
    // Other blocks read fine, including right up to the bad one.
    let mut ok = vec![0u8; 2 * 4096];
    assert_eq!(s.read(1, 1, 0, &mut ok).unwrap(), 2 * 4096);
    assert_eq!(ok, data[..2 * 4096]);
    let mut tail = vec![0u8; 40_000 - 3 * 4096];
    s.read(1, 1, 3 * 4096, &mut tail).unwrap();
    assert_eq!(tail, data[3 * 4096..]);
    assert!(matches!(s.verify(1), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_flipped_crc_entry_or_last_partial_block_is_detected() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 1, 0, &pattern(1, 10_000), 1, 1, true).unwrap();
    let path = chunk_file(d.path(), 1);
    // CRC table entry of block 0.
    flip(&path, 512 + 1);
    let mut b = [0u8; 10];
    assert!(matches!(
        s.read(1, 1, 0, &mut b),
        Err(StoreError::Corrupt { .. })
    ));
    // The last, partial block (bytes 8192..10000).
    flip(&path, data_offset(CAP, 4096) + 9999);
    assert!(matches!(
        s.read(1, 1, 9990, &mut b),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(s.read(1, 1, 4096, &mut b).unwrap(), 10);
}

#[test]
fn a_replica_file_cut_short_reads_as_corrupt() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 1, 0, &pattern(1, 20_000), 1, 1, true).unwrap();
    let f = OpenOptions::new()
        .write(true)
        .open(chunk_file(d.path(), 1))
        .unwrap();
    f.set_len(data_offset(CAP, 4096) + 10_000).unwrap();
    let mut b = [0u8; 100];
    assert!(matches!(
        s.read(1, 1, 15_000, &mut b),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(s.read(1, 1, 100, &mut b).unwrap(), 100);
}

#[test]
fn a_bad_header_removes_the_replica_at_open() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    // Larger than the in-memory staging limit: made as files, with no journal record that
    // could restore them.
    write(&s, 1, 0, &pattern(1, 9000), 1, 1, true).unwrap();
    write(&s, 2, 0, &pattern(2, 9000), 1, 1, true).unwrap();
    write(&s, 0x102, 0, &pattern(3, 9000), 1, 1, true).unwrap();
    drop(s);
    flip(&chunk_file(d.path(), 1), 30); // inside the version field
    // A file claiming to be chunk 0x102 under the name of chunk 0x202 is bad too.
    std::fs::rename(chunk_file(d.path(), 0x102), chunk_file(d.path(), 0x202)).unwrap();
    let (s, r) = open(d.path());
    assert_eq!(r.bad_replicas_removed, vec![1, 0x202]);
    assert_eq!(r.replicas, 1);
    assert!(s.info(1).is_none() && !chunk_file(d.path(), 1).exists());
    assert_eq!(read_all(&s, 2, 1), pattern(2, 9000));
}

#[test]
fn a_small_replica_with_a_bad_header_is_restored_from_its_journaled_create() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    write(&s, 1, 0, &pattern(1, 5000), 1, 1, true).unwrap();
    write(&s, 1, 100, &pattern(2, 300), 1, 2, false).unwrap();
    drop(s);
    flip(&chunk_file(d.path(), 1), 30);
    let (s, r) = open(d.path());
    assert!(r.bad_replicas_removed.is_empty(), "{r:?}");
    let mut want = pattern(1, 5000);
    want[100..400].copy_from_slice(&pattern(2, 300));
    assert_eq!(read_all(&s, 1, 1), want);
    assert_eq!(s.info(1).unwrap().serial, 2);
}

#[test]
fn a_damaged_header_fails_verification_while_reads_stay_correct() {
    for (n, len) in [(1u64, 10_000usize), (2, 0)] {
        let d = tmpdir(false);
        let (s, _) = open(d.path());
        let data = pattern(n, len);
        write(&s, n, 0, &data, 1, 1, true).unwrap();
        assert_eq!(
            s.verify(n).unwrap(),
            len as u64,
            "an intact replica verifies"
        );
        s.check_header(n).unwrap();
        // A byte the header's CRC covers (the replica's length field).
        flip(&chunk_file(d.path(), n), 33);
        let err = s.verify(n).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { chunk_id, .. } if chunk_id == n),
            "{err}"
        );
        assert!(matches!(s.check_header(n), Err(StoreError::Corrupt { .. })));
        // Reads use the header the store holds in memory: still the right bytes.
        let mut buf = vec![0u8; len];
        assert_eq!(s.read(n, 1, 0, &mut buf).unwrap(), len);
        assert_eq!(buf, data);
    }
}

#[test]
fn a_cached_read_checks_versions_and_blocks_as_a_read_does() {
    let d = tmpdir(false);
    let (s, _) = open(d.path());
    let data = pattern(2, 40_000);
    write(&s, 1, 0, &data, 1, 1, true).unwrap();

    // Just written, so its pages are cached: answered without waiting, same bytes.
    let mut buf = vec![0u8; 10_000];
    let got = s.read_cached(1, 1, 5_000, &mut buf).unwrap();
    assert_eq!(
        got,
        Some(10_000),
        "a replica just written is in the page cache"
    );
    assert_eq!(buf, data[5_000..15_000]);
    // Past the end it is short, as a read is.
    let mut tail = vec![0u8; 10_000];
    assert_eq!(s.read_cached(1, 1, 35_000, &mut tail).unwrap(), Some(5_000));
    assert_eq!(tail[..5_000], data[35_000..]);
    assert!(matches!(
        s.read_cached(1, 2, 0, &mut buf),
        Err(StoreError::Stale { .. })
    ));
    assert!(matches!(
        s.read_cached(9, 1, 0, &mut buf),
        Err(StoreError::NotFound(9))
    ));

    // A damaged block in the page cache is found by the cached read too.
    let d0 = data_offset(CAP, 4096);
    flip(&chunk_file(d.path(), 1), d0 + 2 * 4096 + 17);
    let mut small = vec![0u8; 100];
    match s.read_cached(1, 1, 2 * 4096 + 50, &mut small) {
        Err(StoreError::Corrupt { chunk_id: 1, .. }) => {}
        // Not cached after all (the kernel dropped the pages): the blocking read decides.
        Ok(None) => assert!(matches!(
            s.read(1, 1, 2 * 4096 + 50, &mut small),
            Err(StoreError::Corrupt { .. })
        )),
        other => panic!("a damaged block was not reported: {other:?}"),
    }
    assert!(
        small.iter().all(|&b| b == 0),
        "nothing of a failed read is handed out"
    );
}
