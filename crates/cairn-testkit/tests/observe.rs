//! Seeing the cluster: health, Prometheus metrics, the JSON status, and the web dashboard
//! rendered by a real headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cairn_testkit::http::{get, samples};
use cairn_testkit::{TestCluster, init_logging, pattern, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_metrics_and_status_endpoints() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let c = cluster.client().await?;
    c.mkdir("/m", false).await?;
    c.write_all("/m/f", Bytes::from(pattern(1, 3 << 20)), false)
        .await?;
    assert_eq!(c.read_all("/m/f").await?.len(), 3 << 20);
    let _ = c.stat("/m/missing").await;

    let (code, body) = get(&cluster.master_http_addr(), "/healthz").await?;
    assert_eq!((code, body.trim()), (200, "ok"));
    for i in 0..3 {
        let (code, _) = get(&cluster.chunkserver_http_addr(i), "/healthz").await?;
        assert_eq!(code, 200);
    }

    let (code, text) = get(&cluster.master_http_addr(), "/metrics").await?;
    assert_eq!(code, 200);
    let m = samples(&text)?;
    let value = |k: &str| {
        m.get(k).copied().unwrap_or_else(|| {
            panic!(
                "metric {k} missing; have {:?}",
                m.keys().collect::<Vec<_>>()
            )
        })
    };
    assert!(value("cairn_master_rpc_requests_total{code=Ok,method=Master/Create}") >= 1.0);
    assert!(value("cairn_master_rpc_requests_total{code=NotFound,method=Master/Stat}") >= 1.0);
    // Three chunks: the first was placed with the create, the other two by PrepareWrite.
    assert!(value("cairn_master_rpc_duration_seconds{method=Master/PrepareWrite}#count") >= 2.0);
    assert_eq!(value("cairn_master_chunkservers{state=alive}"), 3.0);
    assert_eq!(value("cairn_master_chunks{state=at_goal}"), 3.0);
    assert_eq!(value("cairn_master_chunks{state=under_goal}"), 0.0);
    assert_eq!(value("cairn_master_namespace_files"), 1.0);
    assert!(value("cairn_master_oplog_appends_total") >= 5.0);
    assert!(value("cairn_master_oplog_fsync_duration_seconds#count") >= 1.0);
    assert_eq!(value("cairn_master_safe_mode"), 0.0);

    let mut written = 0.0;
    let mut read = 0.0;
    for i in 0..3 {
        let (_, text) = get(&cluster.chunkserver_http_addr(i), "/metrics").await?;
        let m = samples(&text)?;
        written += m
            .get("cairn_chunkserver_written_bytes_total")
            .copied()
            .unwrap_or(0.0);
        read += m
            .get("cairn_chunkserver_read_bytes_total")
            .copied()
            .unwrap_or(0.0);
        assert_eq!(m.get("cairn_chunkserver_registered").copied(), Some(1.0));
        assert!(
            m.keys()
                .any(|k| k.starts_with("cairn_chunkserver_rpc_requests_total"))
        );
    }
    assert_eq!(
        written,
        (3 * (3 << 20)) as f64,
        "every replica received every byte once"
    );
    assert_eq!(
        read,
        (3 << 20) as f64,
        "the read came from one replica per chunk"
    );

    let (code, json) = get(&cluster.master_http_addr(), "/status").await?;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(v["servers"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["files"].as_u64(), Some(1));
    assert!(
        v["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "server_registered"))
    );
    let (_, cs) = get(&cluster.chunkserver_http_addr(0), "/status").await?;
    let cs: serde_json::Value = serde_json::from_str(&cs)?;
    assert_eq!(cs["registered"].as_bool(), Some(true));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthz_says_why_the_master_is_not_serving() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder()
        .master_config(|m| m.safe_mode_timeout = Duration::from_secs(60))
        .start()
        .await?;
    let c = cluster.client().await?;
    c.write_all("/f", Bytes::from_static(b"data"), false)
        .await?;
    for i in 0..3 {
        cluster.kill_chunkserver(i).await;
    }
    cluster.restart_master().await?;
    // No chunk server reports: the master stays in safe mode and says so.
    let addr = cluster.master_http_addr();
    wait_until(Duration::from_secs(10), "healthz to answer", || async {
        get(&addr, "/healthz").await.is_ok()
    })
    .await?;
    let (code, body) = get(&addr, "/healthz").await?;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("safe mode"), "{body}");
    let (_, text) = get(&addr, "/metrics").await?;
    assert_eq!(
        samples(&text)?.get("cairn_master_safe_mode").copied(),
        Some(1.0)
    );
    cluster.restart_chunkserver(0).await?;
    wait_until(
        Duration::from_secs(20),
        "the master to leave safe mode",
        || async {
            get(&addr, "/healthz")
                .await
                .map(|(c, _)| c == 200)
                .unwrap_or(false)
        },
    )
    .await
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("which").arg(name).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
}

/// Loads `url` in headless Chromium, lets the page's script run, and returns the DOM.
fn render(
    browser: &Path,
    url: &str,
    screenshot: Option<&Path>,
    profile: &Path,
) -> anyhow::Result<String> {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=4000",
        "--window-size=1366,900",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    match screenshot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output()?;
    anyhow::ensure!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_servers_and_a_dead_one_in_a_real_browser() -> anyhow::Result<()> {
    init_logging();
    let Some(browser) = chromium() else {
        // CI installs chromium and sets CAIRN_REQUIRE_TOOLS, so there a missing browser fails.
        anyhow::ensure!(
            std::env::var_os("CAIRN_REQUIRE_TOOLS").is_none(),
            "CAIRN_REQUIRE_TOOLS is set but no chromium is on PATH"
        );
        eprintln!("SKIPPED: no chromium on PATH (CI installs Debian's chromium package)");
        return Ok(());
    };
    let mut cluster = TestCluster::builder().start().await?;
    let c = cluster.client().await?;
    c.write_all("/data", Bytes::from(pattern(2, 2 << 20)), false)
        .await?;
    let url = format!("http://{}/", cluster.master_http_addr());
    let profile = tempfile::tempdir()?;
    let b = browser.clone();
    let (u, p) = (url.clone(), profile.path().to_path_buf());
    let dom = tokio::task::spawn_blocking(move || render(&b, &u, None, &p)).await??;
    assert_eq!(
        count(&dom, r#"data-state="alive""#),
        3,
        "three live servers shown"
    );
    assert_eq!(count(&dom, r#"data-state="dead""#), 0);
    assert!(
        dom.contains(r#"<b id="under-goal">0</b>"#),
        "nothing under goal yet"
    );

    cluster.kill_chunkserver(2).await;
    let dead = cluster.chunkserver_addr(2);
    let b = browser.clone();
    let (u, p) = (url.clone(), profile.path().to_path_buf());
    let dom = tokio::task::spawn_blocking(move || render(&b, &u, None, &p)).await??;
    assert_eq!(
        count(&dom, r#"data-state="dead""#),
        1,
        "the killed server is shown dead"
    );
    assert!(dom.contains(&format!(r#"data-addr="{dead}""#)));
    assert!(
        !dom.contains(r#"<b id="under-goal">0</b>"#),
        "under-replicated count rose"
    );
    assert!(
        dom.contains("disconnected; marked dead"),
        "the event is listed"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let (u, p, s) = (url, profile.path().to_path_buf(), shot.clone());
    tokio::task::spawn_blocking(move || render(&browser, &u, Some(&s), &p)).await??;
    let size = std::fs::metadata(&shot)?.len();
    assert!(size > 10_000, "a real screenshot ({size} bytes)");
    eprintln!("dashboard screenshot: {}", shot.display());
    Ok(())
}
