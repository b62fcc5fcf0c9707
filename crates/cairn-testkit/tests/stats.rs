//! Stats in bulk: `stat_many`, and concurrent `stat`s that one client coalesces into
//! `StatMany` calls. Every answer must be the one for its own path, errors included, and
//! a caller that gives up must never strand the others.

use std::time::Duration;

use cairn_proto::{ErrorKind, MAX_STAT_MANY};
use cairn_testkit::http::{get, samples};
use cairn_testkit::{TestCluster, init_logging};

/// Requests the master served for `method` (e.g. "Master/StatMany"), from its /metrics.
async fn served(cluster: &TestCluster, method: &str) -> anyhow::Result<f64> {
    let (_, text) = get(&cluster.master_http_addr(), "/metrics").await?;
    let s = samples(&text)?;
    Ok(s.get(&format!(
        "cairn_master_rpc_requests_total{{code=Ok,method={method}}}"
    ))
    .copied()
    .unwrap_or(0.0))
}

/// Files `/s/f{i}` of `i` bytes (set by truncate, so that each answer is recognisable).
async fn files(client: &cairn_client::Client, n: u64) -> anyhow::Result<()> {
    client.mkdir("/s", false).await?;
    for i in 0..n {
        let p = format!("/s/f{i}");
        client.create(&p, false).await?;
        client.truncate(&p, i).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stats_are_coalesced_and_each_gets_its_own_answer() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let setup = cluster.client().await?;
    files(&setup, 300).await?;
    setup
        .write_all("/plain", bytes::Bytes::from_static(b"x"), false)
        .await?;

    // One client shared by many tasks, as a gateway or a mount would share it.
    let client = cluster.client().await?;
    let before = served(&cluster, "Master/StatMany").await?;
    let mut tasks = Vec::new();
    for k in 0..1200u64 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let i = k % 400;
            let r = match k % 3 {
                0 | 1 => c.stat(&format!("/s/f{i}")).await,
                _ => c.stat(&format!("/plain/under-a-file-{i}")).await,
            };
            (k, i, r)
        }));
    }
    for t in tasks {
        let (k, i, r) = tokio::time::timeout(Duration::from_secs(30), t).await??;
        match (k % 3, r) {
            (0 | 1, Ok(a)) if i < 300 => assert_eq!(a.size, i, "stat {k} of /s/f{i}"),
            (0 | 1, Err(e)) if i >= 300 => assert_eq!(e.kind(), ErrorKind::NotFound, "{e}"),
            (_, Err(e)) if k % 3 == 2 => {
                assert_eq!(e.kind(), ErrorKind::NotADirectory, "{e}")
            }
            (_, other) => panic!("stat {k} (/s/f{i}): unexpected {other:?}"),
        }
    }
    let batches = served(&cluster, "Master/StatMany").await? - before;
    assert!(
        batches >= 1.0,
        "1200 concurrent stats on one client went without a single StatMany"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stat_many_answers_every_path_in_order() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    files(&client, 5).await?;

    assert!(client.stat_many(&[]).await?.is_empty());
    let long = format!("/s/{}", "n".repeat(300));
    let paths = ["/s/f3", "/s/missing", "/s/f0", &long, "/s/f3/below", "/s"];
    let r = client.stat_many(&paths).await?;
    assert_eq!(r.len(), paths.len());
    assert_eq!(r[0].as_ref().map(|a| a.size).ok(), Some(3));
    assert_eq!(
        r[1].as_ref().err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(r[2].as_ref().map(|a| a.size).ok(), Some(0));
    assert_eq!(
        r[3].as_ref().err().map(|e| e.kind()),
        Some(ErrorKind::InvalidPath)
    );
    assert_eq!(
        r[4].as_ref().err().map(|e| e.kind()),
        Some(ErrorKind::NotADirectory)
    );
    assert!(
        r[5].as_ref()
            .is_ok_and(|a| a.inode != r[0].as_ref().map_or(0, |a| a.inode))
    );

    // More than one call's worth: split into calls, answered in order.
    let many: Vec<String> = (0..MAX_STAT_MANY * 2 + 7)
        .map(|k| format!("/s/f{}", k % 7))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = client.stat_many(&refs).await?;
    assert_eq!(r.len(), many.len());
    for (k, a) in r.iter().enumerate() {
        match (k % 7, a) {
            (i @ 0..=4, Ok(a)) => assert_eq!(a.size, i as u64, "answer {k}"),
            (5 | 6, Err(e)) => assert_eq!(e.kind(), ErrorKind::NotFound, "answer {k}"),
            (_, other) => panic!("answer {k}: {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_that_give_up_do_not_strand_the_queue() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    files(&client, 10).await?;

    // With the master down, every stat waits: the first ones hold the client's slots, the
    // rest queue behind them. Abort all of them, queued and in flight.
    cluster.kill_master().await;
    let mut tasks = Vec::new();
    for k in 0..50u64 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.stat(&format!("/s/f{}", k % 10)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for t in &tasks {
        t.abort();
    }
    // Stats asked now, while the master is still down, are answered once it is back.
    let waiting: Vec<_> = (0..20u64)
        .map(|k| {
            let c = client.clone();
            tokio::spawn(async move { (k, c.stat(&format!("/s/f{}", k % 10)).await) })
        })
        .collect();
    cluster.restart_master().await?;
    for t in waiting {
        let (k, r) = tokio::time::timeout(Duration::from_secs(30), t).await??;
        assert_eq!(r?.size, k % 10, "stat {k}");
    }
    let a = tokio::time::timeout(Duration::from_secs(10), client.stat("/s/f7")).await??;
    assert_eq!(a.size, 7);
    Ok(())
}
