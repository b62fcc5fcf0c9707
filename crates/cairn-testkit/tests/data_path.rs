//! End-to-end data path: files of many sizes through a real in-process cluster.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use cairn_testkit::{TestCluster, init_logging, pattern};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_get_multi_chunk_file_and_every_chunk_on_three_servers() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().chunkservers(4).start().await?;
    let client = cluster.client().await?;
    client.mkdir("/data", false).await?;
    // 3.5 chunks of 1 MiB, not block aligned.
    let data = Bytes::from(pattern(1, (3 << 20) + 512 * 1024 + 17));
    let attr = client.write_all("/data/f", data.clone(), false).await?;
    assert_eq!(attr.size, data.len() as u64);
    let back = tokio::time::timeout(Duration::from_secs(30), client.read_all("/data/f")).await??;
    assert_eq!(back.len(), data.len());
    assert!(back == data, "content differs");
    let (_, chunks) = client.chunks("/data/f").await?;
    assert_eq!(chunks.len(), 4);
    for c in &chunks {
        let distinct: HashSet<_> = c.replicas.iter().collect();
        assert_eq!(distinct.len(), 3, "chunk {} on {:?}", c.index, c.replicas);
    }
    // A range read across a chunk boundary.
    let part = client.read("/data/f", (1 << 20) - 10, 20).await?;
    assert_eq!(&part[..], &data[(1 << 20) - 10..(1 << 20) + 10]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_and_tiny_files() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    client.create("/empty", false).await?;
    assert_eq!(client.read_all("/empty").await?.len(), 0);
    client
        .write_all("/one", Bytes::from_static(b"x"), false)
        .await?;
    assert_eq!(&client.read_all("/one").await?[..], b"x");
    Ok(())
}
