//! Sessions and locks seen by several clients, appends from several clients, and atomic
//! rename under concurrent observers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{Kind, LockOptions};
use cairn_testkit::{TestCluster, init_logging};
use tokio::sync::Mutex;

fn short_sessions() -> cairn_testkit::Builder {
    TestCluster::builder().master_config(|m| m.session_timeout = Duration::from_secs(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_client_gets_locked_then_waits_in_fifo_order() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let (a, b, c) = (
        cluster.client().await?,
        cluster.client().await?,
        cluster.client().await?,
    );
    a.create("/f", false).await?;
    a.lock("/f", &LockOptions::exclusive(), |_| {}).await?;
    let e = b
        .lock("/f", &LockOptions::exclusive(), |_| {})
        .await
        .expect_err("held by a");
    assert_eq!(e.kind(), Kind::Locked);
    assert!(e.message().contains("locked by session"), "{e}");
    let e = b
        .lock("/f", &LockOptions::shared(), |_| {})
        .await
        .expect_err("shared vs exclusive");
    assert_eq!(e.kind(), Kind::Locked);

    // b then c queue up; both learn their positions; grants come in queue order.
    let order = Arc::new(Mutex::new(Vec::new()));
    let wait = Some(Duration::from_secs(20));
    let spawn_waiter = |client: cairn_client::Client, name: &'static str| {
        let order = order.clone();
        tokio::spawn(async move {
            let mut positions = Vec::new();
            client
                .lock("/f", &LockOptions::exclusive().wait(wait), |p| {
                    positions.push(p)
                })
                .await?;
            order.lock().await.push(name);
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.unlock("/f", &LockOptions::exclusive()).await?;
            anyhow::Ok(positions)
        })
    };
    let tb = spawn_waiter(b.clone(), "b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tc = spawn_waiter(c.clone(), "c");
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.unlock("/f", &LockOptions::exclusive()).await?;
    let pb = tb.await??;
    let pc = tc.await??;
    assert_eq!(*order.lock().await, ["b", "c"]);
    assert_eq!(pb.first(), Some(&1));
    assert_eq!(pc.first(), Some(&2), "c queued behind b");

    // Shared locks coexist; an exclusive waiter times out while they are held.
    a.lock("/f", &LockOptions::shared(), |_| {}).await?;
    b.lock("/f", &LockOptions::shared(), |_| {}).await?;
    let t = Instant::now();
    let e = c
        .lock(
            "/f",
            &LockOptions::exclusive().wait(Some(Duration::from_millis(500))),
            |_| {},
        )
        .await
        .expect_err("shared holders remain");
    assert_eq!(e.kind(), Kind::Timeout);
    assert!(t.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn byte_range_locks_conflict_only_where_they_overlap() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let (a, b) = (cluster.client().await?, cluster.client().await?);
    a.create("/r", false).await?;
    a.lock("/r", &LockOptions::exclusive().range(0, 100), |_| {})
        .await?;
    b.lock("/r", &LockOptions::exclusive().range(100, 200), |_| {})
        .await?;
    let e = b
        .lock("/r", &LockOptions::exclusive().range(50, 150), |_| {})
        .await
        .expect_err("overlap");
    assert_eq!(e.kind(), Kind::Locked);
    a.unlock("/r", &LockOptions::exclusive().range(0, 100))
        .await?;
    b.lock("/r", &LockOptions::exclusive().range(50, 150), |_| {})
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exclusive_writer_shuts_out_other_writers() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let (a, b) = (cluster.client().await?, cluster.client().await?);
    let file = a.open_exclusive("/doc", None, |_| {}).await?;
    file.write_all(Bytes::from_static(b"by a")).await?;
    for (what, e) in [
        (
            "write_at",
            b.write_at("/doc", 0, Bytes::from_static(b"b")).await.err(),
        ),
        ("truncate", b.truncate("/doc", 0).await.err()),
        (
            "overwrite",
            b.write_all("/doc", Bytes::from_static(b"b"), true)
                .await
                .err(),
        ),
        ("delete", b.delete("/doc", false).await.err()),
        ("rename", b.rename("/doc", "/doc2").await.err()),
        (
            "append",
            b.append("/doc", Bytes::from_static(b"b")).await.err(),
        ),
    ] {
        let e = e.unwrap_or_else(|| panic!("{what} went through an exclusive-writer lock"));
        assert_eq!(e.kind(), Kind::Locked, "{what}: {e}");
    }
    let e = b
        .open_exclusive("/doc", None, |_| {})
        .await
        .err()
        .expect("second exclusive open");
    assert_eq!(e.kind(), Kind::Locked);
    // Readers are not blocked.
    assert_eq!(&b.read_all("/doc").await?[..], b"by a");
    // A waiting exclusive open gets the file once the first writer closes it.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let f = b
                .open_exclusive("/doc", Some(Duration::from_secs(20)), |_| {})
                .await?;
            f.write_all(Bytes::from_static(b"by b")).await?;
            f.close().await?;
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    file.close().await?;
    waiter.await??;
    assert_eq!(&a.read_all("/doc").await?[..], b"by b");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vanished_client_loses_its_locks_after_the_session_timeout() -> anyhow::Result<()> {
    init_logging();
    let cluster = short_sessions().start().await?;
    let b = cluster.client().await?;
    {
        let a = cluster.client().await?;
        a.create("/f", false).await?;
        a.lock("/f", &LockOptions::exclusive(), |_| {}).await?;
        a.open_exclusive("/g", None, |_| {}).await?;
        // `a` is dropped without unlocking: its keep-alives stop, like a killed process.
    }
    let e = b
        .lock("/f", &LockOptions::exclusive(), |_| {})
        .await
        .expect_err("still held");
    assert_eq!(e.kind(), Kind::Locked);
    let t = Instant::now();
    b.lock(
        "/f",
        &LockOptions::exclusive().wait(Some(Duration::from_secs(15))),
        |_| {},
    )
    .await?;
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(6),
        "released within the session timeout, took {waited:?}"
    );
    b.write_at("/g", 0, Bytes::from_static(b"free again"))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_keep_every_record_exactly_once() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let setup = cluster.client().await?;
    setup.create("/log", false).await?;
    let mut tasks = Vec::new();
    for id in 0..4 {
        let c = cluster.client().await?;
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for n in 0..25 {
                // Records of varied size, some crossing chunk boundaries.
                let pad = "x".repeat((n * 7919 + id * 104_729) % 90_000);
                let rec = format!("<{id}:{n}:{pad}>\n");
                offsets.push(c.append("/log", Bytes::from(rec)).await?.0);
            }
            anyhow::Ok(offsets)
        }));
    }
    let mut all_offsets = Vec::new();
    for t in tasks {
        all_offsets.extend(t.await??);
    }
    let content = setup.read_all("/log").await?;
    let text = std::str::from_utf8(&content)?;
    let mut seen: HashMap<(u32, u32), usize> = HashMap::new();
    for line in text.lines() {
        let inner = line
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix('>'))
            .expect("whole record");
        let mut parts = inner.splitn(3, ':');
        let id: u32 = parts.next().unwrap_or_default().parse()?;
        let n: u32 = parts.next().unwrap_or_default().parse()?;
        *seen.entry((id, n)).or_default() += 1;
    }
    assert_eq!(seen.len(), 100, "every record is there");
    assert!(seen.values().all(|c| *c == 1), "and exactly once");
    all_offsets.sort();
    all_offsets.dedup();
    assert_eq!(all_offsets.len(), 100, "no two appends got the same offset");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rename_is_atomic_for_concurrent_observers() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let c = cluster.client().await?;
    c.mkdir("/a", false).await?;
    c.mkdir("/b", false).await?;
    c.write_all("/a/f", Bytes::from_static(b"one"), false)
        .await?;
    c.write_all("/b/target", Bytes::from_static(b"old target"), false)
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let c = cluster.client().await?;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut looks = 0;
            while !stop.load(Ordering::Relaxed) {
                // One listing of the root's subtree per directory is not one snapshot, so
                // look at a single directory that both names live in over time.
                let names: Vec<String> = c.list("/b").await?.into_iter().map(|e| e.name).collect();
                let here = names.iter().filter(|n| *n == "target").count();
                assert_eq!(here, 1, "exactly one 'target' in every listing: {names:?}");
                looks += 1;
            }
            anyhow::Ok(looks)
        })
    };
    for i in 0..40 {
        // Replace /b/target with a new file each round; the name never disappears.
        let src = format!("/a/f{i}");
        c.write_all(&src, Bytes::from(format!("v{i}")), false)
            .await?;
        c.rename(&src, "/b/target").await?;
    }
    stop.store(true, Ordering::Relaxed);
    let looks = observer.await??;
    assert!(looks > 0);
    assert_eq!(&c.read_all("/b/target").await?[..], b"v39");
    // Directories move across parents with their contents.
    c.rename("/a", "/b/moved").await?;
    assert_eq!(&c.read_all("/b/moved/f").await?[..], b"one");
    let e = c.stat("/a").await.expect_err("old name gone");
    assert_eq!(e.kind(), Kind::NotFound);
    Ok(())
}
