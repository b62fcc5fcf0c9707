//! Faults on an in-process cluster: corrupt replicas, master crashes, torn logs, and
//! malformed requests. Each asserts that nothing acknowledged is lost and nothing corrupt
//! is served.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::pb;
use cairn_proto::pb::chunk_service_client::ChunkServiceClient;
use cairn_proto::pb::master_client::MasterClient;
use cairn_testkit::{TestCluster, init_logging, pattern, wait_for_repair, wait_until};

/// The replica file of `chunk` on the chunk server whose data dir is `dir`.
fn replica_file(dir: &std::path::Path, chunk: u64) -> PathBuf {
    dir.join("store")
        .join("chunks")
        .join(format!("{:02x}", chunk & 0xff))
        .join(format!("{chunk:016x}.chunk"))
}

fn flip_byte(path: &std::path::Path, from_end: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open replica");
    let len = f.metadata().expect("stat replica").len();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, len - from_end).expect("read byte");
    b[0] ^= 0x5A;
    f.write_all_at(&b, len - from_end).expect("write byte");
}

/// Whether the damaged replica at `path` (holding `damaged`) is gone. The master may copy
/// the chunk back to the same server, at the same path, before a test looks, so a file
/// there that differs from the damaged one counts as gone too.
fn dropped(path: &std::path::Path, damaged: &[u8]) -> bool {
    std::fs::read(path).map_or(true, |now| now != damaged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_replicas_are_never_served_and_reads_still_succeed() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    let data = Bytes::from(pattern(7, (2 << 20) + 1000));
    client.write_all("/f", data.clone(), false).await?;
    let (_, chunks) = client.chunks("/f").await?;
    let chunk = &chunks[0];
    assert_eq!(chunk.replicas.len(), 3);
    // Damage two of the three replicas of the first chunk, in their last data block.
    let mut damaged = Vec::new();
    for addr in &chunk.replicas[..2] {
        let i = (0..cluster.chunkserver_count())
            .find(|i| &cluster.chunkserver_addr(*i) == addr)
            .expect("server");
        let path = replica_file(cluster.chunkserver_dir(i), chunk.chunk_id);
        flip_byte(&path, 10);
        let bytes = std::fs::read(&path)?;
        damaged.push((path, bytes));
    }
    for _ in 0..3 {
        let back = client.read_all("/f").await?;
        assert!(back == data, "read returned wrong bytes");
    }
    // The damaged replicas were dropped by their servers and by the master.
    wait_until(
        Duration::from_secs(10),
        "corrupt replicas to be removed",
        || async { damaged.iter().all(|(p, b)| dropped(p, b)) },
    )
    .await?;
    // The master copies the chunk back to its goal from the good replica, at a new
    // version, so the chunk is whole again.
    wait_for_repair(&client, "/f", chunk.version).await?;
    assert!(client.status().await?.corrupt_replicas_found >= 2);
    assert!(
        client.read_all("/f").await? == data,
        "read after repair differs"
    );

    // A small file is read in one answer (ReadSmall), from the page cache when it can be:
    // the same checks hold there.
    let small = Bytes::from(pattern(8, 10_000));
    client.write_all("/small", small.clone(), false).await?;
    let (_, chunks) = client.chunks("/small").await?;
    let chunk = &chunks[0];
    let mut damaged = Vec::new();
    for addr in &chunk.replicas[..2] {
        let i = (0..cluster.chunkserver_count())
            .find(|i| &cluster.chunkserver_addr(*i) == addr)
            .expect("server");
        let path = replica_file(cluster.chunkserver_dir(i), chunk.chunk_id);
        // The replica was just written: its pages are cached, so the damage must be
        // found by the cached read, not only by one from disk.
        flip_byte(&path, 10);
        let bytes = std::fs::read(&path)?;
        damaged.push((path, bytes));
    }
    for _ in 0..3 {
        assert!(
            client.read_all("/small").await? == small,
            "small read returned wrong bytes"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "corrupt small replicas to be removed",
        || async { damaged.iter().all(|(p, b)| dropped(p, b)) },
    )
    .await?;
    Ok(())
}

/// Readers that never stop while the master repairs a chunk again and again: each repair
/// moves the chunk's replicas to a new version, and a reader that asks in the middle of a
/// move (the old version logged, or the new one logged but not yet recorded) must be told
/// to retry, never that no replica exists. Each round damages the chunk right after the
/// last repair ended, so a copy that is lost again at once must not hold up the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_succeed_while_repairs_move_the_chunk_version() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    let data = Bytes::from(pattern(9, 300_000));
    client.write_all("/hot", data.clone(), false).await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (client, data, stop) = (client.clone(), data.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let back = client.read_all("/hot").await?;
                anyhow::ensure!(back == data, "read {reads} returned wrong bytes");
                reads += 1;
            }
            anyhow::Ok(reads)
        }));
    }
    for round in 0..8 {
        let (_, chunks) = client.chunks("/hot").await?;
        let chunk = chunks[0].clone();
        // Two of the three, so that one good replica is left to move and copy from. Each
        // damaged replica is read once directly, so that its server finds the damage even
        // if no reader happens to try it.
        let mut damaged = Vec::new();
        for k in 0..2 {
            let addr = &chunk.replicas[(round + k) % chunk.replicas.len()];
            let i = (0..cluster.chunkserver_count())
                .find(|i| &cluster.chunkserver_addr(*i) == addr)
                .expect("server");
            let path = replica_file(cluster.chunkserver_dir(i), chunk.chunk_id);
            flip_byte(&path, 10);
            damaged.push((path.clone(), std::fs::read(&path)?));
            let mut cs = ChunkServiceClient::new(cairn_common::grpc::lazy_channel(
                addr,
                Duration::from_secs(2),
            )?);
            let read = pb::ReadRequest {
                chunk_id: chunk.chunk_id,
                version: chunk.version,
                offset: 0,
                length: data.len() as u64,
            };
            if let Ok(stream) = cs.read(read).await {
                let mut stream = stream.into_inner();
                while let Ok(Some(_)) = stream.message().await {}
            }
        }
        wait_until(
            Duration::from_secs(10),
            "the damaged replicas removed",
            || async { damaged.iter().all(|(p, b)| dropped(p, b)) },
        )
        .await?;
        wait_for_repair(&client, "/hot", chunk.version).await?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        let reads = r.await??;
        assert!(reads > 0, "a reader never finished a read");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_crash_keeps_every_acknowledged_operation() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    let mut files = Vec::new();
    for i in 0..20u64 {
        let dir = format!("/d{}", i % 4);
        client.mkdir(&dir, true).await?;
        let path = format!("{dir}/f{i}");
        let data = Bytes::from(pattern(i, (i as usize) * 70_000 + 1));
        client.write_all(&path, data.clone(), false).await?;
        files.push((path, data));
    }
    client.rename("/d0/f0", "/d1/moved").await?;
    client.delete("/d2/f2", false).await?;
    cluster.kill_master().await;
    cluster.restart_master().await?;
    cluster.wait_for_servers(3, Duration::from_secs(20)).await?;
    for (path, data) in &files {
        let path = match path.as_str() {
            "/d0/f0" => "/d1/moved",
            "/d2/f2" => {
                let e = client.stat(path).await.expect_err("deleted file is gone");
                assert_eq!(e.kind(), cairn_proto::ErrorKind::NotFound);
                continue;
            }
            p => p,
        };
        let back = client.read_all(path).await?;
        assert!(back == data, "{path} differs after the master restarted");
    }
    // New writes work after the restart.
    client
        .write_all("/after", Bytes::from_static(b"still here"), false)
        .await?;
    assert_eq!(&client.read_all("/after").await?[..], b"still here");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_torn_log_tail_is_cut_and_acknowledged_operations_survive() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    for i in 0..10 {
        client.mkdir(&format!("/dir{i}"), false).await?;
    }
    cluster.kill_master().await;
    // A crash in the middle of a write leaves half a record at the end of the log.
    let oplog = cluster.root().join("master").join("oplog");
    let newest = std::fs::read_dir(&oplog)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .expect("a log segment");
    {
        // Right after the last frame (the log writes zeros ahead of its records, so the
        // end of the records is not the end of the file): frames are a 4-byte length, a
        // CRC and an index (16 bytes) and the payload; a zero length ends them.
        use std::os::unix::fs::FileExt;
        let bytes = std::fs::read(&newest)?;
        let mut end = 0;
        while end + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[end..end + 4].try_into()?) as usize;
            if len == 0 {
                break;
            }
            end += 16 + len;
        }
        let f = std::fs::OpenOptions::new().write(true).open(&newest)?;
        f.write_all_at(
            &[0x30, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3],
            end as u64,
        )?;
    }
    cluster.restart_master().await?;
    for i in 0..10 {
        assert!(client.stat(&format!("/dir{i}")).await?.is_dir());
    }
    client.mkdir("/after-restart", false).await?;
    cluster.kill_master().await;
    cluster.restart_master().await?;
    assert!(client.stat("/after-restart").await?.is_dir());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_get_typed_errors_and_servers_stay_up() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let channel = cairn_common::grpc::lazy_channel(&cluster.master_addr(), Duration::from_secs(2))?;
    let mut master = MasterClient::new(channel);
    let bad_paths = ["", "rel", "/a/../b", "/a//b", "/a/./b", "/a\0b"];
    for p in bad_paths {
        let e = master
            .mkdir(pb::MkdirRequest {
                req: None,
                path: p.into(),
                parents: true,
                mode: 0,
            })
            .await
            .expect_err(p);
        assert_eq!(
            cairn_proto::ErrorKind::of_status(&e),
            cairn_proto::ErrorKind::InvalidPath,
            "{p:?}"
        );
    }
    let long = format!("/{}", "n".repeat(256));
    let e = master
        .create(pb::CreateRequest {
            path: long,
            ..Default::default()
        })
        .await
        .expect_err("long name");
    assert_eq!(
        cairn_proto::ErrorKind::of_status(&e),
        cairn_proto::ErrorKind::InvalidPath
    );
    let e = master
        .prepare_write(pb::PrepareWriteRequest {
            req: None,
            inode: 999_999,
            chunk_index: 0,
            session_id: 0,
        })
        .await
        .expect_err("unknown inode");
    assert_eq!(
        cairn_proto::ErrorKind::of_status(&e),
        cairn_proto::ErrorKind::NotFound
    );

    // Chunk server: a stream without a header, and a forged lease.
    let cs =
        cairn_common::grpc::lazy_channel(&cluster.chunkserver_addr(0), Duration::from_secs(2))?;
    let mut cs = ChunkServiceClient::new(cs);
    let data = pb::WriteRequest {
        msg: Some(pb::write_request::Msg::Data(pb::WriteData {
            data: Bytes::from_static(b"x"),
            crc32c: 0,
        })),
    };
    let e = cs
        .write(tokio_stream::iter(vec![data]))
        .await
        .expect_err("no header");
    assert_eq!(
        cairn_proto::ErrorKind::of_status(&e),
        cairn_proto::ErrorKind::InvalidArgument
    );
    let forged = pb::WriteRequest {
        msg: Some(pb::write_request::Msg::Header(pb::WriteHeader {
            lease: Some(pb::Lease {
                chunk_id: 1,
                version: 1,
                primary_id: 1,
                expiry_unix_ms: u64::MAX,
                create: true,
                mac: Bytes::from(vec![0u8; 32]),
            }),
            kind: pb::MutationKind::Write as i32,
            ..Default::default()
        })),
    };
    let e = cs
        .write(tokio_stream::iter(vec![forged]))
        .await
        .expect_err("forged lease");
    assert_eq!(
        cairn_proto::ErrorKind::of_status(&e),
        cairn_proto::ErrorKind::PermissionDenied
    );
    let forged_small = pb::SmallWriteRequest {
        header: Some(pb::WriteHeader {
            lease: Some(pb::Lease {
                chunk_id: 1,
                version: 1,
                primary_id: 1,
                expiry_unix_ms: u64::MAX,
                create: true,
                mac: Bytes::from(vec![0u8; 32]),
            }),
            kind: pb::MutationKind::Write as i32,
            ..Default::default()
        }),
        data: Bytes::from_static(b"x"),
        crc32c: crc32c::crc32c(b"x"),
        serial: 0,
    };
    let e = cs
        .write_small(forged_small)
        .await
        .expect_err("forged lease");
    assert_eq!(
        cairn_proto::ErrorKind::of_status(&e),
        cairn_proto::ErrorKind::PermissionDenied
    );

    // A star write with a real lease: damaged in transit, oversized, or sent to a
    // secondary without the primary's serial. Each is refused and nothing is written.
    let created = master
        .create(pb::CreateRequest {
            path: "/small".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let inode = created.attr.map(|a| a.inode).unwrap_or_default();
    let prep = master
        .prepare_write(pb::PrepareWriteRequest {
            req: None,
            inode,
            chunk_index: 0,
            session_id: 0,
        })
        .await?
        .into_inner();
    let lease = prep.lease.clone();
    let star = |target: &pb::ServerRef, data: Bytes, crc: u32| pb::SmallWriteRequest {
        header: Some(pb::WriteHeader {
            lease: lease.clone(),
            kind: pb::MutationKind::Write as i32,
            offset: 0,
            downstream: Vec::new(),
            target_id: target.server_id,
            req: None,
        }),
        data,
        crc32c: crc,
        serial: 0,
    };
    let (primary, secondary) = (&prep.chain[0], &prep.chain[1]);
    let connect = |addr: &str| -> anyhow::Result<ChunkServiceClient<tonic::transport::Channel>> {
        Ok(ChunkServiceClient::new(cairn_common::grpc::lazy_channel(
            addr,
            Duration::from_secs(2),
        )?))
    };
    let body = Bytes::from_static(b"hello");
    let cases = [
        (primary, body.clone(), 7, cairn_proto::ErrorKind::Corrupt),
        (
            primary,
            Bytes::from(vec![1u8; (1 << 20) + 1]),
            crc32c::crc32c(&vec![1u8; (1 << 20) + 1]),
            cairn_proto::ErrorKind::InvalidArgument,
        ),
        (
            secondary,
            body.clone(),
            crc32c::crc32c(&body),
            cairn_proto::ErrorKind::InvalidArgument,
        ),
    ];
    for (target, data, crc, want) in cases {
        let e = connect(&target.addr)?
            .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
            .write_small(star(target, data, crc))
            .await
            .expect_err("malformed star write");
        assert_eq!(cairn_proto::ErrorKind::of_status(&e), want, "{e:?}");
    }
    for server in &prep.chain {
        let state = connect(&server.addr)?
            .replica_state(pb::ReplicaStateRequest {
                chunk_id: prep.lease.as_ref().map(|l| l.chunk_id).unwrap_or_default(),
                with_checksum: false,
            })
            .await;
        assert!(
            state.is_err(),
            "a refused star write left a replica on {}",
            server.addr
        );
    }

    let e = cs
        .read(pb::ReadRequest {
            chunk_id: 12345,
            version: 1,
            offset: 0,
            length: 10,
        })
        .await
        .expect_err("no such replica");
    assert_eq!(
        cairn_proto::ErrorKind::of_status(&e),
        cairn_proto::ErrorKind::NotFound
    );
    for (length, want) in [
        (10, cairn_proto::ErrorKind::NotFound),
        ((1 << 20) + 1, cairn_proto::ErrorKind::InvalidArgument),
    ] {
        let e = cs
            .read_small(pb::ReadRequest {
                chunk_id: 12345,
                version: 1,
                offset: 0,
                length,
            })
            .await
            .expect_err("bad small read");
        assert_eq!(cairn_proto::ErrorKind::of_status(&e), want, "{e:?}");
    }

    // Everything still serves.
    let client = cluster.client().await?;
    client
        .write_all("/ok", Bytes::from_static(b"fine"), false)
        .await?;
    assert_eq!(&client.read_all("/ok").await?[..], b"fine");
    Ok(())
}
