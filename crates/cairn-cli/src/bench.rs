//! `cairn bench`: throughput of the data path against a running cluster, through the same
//! client library calls `put` and `get` use. Figures are MB/s (10^6 bytes per second).

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use cairn_client::Client;
use cairn_common::size::parse_size;
use clap::{Args, ValueEnum};

use crate::CmdResult;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Workload {
    /// Upload a file, then download it.
    PutGet,
    Put,
    Get,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_enum, default_value_t = Workload::PutGet)]
    workload: Workload,
    /// Bytes per run.
    #[arg(long, default_value = "1GiB", value_parser = |s: &str| parse_size(s).map_err(|e| e.to_string()))]
    size: u64,
    /// Remote file used (overwritten).
    #[arg(long, default_value = "/.cairn-bench")]
    path: String,
    /// Runs; the median is reported with min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Keep the remote file afterwards.
    #[arg(long)]
    keep: bool,
    #[arg(long)]
    json: bool,
    /// Chunks written concurrently (default: the client library's).
    #[arg(long)]
    parallel: Option<usize>,
}

/// Fills a local file with non-repeating bytes (zeros would flatter sparse storage).
fn make_source(size: u64) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut f = tempfile::NamedTempFile::new().context("create a local source file")?;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.copy_from_slice(&state.to_le_bytes());
        }
        let n = (left as usize).min(buf.len());
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(f)
}

fn crc_of_file(path: &std::path::Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = 0u32;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

pub async fn bench(client: &Client, a: &BenchArgs) -> CmdResult {
    let mut config = client.config().clone();
    if let Some(p) = a.parallel {
        config.write_parallelism = p.max(1);
    }
    let client = &Client::connect(config).await?;
    let runs = a.runs.max(1);
    let source = make_source(a.size)?;
    let expected = crc_of_file(source.path()).context("hash the source")?;
    let mut put = Vec::new();
    let mut get = Vec::new();
    if a.workload == Workload::Get {
        client.put_file(source.path(), &a.path, true).await?;
    }
    for _ in 0..runs {
        if a.workload != Workload::Get {
            let t = Instant::now();
            client.put_file(source.path(), &a.path, true).await?;
            put.push(a.size as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
        if a.workload != Workload::Put {
            let t = Instant::now();
            let mut reader = client.reader(&a.path).await?;
            let mut crc = 0u32;
            let mut n = 0u64;
            while let Some(piece) = reader.next().await? {
                crc = crc32c::crc32c_append(crc, &piece);
                n += piece.len() as u64;
            }
            get.push(a.size as f64 / t.elapsed().as_secs_f64() / 1e6);
            if n != a.size || crc != expected {
                return Err(anyhow::anyhow!(
                    "read back {n} bytes with CRC {crc:08x}, expected {} with {expected:08x}",
                    a.size
                )
                .into());
            }
        }
    }
    if !a.keep {
        client.delete(&a.path, false).await?;
    }
    let mut rows = Vec::new();
    for (name, v) in [("put", put), ("get", get)] {
        if !v.is_empty() {
            rows.push((name, stats(v)));
        }
    }
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, (med, min, max))| serde_json::json!({"workload": n, "bytes": a.size, "runs": runs, "median_mb_s": med, "min_mb_s": min, "max_mb_s": max}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).context("encode JSON")?
        );
    } else {
        println!(
            "{:<6} {:>10} {:>6} {:>12} {:>10} {:>10}",
            "bench", "size", "runs", "median MB/s", "min", "max"
        );
        for (n, (med, min, max)) in rows {
            println!(
                "{n:<6} {:>10} {runs:>6} {med:>12.1} {min:>10.1} {max:>10.1}",
                cairn_common::size::HumanBytes(a.size).to_string()
            );
        }
    }
    Ok(())
}
