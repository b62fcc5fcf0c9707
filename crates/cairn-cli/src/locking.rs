//! Writes at an offset, appends, truncates, exclusive-writer writes, and `cairn lock`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use cairn_client::{Client, Error, Kind, LockOptions};
use clap::Args;

use crate::fs::classic;
use crate::{CmdResult, Failure};

#[derive(Args)]
pub struct WriteArgs {
    name: String,
    content: String,
    /// Write at this byte offset instead of replacing the content.
    #[arg(long)]
    offset: Option<u64>,
    /// Hold an exclusive-writer lock while writing: another writer gets FILE_LOCKED_ERROR.
    #[arg(long)]
    exclusive: bool,
    /// With --exclusive: wait up to SECS in the queue instead of failing at once.
    #[arg(long, value_name = "SECS")]
    wait: Option<f64>,
}

#[derive(Args)]
pub struct LockArgs {
    name: String,
    /// A shared lock (many holders) instead of an exclusive one.
    #[arg(long)]
    shared: bool,
    /// Wait up to SECS in the queue instead of failing at once with FILE_LOCKED_ERROR.
    #[arg(long, value_name = "SECS")]
    wait: Option<f64>,
    /// The command to run while the lock is held.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn wait_arg(secs: Option<f64>) -> Result<Option<Duration>, Failure> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(Error::new(
            Kind::InvalidArgument,
            format!("--wait {s}: not a number of seconds"),
        )
        .into()),
    }
}

/// Tells a waiting person where they are in the queue (the classic "you are in the queue").
fn announce(name: &str) -> impl FnMut(u32) + '_ {
    move |position| {
        eprintln!("waiting for the lock on {name}: you are number {position} in the queue")
    }
}

pub async fn write(client: &Client, a: &WriteArgs) -> CmdResult {
    let path = classic(&a.name)?;
    let data = Bytes::from(a.content.clone());
    if a.exclusive {
        let file = client
            .open_exclusive(&path, wait_arg(a.wait)?, announce(&path))
            .await?;
        let result = match a.offset {
            Some(off) => file.write_at(off, data).await,
            None => file.write_all(data).await,
        };
        let closed = file.close().await;
        let _ = client.close_session().await;
        result?;
        closed?;
    } else {
        match a.offset {
            Some(off) => client.write_at(&path, off, data).await?,
            None => client.write_all(&path, data, true).await?,
        };
    }
    println!("FILE_WRITTEN");
    Ok(())
}

pub async fn append(client: &Client, name: &str, local: &str) -> CmdResult {
    let path = classic(name)?;
    let (offset, attr) = if local == "-" {
        // Stdin is spooled to a local temp file so the record can be sent in one piece (and
        // again, if a replica fails) without holding it in memory.
        let mut spool = tempfile::tempfile().context("create a spool file")?;
        let copied = tokio::task::spawn_blocking(move || {
            std::io::copy(&mut std::io::stdin().lock(), &mut spool).map(|_| spool)
        })
        .await
        .context("read stdin")?
        .context("read stdin")?;
        client.append_file(&path, copied).await?
    } else {
        let file =
            std::fs::File::open(Path::new(local)).with_context(|| format!("open {local}"))?;
        client.append_file(&path, file).await?
    };
    println!(
        "appended at offset {offset}; {path} is now {} bytes",
        attr.size
    );
    Ok(())
}

pub async fn truncate(client: &Client, name: &str, size: &str) -> CmdResult {
    let path = classic(name)?;
    let size = cairn_common::size::parse_size(size)
        .map_err(|e| Error::new(Kind::InvalidArgument, e.to_string()))?;
    client.truncate(&path, size).await?;
    Ok(())
}

pub async fn lock(client: &Client, a: &LockArgs) -> CmdResult {
    let path = classic(&a.name)?;
    let opts = if a.shared {
        LockOptions::shared()
    } else {
        LockOptions::exclusive()
    }
    .wait(wait_arg(a.wait)?);
    client.lock(&path, &opts, announce(&path)).await?;
    let status = tokio::process::Command::new(&a.command[0])
        .args(&a.command[1..])
        .status()
        .await;
    // Release before reporting, whatever the command did.
    let released = client.unlock(&path, &opts).await;
    let _ = client.close_session().await;
    let status = status.with_context(|| format!("run {}", a.command[0]))?;
    released?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(Failure::Exit(u8::try_from(code).unwrap_or(1))),
        None => Err(Failure::Exit(128 + 9)),
    }
}
