//! The GFS write model: writes at any offset from several clients, truncation, leases
//! moving to a new primary, stale replicas, and retried requests.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_proto::pb;
use cairn_proto::pb::chunk_service_client::ChunkServiceClient;
use cairn_proto::pb::master_client::MasterClient;
use cairn_testkit::{TestCluster, init_logging, pattern, wait_until};
use rand::{Rng, SeedableRng};

const CS: u64 = 1 << 20;

/// Checksums of every replica of every chunk of a file; all replicas of a chunk must agree.
async fn assert_replicas_identical(cluster: &TestCluster, path: &str) -> anyhow::Result<()> {
    let client = cluster.client().await?;
    let (_, chunks) = client.chunks(path).await?;
    for c in chunks.iter().filter(|c| c.chunk_id != 0) {
        let mut sums = BTreeSet::new();
        for addr in &c.replicas {
            let ch = cairn_common::grpc::lazy_channel(addr, Duration::from_secs(2))?;
            let r = ChunkServiceClient::new(ch)
                .replica_state(pb::ReplicaStateRequest {
                    chunk_id: c.chunk_id,
                    with_checksum: true,
                })
                .await?
                .into_inner();
            assert_eq!(
                r.version, c.version,
                "replica of chunk {} on {addr}",
                c.chunk_id
            );
            sums.insert((r.length, r.serial, r.checksum));
        }
        assert_eq!(
            sums.len(),
            1,
            "replicas of chunk {} differ: {sums:?}",
            c.chunk_id
        );
    }
    Ok(())
}

struct Acked {
    start: Instant,
    end: Instant,
    offset: u64,
    data: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_random_writers_match_the_model_and_replicas_agree() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().chunkservers(4).start().await?;
    let setup = cluster.client().await?;
    setup.create("/shared", false).await?;
    let size = 4 * CS;
    let mut tasks = Vec::new();
    for id in 0..3u64 {
        let client = cluster.client().await?;
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(42 + id);
            let mut acked = Vec::new();
            for i in 0..30u64 {
                // Up to 600 KB: small ones go as star writes, larger ones down the
                // chain, so both protocols order mutations of the same chunks.
                let len = rng.random_range(1..600_000u64);
                let offset = rng.random_range(0..size - len);
                let data = pattern(id * 1000 + i + 1, len as usize);
                let start = Instant::now();
                client
                    .write_at("/shared", offset, Bytes::from(data.clone()))
                    .await?;
                acked.push(Acked {
                    start,
                    end: Instant::now(),
                    offset,
                    data,
                });
            }
            anyhow::Ok(acked)
        }));
    }
    let mut writes = Vec::new();
    for t in tasks {
        writes.extend(t.await??);
    }
    let content = setup.read_all("/shared").await?;
    let max_end = writes
        .iter()
        .map(|w| w.offset + w.data.len() as u64)
        .max()
        .unwrap_or(0);
    assert_eq!(
        content.len() as u64,
        max_end,
        "length is the end of the furthest write"
    );
    // Cut the file at every write boundary and chunk boundary: inside one piece, the set of
    // writes covering it is constant and a chunk mutation is atomic, so the piece must hold
    // the bytes of one write that no other covering write strictly followed.
    let mut cuts: BTreeSet<u64> = (0..=max_end / CS).map(|c| c * CS).collect();
    for w in &writes {
        cuts.insert(w.offset);
        cuts.insert(w.offset + w.data.len() as u64);
    }
    cuts.insert(max_end);
    let cuts: Vec<u64> = cuts.into_iter().filter(|c| *c <= max_end).collect();
    for pair in cuts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a == b {
            continue;
        }
        let got = &content[a as usize..b as usize];
        let covering: Vec<&Acked> = writes
            .iter()
            .filter(|w| w.offset <= a && b <= w.offset + w.data.len() as u64)
            .collect();
        if covering.is_empty() {
            assert!(
                got.iter().all(|x| *x == 0),
                "unwritten bytes [{a}, {b}) must be zero"
            );
            continue;
        }
        let latest: Vec<&&Acked> = covering
            .iter()
            .filter(|w| !covering.iter().any(|o| o.start > w.end))
            .collect();
        let matches = latest.iter().any(|w| {
            let from = (a - w.offset) as usize;
            &w.data[from..from + (b - a) as usize] == got
        });
        assert!(
            matches,
            "bytes [{a}, {b}) hold none of the {} writes that could be last",
            latest.len()
        );
    }
    assert_replicas_identical(&cluster, "/shared").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_at_offsets_holes_and_truncate() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let c = cluster.client().await?;
    let mut model = vec![0u8; 0];
    let apply = |model: &mut Vec<u8>, off: usize, data: &[u8]| {
        if model.len() < off + data.len() {
            model.resize(off + data.len(), 0);
        }
        model[off..off + data.len()].copy_from_slice(data);
    };
    // A write far past the end leaves a hole of zeros (two whole chunks never allocated).
    let far = pattern(1, 1000);
    c.write_at("/f", 3 * CS + 10, Bytes::from(far.clone()))
        .await?;
    apply(&mut model, (3 * CS + 10) as usize, &far);
    // A write spanning a chunk boundary updates both chunks.
    let span = pattern(2, 300_000);
    c.write_at("/f", CS - 150_000, Bytes::from(span.clone()))
        .await?;
    apply(&mut model, (CS - 150_000) as usize, &span);
    assert!(c.read_all("/f").await? == model);
    let (attr, chunks) = c.chunks("/f").await?;
    assert_eq!(attr.size, model.len() as u64);
    assert_eq!(chunks[2].chunk_id, 0, "chunk 2 is a hole");
    // Shrink into the middle of a chunk, then grow again: the cut bytes come back as zeros.
    c.truncate("/f", CS + 100).await?;
    model.truncate((CS + 100) as usize);
    assert!(c.read_all("/f").await? == model);
    c.truncate("/f", 2 * CS).await?;
    model.resize((2 * CS) as usize, 0);
    assert!(
        c.read_all("/f").await? == model,
        "grown range reads as zeros"
    );
    let tail = pattern(3, 10);
    c.write_at("/f", 2 * CS - 5, Bytes::from(tail.clone()))
        .await?;
    apply(&mut model, (2 * CS - 5) as usize, &tail);
    assert!(c.read_all("/f").await? == model);
    c.truncate("/f", 0).await?;
    assert_eq!(c.read_all("/f").await?.len(), 0);
    assert_eq!(
        c.chunks("/f").await?.1.len(),
        0,
        "truncate to 0 frees every chunk"
    );
    assert_replicas_identical(&cluster, "/f").await
}

/// The primary the master hands out for chunk `index` of `inode`.
async fn lease_primary(
    master: &str,
    inode: u64,
    index: u64,
) -> anyhow::Result<(u64, u64, Vec<String>)> {
    let ch = cairn_common::grpc::lazy_channel(master, Duration::from_secs(2))?;
    let r = MasterClient::new(ch)
        .prepare_write(pb::PrepareWriteRequest {
            req: None,
            inode,
            chunk_index: index,
            session_id: 0,
        })
        .await?
        .into_inner();
    let lease = r.lease.unwrap_or_default();
    Ok((
        lease.primary_id,
        lease.version,
        r.chain.into_iter().map(|s| s.addr).collect(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_primary_loses_its_lease_and_writes_continue_on_the_rest() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder()
        .chunkservers(4)
        .master_config(|m| m.dead_timeout = Duration::from_secs(3))
        .start()
        .await?;
    let c = cluster.client().await?;
    let first = pattern(5, 600_000);
    let attr = c.write_all("/f", Bytes::from(first.clone()), false).await?;
    let (_, v1, chain) = lease_primary(&cluster.master_addr(), attr.inode, 0).await?;
    let primary = (0..4)
        .find(|i| cluster.chunkserver_addr(*i) == chain[0])
        .expect("primary is a chunk server");
    cluster.kill_chunkserver(primary).await;
    // The next write must go to a new primary at a new version, without the dead server.
    let second = pattern(6, 100_000);
    c.write_at("/f", 50_000, Bytes::from(second.clone()))
        .await?;
    let mut model = first;
    model[50_000..150_000].copy_from_slice(&second);
    assert!(c.read_all("/f").await? == model);
    let (_, v2, chain2) = lease_primary(&cluster.master_addr(), attr.inode, 0).await?;
    assert!(v2 > v1, "version moved on: {v1} -> {v2}");
    assert!(
        !chain2.contains(&chain[0]),
        "the stopped server is out of the chain"
    );
    assert_ne!(chain2[0], chain[0]);
    assert_replicas_identical(&cluster, "/f").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_replica_is_never_served_and_is_deleted() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder()
        .master_config(|m| m.dead_timeout = Duration::from_secs(3))
        .start()
        .await?;
    let c = cluster.client().await?;
    c.write_all("/f", Bytes::from(pattern(7, 500_000)), false)
        .await?;
    let (_, chunks) = c.chunks("/f").await?;
    let (chunk_id, old_version) = (chunks[0].chunk_id, chunks[0].version);
    let victim = 0;
    let victim_addr = cluster.chunkserver_addr(victim);
    cluster.kill_chunkserver(victim).await;
    let newer = pattern(8, 500_000);
    c.write_at("/f", 0, Bytes::from(newer.clone())).await?;
    cluster.restart_chunkserver(victim).await?;
    cluster.wait_for_servers(3, Duration::from_secs(20)).await?;
    for _ in 0..5 {
        assert!(
            c.read_all("/f").await? == newer,
            "only current data is served"
        );
    }
    // Asked directly for the current version, the returning server refuses; its old
    // replica is deleted once the master sees it.
    let (_, chunks) = c.chunks("/f").await?;
    assert!(chunks[0].version > old_version);
    assert!(!chunks[0].replicas.contains(&victim_addr));
    let ch = cairn_common::grpc::lazy_channel(&victim_addr, Duration::from_secs(2))?;
    let mut cs = ChunkServiceClient::new(ch);
    let r = cs
        .read(pb::ReadRequest {
            chunk_id,
            version: chunks[0].version,
            offset: 0,
            length: 10,
        })
        .await;
    assert!(
        r.is_err(),
        "a stale replica is not served at the current version"
    );
    wait_until(
        Duration::from_secs(10),
        "the stale replica to be deleted",
        || {
            let mut cs = cs.clone();
            async move {
                let r = cs
                    .replica_state(pb::ReplicaStateRequest {
                        chunk_id,
                        with_checksum: false,
                    })
                    .await;
                matches!(r, Err(s) if s.code() == tonic::Code::NotFound)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_request_is_applied_once() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let ch = cairn_common::grpc::lazy_channel(&cluster.master_addr(), Duration::from_secs(2))?;
    let mut m = MasterClient::new(ch);
    let req = Some(pb::RequestId {
        client_id: 77,
        seq: 1,
    });
    let create = pb::CreateRequest {
        req,
        path: "/once".into(),
        ..Default::default()
    };
    let a = m.create(create.clone()).await?.into_inner();
    // The same request again (a retry after a lost reply) gets the first answer...
    let b = m.create(create.clone()).await?.into_inner();
    assert_eq!(a.attr, b.attr);
    // ...while a new request for the same path is a new operation.
    let mut fresh = create;
    fresh.req = Some(pb::RequestId {
        client_id: 77,
        seq: 2,
    });
    let e = m.create(fresh).await.expect_err("second create");
    assert_eq!(
        cairn_proto::ErrorKind::of_status(&e),
        cairn_proto::ErrorKind::AlreadyExists
    );
    let rename = pb::RenameRequest {
        req: Some(pb::RequestId {
            client_id: 77,
            seq: 3,
        }),
        from: "/once".into(),
        to: "/twice".into(),
        ..Default::default()
    };
    m.rename(rename.clone()).await?;
    m.rename(rename)
        .await
        .expect("a retried rename is not NotFound");
    Ok(())
}
