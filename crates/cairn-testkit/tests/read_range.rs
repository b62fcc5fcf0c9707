//! `Posix::read_range`, the in-task read the mount uses for random reads: exact ranges
//! across chunk boundaries and the end of the file, failover past corrupt replicas, and
//! an error, never bad bytes, when every replica is corrupt.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use bytes::Bytes;
use cairn_testkit::{TEST_CHUNK_SIZE, TestCluster, init_logging, pattern};

/// Replica files of `chunk_id` on every chunk server.
fn replica_files(cluster: &TestCluster, chunk_id: u64) -> Vec<PathBuf> {
    (0..cluster.chunkserver_count())
        .map(|i| {
            cluster
                .chunkserver_dir(i)
                .join("store")
                .join("chunks")
                .join(format!("{:02x}", chunk_id & 0xff))
                .join(format!("{chunk_id:016x}.chunk"))
        })
        .filter(|p| p.exists())
        .collect()
}

/// Overwrites the last 100 bytes of a replica file (the end of its data).
fn corrupt_tail(path: &PathBuf) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::End(-100))?;
    f.write_all(&[0xA5; 100])?;
    f.sync_all()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_range_answers_exact_ranges_and_never_bad_bytes() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    let cs = TEST_CHUNK_SIZE;
    let len = 2 * cs + cs / 2;
    let data = Bytes::from(pattern(7, len as usize));
    let attr = client.write_all("/f", data.clone(), false).await?;
    let posix = client.posix();
    let layout = posix.layout(attr.inode).await?;
    assert_eq!(layout.chunk_size, cs);

    let cases = [
        (0, 4096),
        (12_345, 1),
        (cs - 100, 300),    // across the first chunk boundary
        (cs - 10, cs + 20), // over a whole chunk
        (len - 50, 50),     // the last bytes
        (len - 50, 4096),   // past the end: clipped
        (len, 4096),        // at the end: nothing
        (len + 10, 10),     // beyond it: nothing
    ];
    for (off, n) in cases {
        let got = posix.read_range(&layout, off, n).await?;
        let end = (off + n).min(len).max(off.min(len));
        let want = &data[off.min(len) as usize..end as usize];
        assert!(got == want, "read_range({off}, {n}): {} bytes", got.len());
    }

    let (_, chunks) = client.chunks("/f").await?;
    let id = |index: u64| {
        chunks
            .iter()
            .find(|c| c.index == index)
            .map(|c| c.chunk_id)
            .ok_or_else(|| anyhow::anyhow!("no chunk {index}"))
    };
    // Two of chunk 0's three replicas corrupt at their end: still the right bytes.
    let files = replica_files(&cluster, id(0)?);
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files[..2] {
        corrupt_tail(f)?;
    }
    let got = posix.read_range(&layout, cs - 300, 200).await?;
    assert!(got == data[(cs - 300) as usize..(cs - 100) as usize]);
    // Every replica of chunk 1 corrupt: an error, not the damaged bytes.
    for f in &replica_files(&cluster, id(1)?) {
        corrupt_tail(f)?;
    }
    let bad = posix.read_range(&layout, 2 * cs - 100, 50).await;
    assert!(
        bad.is_err(),
        "read {} bytes of a chunk with no good replica",
        bad.map_or(0, |b| b.len())
    );
    Ok(())
}
