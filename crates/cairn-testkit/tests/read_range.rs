//! `Posix::read_range`, the in-task read the mount uses for random reads: exact ranges
//! across chunk boundaries and the end of the file, failover past corrupt replicas, and
//! an error, never bad bytes, when every replica is corrupt; a layout kept across a
//! repair; and many streamed reads on one connection that all succeed at the first try.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use bytes::Bytes;
use std::time::Duration;

use cairn_proto::pb;
use cairn_proto::pb::chunk_service_client::ChunkServiceClient;
use cairn_testkit::http::{get, samples};
use cairn_testkit::{TEST_CHUNK_SIZE, TestCluster, init_logging, pattern, wait_for_repair};

/// Location requests (`GetChunks`) the master has answered.
async fn location_requests(cluster: &TestCluster) -> anyhow::Result<f64> {
    let (_, text) = get(&cluster.master_http_addr(), "/metrics").await?;
    Ok(samples(&text)?
        .get("cairn_master_rpc_requests_total{code=Ok,method=Master/GetChunks}")
        .copied()
        .unwrap_or(0.0))
}

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

/// Thousands of streamed range reads through one client, so over one connection to the
/// chunk server. A stream the client dropped before its closing status was reset, and h2
/// ends a connection after its 1,024th reset: the reads in flight then failed over and
/// asked the master for the chunk's locations again. Every read must succeed at the first
/// try, which the master's count of location requests shows: one per read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_reads_keep_their_connection() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder()
        .chunkservers(1)
        .goal(1)
        .start()
        .await?;
    let client = cluster.client().await?;
    // Above the one-answer read's size, so each read is a stream.
    let data = Bytes::from(pattern(3, cairn_proto::SMALL_READ_BYTES + 40_000));
    client.write_all("/s", data.clone(), false).await?;
    let before = location_requests(&cluster).await?;
    const TASKS: usize = 4;
    const READS: usize = 1000;
    for _ in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let (client, data) = (client.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..READS {
                    anyhow::ensure!(client.read_all("/s").await? == data, "wrong bytes");
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
    }
    let asked = location_requests(&cluster).await? - before;
    assert_eq!(
        asked,
        (3 * TASKS * READS) as f64,
        "location requests for {} reads",
        3 * TASKS * READS
    );
    Ok(())
}

/// A mount keeps a file's layout while the file is open. When a repair moves a chunk to a
/// new version, the first read through the old layout finds its replicas `Stale` and asks
/// the master again; the layout takes the answer, so the reads after it (through any clone
/// of it) go straight to the moved replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_layout_follows_a_repair() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    let data = Bytes::from(pattern(5, 100_000));
    let attr = client.write_all("/r", data.clone(), false).await?;
    let posix = client.posix();
    let layout = posix.layout(attr.inode).await?;
    let copy = layout.clone();
    assert!(posix.read_range(&layout, 0, 4096).await? == data[..4096]);

    // Damage one replica, have its server find it, and wait for the repair.
    let (_, chunks) = client.chunks("/r").await?;
    let chunk = chunks[0].clone();
    let i = (0..cluster.chunkserver_count())
        .find(|i| cluster.chunkserver_addr(*i) == chunk.replicas[0])
        .ok_or_else(|| anyhow::anyhow!("no server at {}", chunk.replicas[0]))?;
    let file = replica_files(&cluster, chunk.chunk_id)
        .into_iter()
        .find(|f| f.starts_with(cluster.chunkserver_dir(i)))
        .ok_or_else(|| anyhow::anyhow!("no replica file on server {i}"))?;
    corrupt_tail(&file)?;
    let mut cs = ChunkServiceClient::new(cairn_common::grpc::lazy_channel(
        &chunk.replicas[0],
        Duration::from_secs(2),
    )?);
    let check = pb::ReadRequest {
        chunk_id: chunk.chunk_id,
        version: chunk.version,
        offset: 0,
        length: data.len() as u64,
    };
    assert!(
        cs.read_small(check).await.is_err(),
        "the damage went unseen"
    );
    wait_for_repair(&client, "/r", chunk.version).await?;

    let before = location_requests(&cluster).await?;
    assert!(posix.read_range(&layout, 4096, 4096).await? == data[4096..8192]);
    let after_first = location_requests(&cluster).await?;
    assert_eq!(after_first - before, 1.0, "the first read asks once");
    for k in 0..10 {
        let off = 10_000 * k;
        assert!(posix.read_range(&copy, off as u64, 500).await? == data[off..off + 500]);
    }
    let mut reader = posix.reader(&layout, 0, data.len() as u64);
    let mut back = Vec::new();
    while let Some(piece) = reader.next().await? {
        back.extend_from_slice(&piece);
    }
    assert!(back == data);
    assert_eq!(
        location_requests(&cluster).await?,
        after_first,
        "reads after the first went to the old replicas again"
    );
    Ok(())
}
