//! Process-level clusters: the real `cairn` binary as child processes, for tests that must
//! `kill -9` a node, or hang one with `SIGSTOP`. Every child is killed (and resumed first,
//! if stopped) and the temp dir removed when the cluster drops.
//!
//! Tests outside `cairn-cli` find the binary with [`cairn_bin`]: `$CAIRN_BIN` if set,
//! otherwise it is built (once per test process, a no-op when up to date) with the same
//! cargo, profile and target directory as the running test.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;

/// The `cairn` binary for process-level tests (see the module docs).
pub fn cairn_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_cairn_bin().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn build_cairn_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CAIRN_BIN") {
        return Ok(PathBuf::from(bin));
    }
    // A test runs as <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().context("locate the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not under <target>/<profile>/deps")?;
    let target_dir = profile_dir.parent().context("no target directory")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "cairn-cli", "--bin", "cairn"])
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", target_dir);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .context("run cargo build for the cairn binary")?;
    anyhow::ensure!(status.success(), "cargo build of the cairn binary failed");
    let bin = profile_dir.join("cairn");
    anyhow::ensure!(bin.exists(), "{} missing after the build", bin.display());
    Ok(bin)
}

/// A free loopback port for a child to bind, never handed out twice (see [`crate::ports`]).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(crate::ports::reserve_port()?)
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

    /// Sends `signal` (`STOP`, `CONT`, ...) to the running child.
    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("the process is not running")?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .context("run kill")?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", child.id());
        Ok(())
    }
}

/// Extra command-line arguments for a [`ProcessCluster`]'s servers.
#[derive(Clone, Debug, Default)]
pub struct ProcessOptions {
    /// Appended to the master's arguments (e.g. `--gc-grace 1s`).
    pub master_args: Vec<String>,
    /// Appended to every chunk server's arguments (e.g. `--scrub-interval 1s`).
    pub chunkserver_args: Vec<String>,
}

/// A master and chunk servers as child processes.
pub struct ProcessCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    master_addr: String,
    master: Proc,
    chunkservers: Vec<(String, Proc)>,
    options: ProcessOptions,
}

impl ProcessCluster {
    /// Starts a master and `n` chunk servers from `bin` and waits for them to register.
    pub async fn start(bin: &Path, n: usize, chunk_size: u64) -> anyhow::Result<ProcessCluster> {
        Self::start_with(bin, n, chunk_size, ProcessOptions::default()).await
    }

    /// [`ProcessCluster::start`] with extra server arguments.
    pub async fn start_with(
        bin: &Path,
        n: usize,
        chunk_size: u64,
        options: ProcessOptions,
    ) -> anyhow::Result<ProcessCluster> {
        let dir = tempfile::Builder::new().prefix("cairn-proc-").tempdir()?;
        let master_addr = format!("127.0.0.1:{}", free_port()?);
        let mut args: Vec<String> = vec![
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
            "--http".into(),
            format!("127.0.0.1:{}", free_port()?),
        ];
        args.extend(options.master_args.iter().cloned());
        let master = Proc {
            args,
            log: dir.path().join("master.log"),
            child: None,
        };
        let mut cluster = ProcessCluster {
            bin: bin.to_path_buf(),
            dir,
            master_addr,
            master,
            chunkservers: Vec::new(),
            options,
        };
        cluster.master.spawn(&cluster.bin)?;
        for _ in 0..n {
            cluster.spawn_chunkserver(None)?;
        }
        // Generous: under the full suite, other tests' fsync-heavy writes share this disk,
        // and a chunk server's first start syncs its new store (seen to take over 30 s).
        cluster.wait_for_servers(n, Duration::from_secs(90)).await?;
        Ok(cluster)
    }

    /// Starts one more chunk server (data under the cluster's dir, or in `data`) and
    /// returns its index. It registers in the background (see `wait_for_servers`).
    pub fn add_chunkserver(&mut self, data: Option<PathBuf>) -> anyhow::Result<usize> {
        self.spawn_chunkserver(data)
    }

    fn spawn_chunkserver(&mut self, data: Option<PathBuf>) -> anyhow::Result<usize> {
        let i = self.chunkservers.len();
        let addr = format!("127.0.0.1:{}", free_port()?);
        let data = data.unwrap_or_else(|| self.dir.path().join(format!("cs{}", i + 1)));
        let mut args: Vec<String> = vec![
            "chunkserver".into(),
            "--data".into(),
            data.display().to_string(),
            "--listen".into(),
            addr.clone(),
            "--master".into(),
            self.master_addr.clone(),
            "--http".into(),
            format!("127.0.0.1:{}", free_port()?),
        ];
        args.extend(self.options.chunkserver_args.iter().cloned());
        let p = Proc {
            args,
            log: self.dir.path().join(format!("cs{}.log", i + 1)),
            child: None,
        };
        self.chunkservers.push((addr, p));
        let bin = self.bin.clone();
        self.chunkservers[i].1.spawn(&bin)?;
        Ok(i)
    }

    /// Number of chunk servers started (running or not).
    pub fn chunkserver_count(&self) -> usize {
        self.chunkservers.len()
    }

    /// The address chunk server `i` listens on.
    pub fn chunkserver_addr(&self, i: usize) -> &str {
        &self.chunkservers[i].0
    }

    /// The data directory of chunk server `i`.
    pub fn chunkserver_dir(&self, i: usize) -> PathBuf {
        let args = &self.chunkservers[i].1.args;
        let at = args.iter().position(|a| a == "--data").map_or(0, |p| p + 1);
        PathBuf::from(&args[at])
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

    /// Hangs chunk server `i` with `SIGSTOP`: its connections stay open, it answers nothing.
    pub fn stop_chunkserver(&mut self, i: usize) -> anyhow::Result<()> {
        self.chunkservers[i].1.signal("STOP")
    }

    /// Resumes a chunk server hung with [`ProcessCluster::stop_chunkserver`].
    pub fn resume_chunkserver(&mut self, i: usize) -> anyhow::Result<()> {
        self.chunkservers[i].1.signal("CONT")
    }

    /// Hangs the master with `SIGSTOP`.
    pub fn stop_master(&mut self) -> anyhow::Result<()> {
        self.master.signal("STOP")
    }

    /// Resumes a master hung with [`ProcessCluster::stop_master`].
    pub fn resume_master(&mut self) -> anyhow::Result<()> {
        self.master.signal("CONT")
    }

    /// Waits until the master reports `n` live chunk servers.
    pub async fn wait_for_servers(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let mut cfg = cairn_client::ClientConfig::new(self.master_addr.clone());
        cfg.deadline = Duration::from_secs(2);
        cfg.attempt_timeout = Duration::from_secs(1);
        let client = cairn_client::Client::connect(cfg).await?;
        let last = std::sync::Mutex::new(String::from("no status answered"));
        crate::wait_until(timeout, "chunk servers to register", || async {
            let seen = client.status().await;
            let done = seen.as_ref().is_ok_and(|s| {
                s.servers.iter().filter(|v| v.state == "alive").count() >= n && !s.safe_mode
            });
            if let Ok(mut l) = last.lock() {
                *l = match seen {
                    Ok(s) => format!("servers {:?}, safe mode {}", s.servers, s.safe_mode),
                    Err(e) => format!("status failed: {e}"),
                };
            }
            done
        })
        .await
        .with_context(|| {
            let last = last.lock().map(|l| l.clone()).unwrap_or_default();
            format!(
                "last: {last}; logs in {}{}",
                self.dir.path().display(),
                self.log_tails()
            )
        })
    }

    /// The last lines of every node's log, for a failure message (CI keeps no temp dirs).
    fn log_tails(&self) -> String {
        const LINES: usize = 15;
        let logs =
            std::iter::once(&self.master.log).chain(self.chunkservers.iter().map(|c| &c.1.log));
        let mut out = String::new();
        for log in logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LINES)..];
            out.push_str(&format!(
                "\n--- {} (last {} lines)\n{}",
                log.display(),
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        // SIGKILL works on stopped processes too, but resume first so nothing lingers in
        // an odd state if a kill fails.
        for (_, p) in &mut self.chunkservers {
            let _ = p.signal("CONT");
            p.kill9();
        }
        let _ = self.master.signal("CONT");
        self.master.kill9();
        if std::env::var_os("CAIRN_KEEP_TEST_DIRS").is_some() {
            eprintln!("test logs and data in {}", self.dir.path().display());
        }
    }
}
