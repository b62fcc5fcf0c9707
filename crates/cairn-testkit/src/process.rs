//! Process-level clusters: the real `cairn` binary as child processes, for tests that must
//! `kill -9` a node. Every child is killed and the temp dir removed when the cluster drops.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A free loopback port (bound then released; the child binds it right after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Proc {
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn spawn(&mut self, bin: &Path) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(bin)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {} {:?}", bin.display(), self.args))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

/// A master and chunk servers as child processes.
pub struct ProcessCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    master_addr: String,
    master: Proc,
    chunkservers: Vec<(String, Proc)>,
}

impl ProcessCluster {
    /// Starts a master and `n` chunk servers from `bin` and waits for them to register.
    pub async fn start(bin: &Path, n: usize, chunk_size: u64) -> anyhow::Result<ProcessCluster> {
        let dir = tempfile::Builder::new().prefix("cairn-proc-").tempdir()?;
        let master_addr = format!("127.0.0.1:{}", free_port()?);
        let master = Proc {
            args: vec![
                "master".into(),
                "--data".into(),
                dir.path().join("master").display().to_string(),
                "--listen".into(),
                master_addr.clone(),
                "--chunk-size".into(),
                chunk_size.to_string(),
                "--dead-timeout".into(),
                "3s".into(),
                "--session-timeout".into(),
                "3s".into(),
            ],
            log: dir.path().join("master.log"),
            child: None,
        };
        let mut cluster = ProcessCluster {
            bin: bin.to_path_buf(),
            dir,
            master_addr,
            master,
            chunkservers: Vec::new(),
        };
        cluster.master.spawn(&cluster.bin)?;
        for i in 0..n {
            let addr = format!("127.0.0.1:{}", free_port()?);
            let p = Proc {
                args: vec![
                    "chunkserver".into(),
                    "--data".into(),
                    cluster
                        .dir
                        .path()
                        .join(format!("cs{}", i + 1))
                        .display()
                        .to_string(),
                    "--listen".into(),
                    addr.clone(),
                    "--master".into(),
                    cluster.master_addr.clone(),
                ],
                log: cluster.dir.path().join(format!("cs{}.log", i + 1)),
                child: None,
            };
            cluster.chunkservers.push((addr, p));
            let bin = cluster.bin.clone();
            cluster.chunkservers[i].1.spawn(&bin)?;
        }
        cluster.wait_for_servers(n, Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    pub fn master_addr(&self) -> &str {
        &self.master_addr
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the CLI against this cluster and returns its output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.bin)
            .args(["--master", &self.master_addr, "--timeout", "20"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("run cairn")
    }

    /// Runs the CLI with `input` on stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &[u8]) -> anyhow::Result<Output> {
        use std::io::Write;
        let mut child = Command::new(&self.bin)
            .args(["--master", &self.master_addr, "--timeout", "20"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().context("stdin")?.write_all(input)?;
        Ok(child.wait_with_output()?)
    }

    pub fn kill9_master(&mut self) {
        self.master.kill9();
    }

    pub fn restart_master(&mut self) -> anyhow::Result<()> {
        self.master.kill9();
        self.master.spawn(&self.bin)
    }

    pub fn kill9_chunkserver(&mut self, i: usize) {
        self.chunkservers[i].1.kill9();
    }

    pub fn restart_chunkserver(&mut self, i: usize) -> anyhow::Result<()> {
        self.chunkservers[i].1.kill9();
        let bin = self.bin.clone();
        self.chunkservers[i].1.spawn(&bin)
    }

    /// Waits until the master reports `n` live chunk servers.
    pub async fn wait_for_servers(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let mut cfg = cairn_client::ClientConfig::new(self.master_addr.clone());
        cfg.deadline = Duration::from_secs(2);
        cfg.attempt_timeout = Duration::from_secs(1);
        let client = cairn_client::Client::connect(cfg).await?;
        crate::wait_until(timeout, "chunk servers to register", || async {
            match client.status().await {
                Ok(s) => {
                    s.servers.iter().filter(|v| v.state == "alive").count() >= n && !s.safe_mode
                }
                Err(_) => false,
            }
        })
        .await
        .with_context(|| format!("logs in {}", self.dir.path().display()))
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for (_, p) in &mut self.chunkservers {
            p.kill9();
        }
        self.master.kill9();
    }
}
