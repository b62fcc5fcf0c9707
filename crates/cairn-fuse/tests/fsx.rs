//! fsx (the File System eXerciser, crate `fsx`) against a real mount: random reads,
//! writes, mapped reads and writes, truncates, fallocate, fsync, close/reopen and cache
//! invalidation on one file, every read checked against fsx's model of the file. Bounded
//! by an operation count (`CAIRN_FSX_OPS`, default 4000 per seed) and a time limit.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::ensure;
use common::{Env, have, run};

const CONFIG: &str = r#"
# File sizes cross 1 MiB chunk boundaries of the test cluster.
flen = 4194304
[weights]
close_open = 0.5
invalidate = 0.2
fsync = 0.2
fdatasync = 0.2
posix_fallocate = 0.3
sendfile = 0.3
copy_file_range = 0.3
posix_fadvise = 0.2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsx_random_operations() -> anyhow::Result<()> {
    require_fuse!();
    if !have("fsx") {
        common::skipping("fsx is not installed (`cargo install fsx`; .ci/run does it)")?;
        return Ok(());
    }
    let ops: u64 = std::env::var("CAIRN_FSX_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    let env = Env::start(1, 1 << 20).await?;
    let work = tempfile::tempdir()?;
    let config = work.path().join("fsx.toml");
    std::fs::write(&config, CONFIG)?;
    let mut result = Ok(());
    for seed in [1u64, 20260707] {
        let file = env.dir(0).join(format!("fsx-{seed}.bin"));
        let mut cmd = Command::new("fsx");
        cmd.arg("-N")
            .arg(ops.to_string())
            .arg("-S")
            .arg(seed.to_string());
        cmd.arg("-f")
            .arg(&config)
            .arg("-P")
            .arg(work.path())
            .arg(&file);
        let out = run(Duration::from_secs(400), &mut cmd).await;
        result = out.and_then(|text| {
            ensure!(
                text.contains("All operations completed A-OK"),
                "fsx seed {seed} did not complete cleanly:\n{text}"
            );
            eprintln!("fsx seed {seed}: {ops} operations A-OK");
            Ok(())
        });
        if result.is_err() {
            break;
        }
    }
    let stopped = env.stop().await;
    result.and(stopped)
}
