//! The real `cairn` binary against a process-level cluster: commands, output, exit codes,
//! and `kill -9` of the master.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_testkit::pattern;
use cairn_testkit::process::ProcessCluster;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cairn"))
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails_with(out: &std::process::Output, code: i32, classic: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.trim_end().ends_with(&format!("({classic})")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_output_and_exit_codes() -> anyhow::Result<()> {
    let c = ProcessCluster::start(bin(), 3, 1 << 20).await?;
    let local = c.root().join("local.bin");
    let data = pattern(3, (2 << 20) + 333);
    std::fs::write(&local, &data)?;
    ok(&c.cli(&["mkdir", "-p", "/a/b"])?);
    ok(&c.cli(&["put", local.to_str().unwrap(), "/a/b/file"])?);
    // Into an existing directory: keeps the local name.
    ok(&c.cli(&["put", local.to_str().unwrap(), "/a"])?);
    let back = c.root().join("back.bin");
    ok(&c.cli(&["get", "/a/b/file", back.to_str().unwrap()])?);
    assert_eq!(std::fs::read(&back)?, data);
    let out = c.cli(&["cat", "/a/local.bin"])?;
    ok(&out);
    assert_eq!(out.stdout, data);
    // stdin in, stdout out.
    ok(&c.cli_stdin(&["put", "-", "/a/stdin"], b"from stdin\n")?);
    assert_eq!(c.cli(&["get", "/a/stdin", "-"])?.stdout, b"from stdin\n");

    let ls = ok(&c.cli(&["ls", "/a"])?);
    assert_eq!(ls.lines().collect::<Vec<_>>(), ["b/", "local.bin", "stdin"]);
    let long = ok(&c.cli(&["ls", "-l", "/a/b"])?);
    assert!(long.starts_with("-rw-r--r--"), "{long}");
    assert!(long.contains(&data.len().to_string()), "{long}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&c.cli(&["stat", "--json", "/a/b/file"])?))?;
    let chunks = json["chunks"].as_array().expect("chunks");
    assert_eq!(chunks.len(), 3);
    for ch in chunks {
        assert_eq!(ch["replicas"].as_array().map(Vec::len), Some(3));
        assert!(ch["chunk_id"].as_u64().unwrap() > 0);
        assert_eq!(ch["version"].as_u64(), Some(1));
    }
    let ls_json: serde_json::Value = serde_json::from_str(&ok(&c.cli(&["ls", "--json", "/a"])?))?;
    assert_eq!(ls_json.as_array().map(Vec::len), Some(3));

    // Several paths: one answer each, in order; a missing one is an error line and the
    // exit code, the others are still shown.
    let many = ok(&c.cli(&["stat", "/a/b/file", "/a/stdin/"])?);
    assert_eq!(many.matches("  path: ").count(), 2, "{many}");
    assert!(many.contains("  path: /a/stdin\n"), "{many}");
    let out = c.cli(&["stat", "--json", "/a/stdin", "/a/nope", "/a/b"])?;
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/a/nope") && stderr.contains("FILE_NOT_FOUND"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let v = v.as_array().expect("an array for several paths");
    assert_eq!(v.len(), 3);
    assert_eq!(v[0]["attr"]["size"].as_u64(), Some(11));
    assert_eq!(v[1]["error"].as_str(), Some("NOT_FOUND"));
    assert_eq!(v[2]["path"].as_str(), Some("/a/b"));

    // The classic verbs.
    assert_eq!(ok(&c.cli(&["create", "notes"])?).trim(), "FILE_CREATED");
    assert_eq!(
        ok(&c.cli(&["write", "notes", "key:value:more"])?).trim(),
        "FILE_WRITTEN"
    );
    assert_eq!(ok(&c.cli(&["read", "notes"])?).trim(), "key:value:more");
    assert_eq!(ok(&c.cli(&["delete", "notes"])?).trim(), "FILE_DELETED");
    fails_with(&c.cli(&["read", "notes"])?, 3, "FILE_NOT_FOUND");

    // Errors: one line, classic name, distinct exit code; nothing changes.
    fails_with(&c.cli(&["get", "/nope", "-"])?, 3, "FILE_NOT_FOUND");
    fails_with(
        &c.cli(&["put", local.to_str().unwrap(), "/a/b/file"])?,
        4,
        "FILE_EXISTS_ERROR",
    );
    fails_with(&c.cli(&["mkdir", "/a/../x"])?, 8, "INVALID_PATH_ERROR");
    fails_with(&c.cli(&["ls", "relative"])?, 8, "INVALID_PATH_ERROR");
    let long_name = format!("/{}", "x".repeat(256));
    fails_with(&c.cli(&["mkdir", &long_name])?, 8, "INVALID_PATH_ERROR");
    fails_with(
        &c.cli(&["mv", "/a", "/a/b/inside"])?,
        9,
        "INVALID_ARGUMENT_ERROR",
    );
    fails_with(&c.cli(&["rm", "/a"])?, 12, "DIRECTORY_NOT_EMPTY_ERROR");
    fails_with(&c.cli(&["cat", "/a"])?, 11, "IS_A_DIRECTORY_ERROR");
    fails_with(
        &c.cli(&["mkdir", "/a/b/file/sub"])?,
        10,
        "NOT_A_DIRECTORY_ERROR",
    );
    assert_eq!(
        c.cli(&["get", "/a/b/file", "-"])?.stdout,
        data,
        "failed commands changed nothing"
    );
    // With --force a put replaces the file.
    ok(&c.cli(&[
        "put",
        "--force",
        c.root().join("back.bin").to_str().unwrap(),
        "/a/stdin",
    ])?);
    assert_eq!(c.cli(&["cat", "/a/stdin"])?.stdout, data);
    ok(&c.cli(&["mv", "/a/stdin", "/renamed"])?);
    ok(&c.cli(&["rm", "-r", "/a"])?);
    assert_eq!(ok(&c.cli(&["ls", "/"])?).trim(), "renamed");
    let status: serde_json::Value = serde_json::from_str(&ok(&c.cli(&["status", "--json"])?))?;
    assert_eq!(status["servers"].as_array().map(Vec::len), Some(3));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_master_keeps_every_acknowledged_put() -> anyhow::Result<()> {
    let mut c = ProcessCluster::start(bin(), 3, 1 << 20).await?;
    let mut acked = Vec::new();
    for i in 0..12u64 {
        let local = c.root().join(format!("in{i}"));
        let data = pattern(100 + i, (i as usize * 300_000) % (3 << 20) + 1);
        std::fs::write(&local, &data)?;
        let path = format!("/f{i}");
        ok(&c.cli(&["put", local.to_str().unwrap(), &path])?);
        acked.push((path, data));
        if i == 5 {
            ok(&c.cli(&["mkdir", "-p", "/deep/er"])?);
        }
    }
    c.kill9_master();
    // While the master is down, a command fails with TIMEOUT_ERROR after its deadline.
    let t = Instant::now();
    let out = std::process::Command::new(bin())
        .args(["--master", c.master_addr(), "--timeout", "2", "ls", "/"])
        .output()?;
    fails_with(&out, 6, "TIMEOUT_ERROR");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "bounded wait, took {:?}",
        t.elapsed()
    );
    c.restart_master()?;
    c.wait_for_servers(3, Duration::from_secs(30)).await?;
    for (path, data) in &acked {
        let out = c.cli(&["get", path, "-"])?;
        ok(&out);
        assert!(&out.stdout == data, "{path} differs after kill -9");
    }
    ok(&c.cli(&["stat", "/deep/er"])?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_master_during_puts_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let mut c = ProcessCluster::start(bin(), 3, 1 << 20).await?;
    let local = c.root().join("payload");
    let data = pattern(9, 1_500_000);
    std::fs::write(&local, &data)?;
    // Puts run in a background thread; every one that exits 0 is acknowledged.
    let (bin_path, addr, src) = (
        bin().to_path_buf(),
        c.master_addr().to_string(),
        local.clone(),
    );
    let writer = std::thread::spawn(move || {
        let mut acked = Vec::new();
        let start = Instant::now();
        let mut i = 0;
        while start.elapsed() < Duration::from_secs(8) {
            let path = format!("/p{i}");
            let out = std::process::Command::new(&bin_path)
                .args([
                    "--master",
                    &addr,
                    "--timeout",
                    "15",
                    "put",
                    src.to_str().unwrap(),
                    &path,
                ])
                .output();
            if out.map(|o| o.status.success()).unwrap_or(false) {
                acked.push(path);
            }
            i += 1;
        }
        acked
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.kill9_master();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.restart_master()?;
    let acked = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .expect("writer thread");
    assert!(acked.len() > 3, "some puts were acknowledged: {acked:?}");
    c.wait_for_servers(3, Duration::from_secs(30)).await?;
    for path in &acked {
        let out = c.cli(&["get", path, "-"])?;
        ok(&out);
        assert!(out.stdout == data, "{path} differs");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_a_killed_client_is_released_after_the_session_timeout() -> anyhow::Result<()>
{
    let c = ProcessCluster::start(bin(), 3, 1 << 20).await?;
    ok(&c.cli(&["write", "shared", "v1"])?);
    // A client holds an exclusive lock while its command runs, then is killed with SIGKILL.
    let mut holder = std::process::Command::new(bin())
        .args([
            "--master",
            c.master_addr(),
            "lock",
            "--wait",
            "20",
            "shared",
            "--",
            "sleep",
            "60",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Wait until the lock is really held: an exclusive write is refused with exit code 5.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = c.cli(&["write", "--exclusive", "shared", "v2"])?;
        if out.status.code() == Some(5) {
            fails_with(&out, 5, "FILE_LOCKED_ERROR");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock was never taken: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    holder.kill()?; // SIGKILL: no unlock, no session close
    holder.wait()?;
    let killed = Instant::now();
    // A writer that waits in the queue gets the file once the session times out (3 s).
    let out = c.cli(&["write", "--exclusive", "--wait", "20", "shared", "v2"])?;
    ok(&out);
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "released after {:?}",
        killed.elapsed()
    );
    assert_eq!(ok(&c.cli(&["read", "shared"])?).trim(), "v2");
    // `cairn lock` hands the command's exit code through.
    let out = c.cli(&["lock", "--shared", "shared", "--", "sh", "-c", "exit 7"])?;
    assert_eq!(out.status.code(), Some(7));
    // write --offset and append and truncate through the CLI.
    ok(&c.cli(&["write", "shared", "0123456789"])?);
    ok(&c.cli(&["write", "--offset", "3", "shared", "abc"])?);
    ok(&c.cli_stdin(&["append", "shared"], b"+tail")?);
    assert_eq!(ok(&c.cli(&["read", "shared"])?).trim(), "012abc6789+tail");
    ok(&c.cli(&["truncate", "shared", "4"])?);
    assert_eq!(ok(&c.cli(&["read", "shared"])?).trim(), "012a");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_protocol_meets_the_cli() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let c = ProcessCluster::start(bin(), 3, 1 << 20).await?;
    // As the old clients do: one send, no terminator, recv(1024).
    let ask = |addr: &str, req: &[u8]| -> anyhow::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.write_all(req)?;
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let info = ask(c.master_addr(), b"FIND_PRIMARY_SERVER")?;
    let (ip, port) = info
        .strip_prefix("PRIMARY_SERVER_INFO:")
        .and_then(|s| s.split_once(','))
        .ok_or_else(|| anyhow::anyhow!("unexpected {info:?}"))?;
    let cs = format!("{ip}:{port}");
    assert_eq!(ask(&cs, b"WRITE_FILE:report.txt:a:b:c")?, "FILE_WRITTEN");
    // Written classic, read with `cairn get`; listed by `cairn ls`.
    assert_eq!(c.cli(&["get", "/report.txt", "-"])?.stdout, b"a:b:c");
    assert!(ok(&c.cli(&["ls", "/"])?).lines().any(|l| l == "report.txt"));
    ok(&c.cli(&["write", "from-cli", "hello"])?);
    assert_eq!(ask(&cs, b"READ_FILE:from-cli")?, "FILE_CONTENT:hello");
    // Locked with `cairn lock`: classic writers get FILE_LOCKED_ERROR until it is released.
    let mut holder = std::process::Command::new(bin())
        .args([
            "--master",
            c.master_addr(),
            "lock",
            "--wait",
            "20",
            "report.txt",
            "--",
            "sleep",
            "30",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = ask(&cs, b"WRITE_FILE:report.txt:changed")?;
        if answer == "FILE_LOCKED_ERROR" {
            break;
        }
        assert_eq!(answer, "FILE_WRITTEN");
        assert!(Instant::now() < deadline, "the lock was never taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    holder.kill()?;
    holder.wait()?;
    Ok(())
}
