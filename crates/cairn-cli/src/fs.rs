//! File commands: put, get, cat, ls, mkdir, rm, mv, stat, and the classic verbs (create,
//! write, read, delete) for people coming from the classic protocol.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_client::{Attr, Client, Error, FileType, Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{CmdResult, Failure};

/// Local read size for uploads from stdin.
const STDIN_BUF: usize = 1 << 20;

/// Transfers smaller than this get no progress bar.
const PROGRESS_MIN: u64 = 16 << 20;

/// A progress bar on stderr for a transfer of `len` bytes (0: unknown), only when stderr is
/// a terminal and the transfer is large enough to be worth watching.
fn progress_bar(len: u64, name: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || (len != 0 && len < PROGRESS_MIN) {
        return None;
    }
    let bar = if len == 0 {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::new(len)
    };
    let template = if len == 0 {
        "{spinner} {msg} {bytes} ({bytes_per_sec})"
    } else {
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    Some(bar)
}

/// A remote path as typed: absolute; a trailing `/` is forgiven.
fn remote(p: &str) -> Result<String, Error> {
    cairn_proto::CairnPath::parse_lenient(p)
        .map(|p| p.to_string())
        .map_err(|e| Error::new(Kind::InvalidPath, format!("{p}: invalid path: {e}")))
}

/// A classic name: a plain name is a file in the root; an absolute path is used as is.
pub fn classic(name: &str) -> Result<String, Error> {
    if name.starts_with('/') {
        remote(name)
    } else {
        remote(&format!("/{name}"))
    }
}

fn join_remote(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

pub async fn put(client: &Client, local: &str, to: &str, force: bool) -> CmdResult {
    let mut to = remote(to)?;
    if local != "-" {
        // Putting into an existing directory keeps the local file name, like cp.
        if let Ok(a) = client.stat(&to).await
            && a.is_dir()
        {
            let name = Path::new(local)
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| {
                    Error::new(Kind::InvalidArgument, format!("{local}: no file name"))
                })?;
            to = join_remote(&to, name);
        }
        let meta = std::fs::metadata(local).with_context(|| format!("read {local}"))?;
        if meta.is_dir() {
            return Err(Error::new(Kind::IsADirectory, format!("{local}: is a directory")).into());
        }
        let bar = progress_bar(meta.len(), &to);
        let progress = bar
            .clone()
            .map(|b| -> cairn_client::Progress { std::sync::Arc::new(move |n| b.inc(n)) });
        client
            .put_file_with_progress(Path::new(local), &to, force, progress)
            .await?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        return Ok(());
    }
    let mut writer = client.writer(&to, force).await?;
    let bar = progress_bar(0, &to);
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; STDIN_BUF];
    let copied: CmdResult = async {
        loop {
            let n = stdin.read(&mut buf).await.context("read stdin")?;
            if n == 0 {
                return Ok(());
            }
            writer.write(&buf[..n]).await?;
            if let Some(b) = &bar {
                b.inc(n as u64);
            }
        }
    }
    .await;
    if let Err(e) = copied {
        // Nothing was acknowledged: leave no empty or partial file behind, like `put FILE`.
        writer.abort().await;
        return Err(e);
    }
    writer.close().await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

pub async fn get(client: &Client, from: &str, local: &str) -> CmdResult {
    let from = remote(from)?;
    let mut reader = client.reader(&from).await?;
    if local == "-" {
        let mut out = tokio::io::stdout();
        while let Some(piece) = reader.next().await? {
            out.write_all(&piece).await?;
        }
        out.flush().await?;
        return Ok(());
    }
    let mut target = PathBuf::from(local);
    if target.is_dir() {
        let name = from.rsplit('/').next().unwrap_or("file");
        target = target.join(name);
    }
    // Download next to the target and rename at the end: an interrupted get never leaves
    // a truncated file under the final name.
    let part = target.with_file_name(format!(
        ".{}.cairn-part",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download")
    ));
    let result = async {
        let mut file = tokio::fs::File::create(&part)
            .await
            .with_context(|| format!("create {}", part.display()))?;
        let bar = progress_bar(reader.attr().size, &from);
        while let Some(piece) = reader.next().await? {
            if let Some(b) = &bar {
                b.inc(piece.len() as u64);
            }
            file.write_all(&piece)
                .await
                .with_context(|| format!("write {}", part.display()))?;
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        file.sync_all().await?;
        tokio::fs::rename(&part, &target)
            .await
            .with_context(|| format!("rename to {}", target.display()))?;
        CmdResult::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    result
}

pub async fn cat(client: &Client, paths: &[String]) -> CmdResult {
    let mut out = tokio::io::stdout();
    for p in paths {
        let mut reader = client.reader(&remote(p)?).await?;
        while let Some(piece) = reader.next().await? {
            out.write_all(&piece).await?;
        }
    }
    out.flush().await?;
    Ok(())
}

fn mode_string(a: &Attr) -> String {
    let t = match a.file_type {
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::File => '-',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let bits = (a.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// `YYYY-MM-DD HH:MM` in UTC from Unix nanoseconds.
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

pub async fn ls(client: &Client, p: &str, long: bool, json: bool) -> CmdResult {
    let path = remote(p)?;
    let attr = client.stat(&path).await?;
    let entries = if attr.is_dir() {
        client.list(&path).await?
    } else {
        let name = path.rsplit('/').next().unwrap_or("").to_string();
        vec![cairn_client::DirEntry { name, attr }]
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &entries).context("write JSON")?;
        writeln!(out)?;
        return Ok(());
    }
    for e in entries {
        let suffix = if e.attr.is_dir() { "/" } else { "" };
        if long {
            writeln!(
                out,
                "{} {:>3} {:>12} {} {}{suffix}",
                mode_string(&e.attr),
                e.attr.nlink,
                e.attr.size,
                format_time(e.attr.mtime_ns),
                e.name
            )?;
        } else {
            writeln!(out, "{}{suffix}", e.name)?;
        }
    }
    Ok(())
}

pub async fn mkdir(client: &Client, paths: &[String], parents: bool) -> CmdResult {
    for p in paths {
        client.mkdir(&remote(p)?, parents).await?;
    }
    Ok(())
}

pub async fn rm(client: &Client, paths: &[String], recursive: bool) -> CmdResult {
    for p in paths {
        client.delete(&remote(p)?, recursive).await?;
    }
    Ok(())
}

pub async fn mv(client: &Client, from: &str, to: &str) -> CmdResult {
    let (from, mut to) = (remote(from)?, remote(to)?);
    // Moving onto an existing directory moves into it, like mv(1).
    if let Ok(a) = client.stat(&to).await
        && a.is_dir()
        && from != to
    {
        let name = from.rsplit('/').next().unwrap_or_default();
        to = join_remote(&to, name);
    }
    client.rename(&from, &to).await?;
    Ok(())
}

pub async fn stat(client: &Client, paths: &[String], json: bool) -> CmdResult {
    if let [p] = paths {
        let path = remote(p)?;
        let attr = client.stat(&path).await?;
        return show_stat(client, &path, &attr, json).await;
    }
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let answers = client.stat_many(&refs).await?;
    let mut first_failure = None;
    let mut out = Vec::new();
    for (typed, answer) in paths.iter().zip(answers) {
        let p = &remote(typed).unwrap_or_else(|_| typed.clone());
        match answer {
            Ok(attr) => {
                if json {
                    out.push(stat_json(client, p, &attr).await?);
                } else {
                    show_stat(client, p, &attr, false).await?;
                    println!();
                }
            }
            Err(e) => {
                let kind = e.kind();
                eprintln!("error: {e} ({})", kind.classic_name());
                if json {
                    out.push(serde_json::json!({
                        "path": p,
                        "error": kind.wire_name(),
                        "message": e.message(),
                    }));
                }
                first_failure.get_or_insert(kind.exit_code());
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).context("encode JSON")?
        );
    }
    match first_failure {
        Some(code) => Err(Failure::Exit(u8::try_from(code).unwrap_or(1))),
        None => Ok(()),
    }
}

/// One path's attributes (and its chunks when it is a file) as `stat --json` prints them.
async fn stat_json(client: &Client, path: &str, attr: &Attr) -> Result<serde_json::Value, Failure> {
    let chunks = if attr.file_type == FileType::File {
        client.chunks(path).await?.1
    } else {
        Vec::new()
    };
    Ok(serde_json::json!({ "path": path, "attr": attr, "chunks": chunks }))
}

async fn show_stat(client: &Client, path: &str, attr: &Attr, json: bool) -> CmdResult {
    if json {
        let v = stat_json(client, path, attr).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&v).context("encode JSON")?
        );
        return Ok(());
    }
    println!("  path: {path}");
    println!("  type: {:?}", attr.file_type);
    println!(" inode: {}", attr.inode);
    println!("  size: {}", attr.size);
    println!("  mode: {} ({:o})", mode_string(attr), attr.mode);
    println!(" links: {}", attr.nlink);
    if attr.file_type == FileType::File {
        println!("  goal: {}", attr.goal);
        println!("chunks: {}", attr.chunk_count);
    }
    println!(" mtime: {} UTC", format_time(attr.mtime_ns));
    println!(" ctime: {} UTC", format_time(attr.ctime_ns));
    Ok(())
}

pub async fn classic_create(client: &Client, name: &str) -> CmdResult {
    client.create(&classic(name)?, false).await?;
    println!("FILE_CREATED");
    Ok(())
}

pub async fn classic_read(client: &Client, name: &str) -> CmdResult {
    let data = client.read_all(&classic(name)?).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(&data)?;
    if !data.ends_with(b"\n") {
        writeln!(out)?;
    }
    Ok(())
}

pub async fn classic_delete(client: &Client, name: &str) -> CmdResult {
    let path = classic(name)?;
    let attr = client.stat(&path).await?;
    if attr.is_dir() {
        return Err(Error::new(Kind::IsADirectory, format!("{path}: is a directory")).into());
    }
    client.delete(&path, false).await?;
    println!("FILE_DELETED");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(
            format_time(1_700_000_000 * 1_000_000_000),
            "2023-11-14 22:13"
        );
        assert_eq!(format_time(951_782_400 * 1_000_000_000), "2000-02-29 00:00");
    }

    #[test]
    fn classic_names_map_to_root() {
        assert_eq!(classic("a.txt").unwrap(), "/a.txt");
        assert_eq!(classic("/d/a").unwrap(), "/d/a");
        assert!(classic("../x").is_err());
        assert!(remote("relative").is_err());
    }
}
