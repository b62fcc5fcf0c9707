//! First chunks placed when a file is created for writing ("prepared" leases): small files
//! skip `PrepareWrite`, the chunk joins the file only with the commit of its write, and
//! each way that can go wrong (the master restarts in between, another writer takes the
//! slot first, the lease is never used) still leaves exactly the acknowledged bytes.

use std::time::Duration;

use bytes::Bytes;
use cairn_client::{Kind, NewNode};
use cairn_testkit::{TestCluster, init_logging, pattern, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROOT: u64 = 1;

fn new_file() -> NewNode {
    NewNode {
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}

/// Calls of `method` the master answered, from its `/metrics`.
async fn master_calls(cluster: &TestCluster, method: &str) -> anyhow::Result<f64> {
    let mut s = tokio::net::TcpStream::connect(cluster.master_http_addr()).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    let prefix = format!("cairn_master_rpc_requests_total{{method=\"{method}\",");
    Ok(text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Replica files on every chunk server.
fn replica_files(cluster: &TestCluster) -> usize {
    (0..cluster.chunkserver_count())
        .map(|i| {
            let chunks = cluster.chunkserver_dir(i).join("store").join("chunks");
            std::fs::read_dir(chunks)
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                .filter(|f| f.path().extension().is_some_and(|x| x == "chunk"))
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_files_are_written_without_prepare_write() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    client.mkdir("/d", false).await?;
    for i in 0..20u64 {
        let data = Bytes::from(pattern(i, 100 + 700 * i as usize));
        client.write_all(&format!("/d/f{i}"), data, false).await?;
    }
    assert_eq!(
        master_calls(&cluster, "Master/PrepareWrite").await?,
        0.0,
        "a new small file's first write needs no PrepareWrite"
    );
    for i in 0..20u64 {
        let path = format!("/d/f{i}");
        let back = client.read_all(&path).await?;
        assert!(back == pattern(i, 100 + 700 * i as usize), "{path} differs");
        let (attr, chunks) = client.chunks(&path).await?;
        assert_eq!(attr.chunk_count, 1);
        assert_eq!((chunks[0].version, chunks[0].replicas.len()), (1, 3));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_restart_before_the_commit_makes_it_stale_and_nothing_is_lost()
-> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder()
        .master_config(|c| {
            c.gc_grace = Duration::from_secs(1);
            c.safe_mode_timeout = Duration::from_secs(1);
        })
        .start()
        .await?;
    let client = cluster.client().await?;
    let posix = client.posix();
    let node = posix
        .create_at_for(ROOT, "f", new_file(), true, true)
        .await?;
    let ino = node.attr.inode;
    let cs = posix.layout(ino).await?.chunk_size;
    let data = Bytes::from(pattern(3, 5000));
    // Written under the create's lease; the master forgets the lease when it restarts.
    posix.write(ino, cs, 0, data.clone(), 1).await?;
    cluster.kill_master().await;
    cluster.restart_master().await?;
    let e = posix
        .commit(ino, data.len() as u64)
        .await
        .expect_err("the master no longer knows the chunk");
    assert_eq!(e.kind(), Kind::Stale, "{e}");
    assert_eq!(client.stat("/f").await?.size, 0, "nothing was committed");
    // Written again, the ordinary way, and committed.
    posix.write(ino, cs, 0, data.clone(), 1).await?;
    let attr = posix.commit(ino, data.len() as u64).await?;
    assert_eq!(attr.size, 5000);
    assert!(client.read_all("/f").await? == data);
    // The first chunk's replicas are orphans now and are collected; the file's stay.
    wait_until(
        Duration::from_secs(30),
        "the unbound chunk's replicas to be deleted",
        || async { replica_files(&cluster) == 3 },
    )
    .await?;
    assert!(client.read_all("/f").await? == data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_writer_taking_the_slot_first_makes_the_commit_stale() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let a = cluster.client().await?;
    let b = cluster.client().await?;
    let pa = a.posix();
    let ino = pa
        .create_at_for(ROOT, "f", new_file(), true, true)
        .await?
        .attr
        .inode;
    let cs = pa.layout(ino).await?.chunk_size;
    // B writes the new file first, through PrepareWrite: slot 0 gets another chunk.
    let from_b = Bytes::from(pattern(10, 4000));
    b.write_at("/f", 0, from_b.clone()).await?;
    // A writes under its create's lease, then cannot bind that chunk.
    let from_a = Bytes::from(pattern(11, 4000));
    pa.write(ino, cs, 0, from_a.clone(), 1).await?;
    let e = pa.commit(ino, 4000).await.expect_err("slot 0 is taken");
    assert_eq!(e.kind(), Kind::Stale, "{e}");
    assert!(a.read_all("/f").await? == from_b, "B's acknowledged write");
    // A writes again the ordinary way: into the chunk B's write made.
    pa.write(ino, cs, 0, from_a.clone(), 1).await?;
    pa.commit(ino, 4000).await?;
    assert!(b.read_all("/f").await? == from_a, "A wrote last");
    let (_, chunks) = a.chunks("/f").await?;
    assert_eq!(chunks.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unused_first_chunk_leaves_a_hole() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    let posix = client.posix();
    let ino = posix
        .create_at_for(ROOT, "sparse", new_file(), true, true)
        .await?
        .attr
        .inode;
    let cs = posix.layout(ino).await?.chunk_size;
    // Grown by truncate, never written: slot 0 is a hole, read as zeros (a placed but
    // unwritten chunk there would have no replica to read from).
    posix.truncate(ino, cs, 0, 3000).await?;
    assert!(client.read_all("/sparse").await?.iter().all(|b| *b == 0));
    let (attr, chunks) = client.chunks("/sparse").await?;
    assert_eq!(attr.size, 3000);
    assert!(chunks.iter().all(|c| c.chunk_id == 0), "{chunks:?}");
    // A write past the first chunk is committed without it.
    let tail = Bytes::from(pattern(5, 100));
    posix.write(ino, cs, cs + 10, tail.clone(), 1).await?;
    posix.commit(ino, cs + 110).await?;
    let back = client.read_all("/sparse").await?;
    assert!(back[..cs as usize].iter().all(|b| *b == 0));
    assert!(back[(cs + 10) as usize..] == tail[..]);
    Ok(())
}
