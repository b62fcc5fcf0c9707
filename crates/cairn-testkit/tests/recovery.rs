//! Failure handling on an in-process cluster: a dead chunk server is detected and its
//! chunks are copied back to their goal; writes complete when a replica dies under them;
//! a returning server's stale replicas are deleted and its current ones count again; the
//! scrubber finds corruption nobody reads; a full server takes no new replicas. Every test
//! checks that each acknowledged write reads back intact and that `cairn fsck` ends clean.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_testkit::process::cairn_bin;
use cairn_testkit::{TestCluster, init_logging, pattern, wait_until};
use common::{Acked, fsck_clean, wait_at_goal};

/// Index of the chunk server listening on `addr`.
fn server_index(cluster: &TestCluster, addr: &str) -> usize {
    (0..cluster.chunkserver_count())
        .find(|i| cluster.chunkserver_addr(*i) == addr)
        .expect("a replica on a known server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_chunkserver_is_detected_at_once_and_its_chunks_return_to_goal() -> anyhow::Result<()>
{
    init_logging();
    let bin = cairn_bin()?;
    let mut cluster = TestCluster::builder().chunkservers(4).start().await?;
    let client = cluster.client().await?;
    let acked = Acked::default();
    for i in 0..6u64 {
        let path = format!("/f{i}");
        let data = Bytes::from(pattern(i, (3 << 20) + 4321 * i as usize));
        client.write_all(&path, data.clone(), false).await?;
        acked.record(&path, data);
    }
    wait_at_goal(&client, Duration::from_secs(10)).await?;
    let victim = cluster.chunkserver_addr(0);
    let held = client.status().await?.servers[0].replicas;
    cluster.kill_chunkserver(0).await;
    let killed = Instant::now();
    // The heartbeat stream closed with the process: dead at once, not after the timeout.
    wait_until(
        Duration::from_secs(3),
        "the killed server marked dead",
        || async {
            client.status().await.is_ok_and(|s| {
                s.servers
                    .iter()
                    .any(|v| v.addr == victim && v.state != "alive")
            })
        },
    )
    .await?;
    let detected = killed.elapsed();
    wait_at_goal(&client, Duration::from_secs(30)).await?;
    let repaired = killed.elapsed();
    eprintln!("detected in {detected:?}, back at goal in {repaired:?} ({held} replicas lost)");
    let s = client.status().await?;
    assert!(s.replications_done > 0, "nothing was re-replicated: {s:?}");
    for i in 0..6 {
        let (_, chunks) = client.chunks(&format!("/f{i}")).await?;
        for c in chunks {
            assert_eq!(c.replicas.len(), 3, "chunk {} of /f{i}", c.index);
            assert!(
                !c.replicas.contains(&victim),
                "a dead server is still listed"
            );
        }
    }
    acked.verify(&client).await?;
    fsck_clean(&bin, &cluster.master_addr())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_complete_when_a_replica_dies_under_them() -> anyhow::Result<()> {
    init_logging();
    let bin = cairn_bin()?;
    let mut cluster = TestCluster::builder().chunkservers(4).start().await?;
    let acked = Acked::default();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let client = cluster.client().await?;
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..12u64 {
                let path = format!("/w{w}-{i}");
                let data = Bytes::from(pattern(w * 100 + i, (1 << 20) + 777 * i as usize));
                client.write_all(&path, data.clone(), false).await?;
                acked.record(&path, data);
            }
            anyhow::Ok(())
        }));
    }
    let client = cluster.client().await?;
    wait_until(
        Duration::from_secs(30),
        "some writes acknowledged",
        || async { acked.len() >= 6 },
    )
    .await?;
    cluster.kill_chunkserver(2).await;
    for w in writers {
        // With three replicas left (and a minimum of one), every write completes.
        w.await??;
    }
    assert_eq!(acked.len(), 48);
    wait_at_goal(&client, Duration::from_secs(30)).await?;
    acked.verify(&client).await?;
    fsck_clean(&bin, &cluster.master_addr())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_returning_server_has_stale_replicas_deleted_and_current_ones_count_again()
-> anyhow::Result<()> {
    init_logging();
    let bin = cairn_bin()?;
    // Three servers and goal 3: while one is away there is nowhere to copy to, so the
    // chunks it holds wait under goal, unchanged, except the one rewritten meanwhile.
    let mut cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    let acked = Acked::default();
    for i in 0..3u64 {
        let data = Bytes::from(pattern(i, (2 << 20) + 99));
        client
            .write_all(&format!("/k{i}"), data.clone(), false)
            .await?;
        acked.record(&format!("/k{i}"), data);
    }
    let (_, before) = client.chunks("/k0").await?;
    let total = client.status().await?.chunks_at_goal;
    assert_eq!(total, 9);
    cluster.kill_chunkserver(1).await;
    wait_until(Duration::from_secs(5), "chunks under goal", || async {
        client
            .status()
            .await
            .is_ok_and(|s| s.chunks_under_goal == total)
    })
    .await?;
    // Rewrite the first chunk of /k0 while the server is away: its version moves on.
    let patch = Bytes::from(pattern(42, 1000));
    client.write_at("/k0", 10, patch.clone()).await?;
    let mut expect = acked_bytes(&client, "/k0").await?;
    expect[10..1010].copy_from_slice(&patch);
    acked.record("/k0", Bytes::from(expect));
    let (_, after) = client.chunks("/k0").await?;
    assert!(after[0].version > before[0].version);
    let stale_file = common_replica_file(cluster.chunkserver_dir(1), before[0].chunk_id);
    assert!(stale_file.exists(), "the away server's replica is on disk");

    cluster.restart_chunkserver(1).await?;
    // The stale replica is deleted; the current ones count again, with no copy needed,
    // except the rewritten chunk, which is copied back to the returning server.
    wait_at_goal(&client, Duration::from_secs(30)).await?;
    let s = client.status().await?;
    assert_eq!(s.chunks_at_goal, total, "{s:?}");
    assert_eq!(
        s.replications_done, 1,
        "only the rewritten chunk needs a copy"
    );
    let (_, now) = client.chunks("/k0").await?;
    assert_eq!(now[0].replicas.len(), 3);
    acked.verify(&client).await?;
    fsck_clean(&bin, &cluster.master_addr())?;
    Ok(())
}

/// The current bytes of `path` (acknowledged before the call).
async fn acked_bytes(client: &cairn_client::Client, path: &str) -> anyhow::Result<Vec<u8>> {
    Ok(client.read_all(path).await?.to_vec())
}

/// The replica file of `chunk` on the chunk server whose data dir is `dir`.
fn common_replica_file(dir: &std::path::Path, chunk: u64) -> std::path::PathBuf {
    dir.join("store")
        .join("chunks")
        .join(format!("{:02x}", chunk & 0xff))
        .join(format!("{chunk:016x}.chunk"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scrubber_finds_corruption_nobody_reads_and_it_is_repaired() -> anyhow::Result<()> {
    init_logging();
    let bin = cairn_bin()?;
    let cluster = TestCluster::builder()
        .chunkservers(4)
        .chunkserver_config(|c| {
            c.scrub_interval = Duration::from_millis(300);
            c.scrub_bandwidth = 64 << 20;
        })
        .start()
        .await?;
    let client = cluster.client().await?;
    let data = Bytes::from(pattern(5, (3 << 20) + 17));
    client.write_all("/s", data.clone(), false).await?;
    let (_, chunks) = client.chunks("/s").await?;
    let target = &chunks[1];
    let i = server_index(&cluster, &target.replicas[0]);
    let file = common_replica_file(cluster.chunkserver_dir(i), target.chunk_id);
    flip_byte(&file, 100)?;
    // Nobody reads /s: only the scrubber can notice.
    wait_until(
        Duration::from_secs(10),
        "the scrubber to report",
        || async {
            client
                .status()
                .await
                .is_ok_and(|s| s.corrupt_replicas_found >= 1)
        },
    )
    .await?;
    wait_at_goal(&client, Duration::from_secs(30)).await?;
    let (_, now) = client.chunks("/s").await?;
    assert_eq!(now[1].replicas.len(), 3);
    assert!(
        now[1].version > target.version,
        "the chunk was not copied anew"
    );
    assert!(client.read_all("/s").await? == data, "/s reads back wrong");
    fsck_clean(&bin, &cluster.master_addr())?;
    Ok(())
}

/// Flips one byte `from_end` bytes before the end of `path`.
fn flip_byte(path: &std::path::Path, from_end: u64) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, len - from_end)?;
    b[0] ^= 0x5A;
    f.write_all_at(&b, len - from_end)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_below_its_reserve_takes_no_new_replicas() -> anyhow::Result<()> {
    init_logging();
    let bin = cairn_bin()?;
    // The fourth server keeps a reserve larger than any disk: it is "full" from the start.
    let cluster = TestCluster::builder()
        .chunkservers(4)
        .chunkserver_config(|c| {
            if c.data_dir.ends_with("cs4") {
                c.reserve_bytes = Some(1 << 60);
            }
        })
        .start()
        .await?;
    let client = cluster.client().await?;
    let full = cluster.chunkserver_addr(3);
    let acked = Acked::default();
    for i in 0..8u64 {
        let data = Bytes::from(pattern(i, (1 << 20) + 5000));
        client
            .write_all(&format!("/r{i}"), data.clone(), false)
            .await?;
        acked.record(&format!("/r{i}"), data);
        let (_, chunks) = client.chunks(&format!("/r{i}")).await?;
        for c in chunks {
            assert_eq!(c.replicas.len(), 3);
            assert!(
                !c.replicas.contains(&full),
                "a replica was placed on a full server"
            );
        }
    }
    acked.verify(&client).await?;
    fsck_clean(&bin, &cluster.master_addr())?;
    Ok(())
}

/// A small tmpfs mounted over a directory; unmounted (lazily) on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` at `dir`, or says why it cannot.
    fn mount(dir: &std::path::Path, bytes: u64) -> anyhow::Result<SmallDisk> {
        std::fs::create_dir_all(dir)?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_fail_over_from_a_disk_that_runs_out_of_space() -> anyhow::Result<()> {
    init_logging();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return Ok(());
    }
    let bin = cairn_bin()?;
    let mut cluster = TestCluster::builder()
        .chunkservers(4)
        .chunkserver_config(|c| {
            if c.data_dir.ends_with("cs4") {
                c.reserve_bytes = Some(0); // run into ENOSPC itself, not the reserve
            }
        })
        .start()
        .await?;
    // Every server gets a small disk (all equally "empty" to placement, which compares
    // free space in whole GiB): three of 64 MiB and the fourth of 6 MiB, which fills up
    // after a few replicas. A wiped disk registers as a new server.
    let mut disks = Vec::new();
    for i in 0..4 {
        cluster.kill_chunkserver(i).await;
        let dir = cluster.chunkserver_dir(i).to_path_buf();
        std::fs::remove_dir_all(&dir)?;
        disks.push(SmallDisk::mount(
            &dir,
            if i == 3 { 6 << 20 } else { 64 << 20 },
        )?);
        cluster.restart_chunkserver(i).await?;
    }
    let client = cluster.client().await?;
    wait_until(
        Duration::from_secs(10),
        "the small servers registered",
        || async {
            client
                .status()
                .await
                .is_ok_and(|s| s.servers.iter().filter(|v| v.state == "alive").count() == 4)
        },
    )
    .await?;
    let acked = Acked::default();
    for i in 0..16u64 {
        let data = Bytes::from(pattern(i, (2 << 20) - 3000));
        client
            .write_all(&format!("/d{i}"), data.clone(), false)
            .await?;
        acked.record(&format!("/d{i}"), data);
    }
    let small = cluster.chunkserver_addr(3);
    let s = client.status().await?;
    let on_small = s
        .servers
        .iter()
        .find(|v| v.addr == small && v.state == "alive")
        .map_or(0, |v| v.replicas);
    assert!(on_small >= 2, "the small disk took {on_small} replicas");
    assert!(on_small < 32, "the small disk took every chunk");
    acked.verify(&client).await?;
    wait_at_goal(&client, Duration::from_secs(30)).await?;
    fsck_clean(&bin, &cluster.master_addr())?;
    // Last, as it fills every disk (nothing can go back to goal for a while after):
    // a file larger than all the space left fails, and takes its partial self with it:
    // no empty or short file is left looking like the upload's result.
    let too_big = Bytes::from(pattern(99, 100 << 20));
    let failed = client.write_all("/too-big", too_big, false).await;
    assert!(failed.is_err(), "100 MiB x 3 fitted in what was left");
    let left = client.stat("/too-big").await;
    assert!(
        left.as_ref()
            .is_err_and(|e| e.kind() == cairn_proto::ErrorKind::NotFound),
        "a failed upload left {left:?}"
    );
    // The same through the streaming writer (`put -`): a write or the close fails, and
    // the writer's file goes too.
    let mut w = client.writer("/too-big-stream", false).await?;
    let piece = pattern(98, 1 << 20);
    let mut write_failed = false;
    for _ in 0..100 {
        if w.write(&piece).await.is_err() {
            write_failed = true;
            break;
        }
    }
    if write_failed {
        w.abort().await;
    } else {
        assert!(
            w.close().await.is_err(),
            "100 MiB x 3 streamed into what was left"
        );
    }
    let left = client.stat("/too-big-stream").await;
    assert!(
        left.as_ref()
            .is_err_and(|e| e.kind() == cairn_proto::ErrorKind::NotFound),
        "a failed streaming upload left {left:?}"
    );
    acked.verify(&client).await?;
    // Stop the servers and unmount before the cluster removes its directory.
    for i in 0..4 {
        cluster.kill_chunkserver(i).await;
    }
    drop(disks);
    drop(cluster);
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_of_deleted_files_and_orphans_are_collected() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder()
        .master_config(|c| c.gc_grace = Duration::from_secs(1))
        .start()
        .await?;
    let client = cluster.client().await?;
    client
        .write_all("/gone", Bytes::from(pattern(1, (2 << 20) + 1)), false)
        .await?;
    client
        .write_all("/orphaned", Bytes::from(pattern(2, 1 << 20)), false)
        .await?;
    let files = |cluster: &TestCluster, chunks: &[cairn_client::ChunkInfo]| {
        let mut v = Vec::new();
        for i in 0..cluster.chunkserver_count() {
            for c in chunks {
                v.push(common_replica_file(cluster.chunkserver_dir(i), c.chunk_id));
            }
        }
        v
    };
    let (_, gone) = client.chunks("/gone").await?;
    let (_, orphaned) = client.chunks("/orphaned").await?;
    let gone_files = files(&cluster, &gone);
    let orphan_files = files(&cluster, &orphaned);
    assert!(gone_files.iter().chain(&orphan_files).all(|p| p.exists()));
    // A deleted file's replicas go through the heartbeat replies.
    client.delete("/gone", false).await?;
    wait_until(
        Duration::from_secs(10),
        "deleted replicas removed",
        || async { gone_files.iter().all(|p| !p.exists()) },
    )
    .await?;
    // A server away while a file is deleted comes back with replicas nobody knows.
    cluster.kill_chunkserver(0).await;
    client.delete("/orphaned", false).await?;
    cluster.restart_chunkserver(0).await?;
    cluster.wait_for_servers(3, Duration::from_secs(10)).await?;
    wait_until(
        Duration::from_secs(15),
        "orphans removed after the grace",
        || async { orphan_files.iter().all(|p| !p.exists()) },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_below_the_minimum_replicas_fails_with_copy_error() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder()
        .master_config(|c| c.min_replicas = 2)
        .start()
        .await?;
    let client = cluster.client().await?;
    let data = Bytes::from(pattern(3, 100_000));
    client.write_all("/m", data.clone(), false).await?;
    cluster.kill_chunkserver(0).await;
    // Two replicas left: still enough.
    client.write_at("/m", 0, Bytes::from_static(b"two")).await?;
    cluster.kill_chunkserver(1).await;
    let e = client
        .write_at("/m", 0, Bytes::from_static(b"one"))
        .await
        .expect_err("a write with one replica left, minimum two");
    assert_eq!(e.kind(), cairn_proto::ErrorKind::ReplicationFailed, "{e}");
    assert_eq!(e.kind().classic_name(), "COPY_ERROR");
    // Nothing acknowledged is lost: the surviving replica holds the last good write.
    let back = client.read_all("/m").await?;
    assert_eq!(&back[..3], b"two");
    assert_eq!(&back[3..], &data[3..]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_report_of_many_messages_registers_after_a_master_restart() -> anyhow::Result<()> {
    init_logging();
    // One replica per registration message: a report of more messages than the
    // heartbeat stream buffers before it is opened (as a server with millions of
    // replicas sends).
    let mut cluster = TestCluster::builder()
        .chunkserver_config(|c| c.report_batch = 1)
        .start()
        .await?;
    let client = cluster.client().await?;
    let acked = Acked::default();
    for i in 0..40u64 {
        let data = Bytes::from(pattern(i, 1000 + i as usize));
        client
            .write_all(&format!("/m{i}"), data.clone(), false)
            .await?;
        acked.record(&format!("/m{i}"), data);
    }
    cluster.restart_master().await?;
    let client = cluster.client().await?;
    cluster.wait_for_servers(3, Duration::from_secs(20)).await?;
    wait_at_goal(&client, Duration::from_secs(20)).await?;
    let s = client.status().await?;
    assert_eq!(s.chunks_at_goal, 40, "{s:?}");
    assert!(
        s.servers.iter().all(|v| v.replicas == 40),
        "{:?}",
        s.servers
    );
    acked.verify(&client).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_right_after_a_master_restart_wait_for_the_chunk_reports() -> anyhow::Result<()> {
    init_logging();
    // Safe mode ends when every chunk is reported; the long timeout only keeps a slow
    // machine from ending it before the servers are back.
    let mut cluster = TestCluster::builder()
        .master_config(|m| m.safe_mode_timeout = Duration::from_secs(60))
        .start()
        .await?;
    let client = cluster.client().await?;
    let acked = Acked::default();
    for i in 0..3u64 {
        let data = Bytes::from(pattern(i, (1 << 20) + 7 * i as usize));
        client
            .write_all(&format!("/r{i}"), data.clone(), false)
            .await?;
        acked.record(&format!("/r{i}"), data);
    }
    // The master comes back before any chunk server has reported: it knows every chunk,
    // and where none of them lives.
    for i in 0..3 {
        cluster.kill_chunkserver(i).await;
    }
    cluster.restart_master().await?;
    let client = cluster.client().await?;
    let status = client.status().await?;
    assert!(status.safe_mode, "{status:?}");
    let reader = {
        let client = client.clone();
        tokio::spawn(async move { client.read_all("/r1").await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !reader.is_finished(),
        "a read in safe mode waits for the reports instead of failing"
    );
    for i in 0..3 {
        cluster.restart_chunkserver(i).await?;
    }
    let back = reader.await??;
    assert!(
        back == pattern(1, (1 << 20) + 7),
        "/r1 read back different bytes"
    );
    acked.verify(&client).await?;
    Ok(())
}
