//! The mount through the kernel, against a real in-process cluster: POSIX basics,
//! close-to-open consistency between two mounts, `fcntl` and `flock` locks between
//! processes on two mounts, `cp -r` + `diff -r` of a tree, sequential reads across
//! read-ahead windows (and jumps between them), and building a C program inside the
//! mount. Every test is bounded in time and unmounts even when it fails.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::{Env, blocking, have, run};

const CHUNK: u64 = 1 << 20;
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `test` against a fresh environment, then tears it down whatever happened.
async fn with_env<F, Fut>(mounts: usize, test: F) -> anyhow::Result<()>
where
    F: FnOnce(Vec<PathBuf>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let env = Env::start(mounts, CHUNK).await?;
    let dirs = env.dirs.clone();
    let result = tokio::time::timeout(LIMIT, test(dirs))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("test timed out after {LIMIT:?}")));
    let stopped = env.stop().await;
    result.and(stopped)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn posix_basics() -> anyhow::Result<()> {
    require_fuse!();
    with_env(1, |dirs| async move {
        blocking(LIMIT, move || {
            let m = &dirs[0];
            // Files: write across chunk boundaries, read back, sizes, holes.
            let data = pattern(3 * CHUNK as usize + 12345, 7);
            fs::create_dir(m.join("d"))?;
            fs::write(m.join("d/f"), &data)?;
            ensure!(fs::read(m.join("d/f"))? == data, "read back differs");
            let md = fs::metadata(m.join("d/f"))?;
            ensure!(md.len() == data.len() as u64 && md.is_file());
            let mut f = fs::OpenOptions::new().write(true).open(m.join("d/f"))?;
            f.seek(SeekFrom::Start(10 * CHUNK))?;
            f.write_all(b"tail")?;
            drop(f);
            let all = fs::read(m.join("d/f"))?;
            ensure!(
                all.len() as u64 == 10 * CHUNK + 4,
                "sparse length {}",
                all.len()
            );
            ensure!(
                all[data.len()..10 * CHUNK as usize].iter().all(|&b| b == 0),
                "hole not zero"
            );
            // Read-your-writes before close, then truncate.
            let mut f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(m.join("d/f"))?;
            f.write_all(b"HEAD")?;
            let mut head = [0u8; 8];
            f.seek(SeekFrom::Start(0))?;
            f.read_exact(&mut head)?;
            ensure!(
                &head[..4] == b"HEAD" && head[4..] == data[4..8],
                "read-your-writes"
            );
            f.set_len(100)?;
            drop(f);
            ensure!(fs::metadata(m.join("d/f"))?.len() == 100);
            // Names: rename, hard links share an inode, symlinks, readdir.
            fs::rename(m.join("d/f"), m.join("d/g"))?;
            fs::hard_link(m.join("d/g"), m.join("h"))?;
            let (g, h) = (fs::metadata(m.join("d/g"))?, fs::metadata(m.join("h"))?);
            ensure!(g.ino() == h.ino() && g.nlink() == 2, "hard link");
            std::os::unix::fs::symlink("d/g", m.join("s"))?;
            ensure!(fs::read_link(m.join("s"))? == Path::new("d/g"));
            ensure!(fs::read(m.join("s"))?.len() == 100, "through the symlink");
            let mut names: Vec<String> = fs::read_dir(m)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            names.sort();
            ensure!(names == ["d", "h", "s"], "listing {names:?}");
            // Permissions and times.
            fs::set_permissions(m.join("h"), fs::Permissions::from_mode(0o600))?;
            ensure!(fs::metadata(m.join("d/g"))?.mode() & 0o7777 == 0o600);
            // An unlinked file stays readable through its open descriptor.
            let mut open = fs::File::open(m.join("h"))?;
            fs::remove_file(m.join("h"))?;
            fs::remove_file(m.join("d/g"))?;
            ensure!(!m.join("d/g").exists());
            let mut buf = Vec::new();
            open.read_to_end(&mut buf)?;
            ensure!(buf.len() == 100, "open-unlinked read {}", buf.len());
            drop(open);
            ensure!(
                fs::read_dir(m.join("d"))?.next().is_none(),
                "hidden file left behind"
            );
            // Directories.
            ensure!(fs::remove_dir(m).is_err());
            fs::remove_dir(m.join("d"))?;
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_to_open_between_mounts() -> anyhow::Result<()> {
    require_fuse!();
    with_env(2, |dirs| async move {
        blocking(LIMIT, move || {
            let (a, b) = (&dirs[0], &dirs[1]);
            for round in 0..5u8 {
                let len = 1000 + round as usize * 700_000;
                let data = pattern(len, round);
                let (w, r) = if round % 2 == 0 { (a, b) } else { (b, a) };
                // The reader looks first, so its kernel caches the old attributes.
                let _ = fs::metadata(r.join("shared"));
                let mut f = fs::File::create(w.join("shared"))?;
                f.write_all(&data)?;
                drop(f); // close: flushed and committed
                let got = fs::read(r.join("shared")).context("read on the other mount")?;
                ensure!(
                    got.len() == data.len(),
                    "round {round}: {} bytes, want {}",
                    got.len(),
                    data.len()
                );
                ensure!(got == data, "round {round}: content differs");
            }
            // Appends from both sides interleave without loss.
            for i in 0..10 {
                let m = if i % 2 == 0 { a } else { b };
                let mut f = fs::OpenOptions::new().append(true).open(m.join("shared"))?;
                f.write_all(format!("line {i}\n").as_bytes())?;
            }
            let text = fs::read(b.join("shared"))?;
            let tail = String::from_utf8_lossy(&text[text.len() - 70..]).into_owned();
            for i in 0..10 {
                ensure!(
                    tail.contains(&format!("line {i}\n")),
                    "append {i} lost: {tail:?}"
                );
            }
            // A directory made on one mount is seen by the other at once.
            fs::create_dir(a.join("newdir"))?;
            fs::write(a.join("newdir/x"), b"x")?;
            ensure!(fs::read(b.join("newdir/x"))? == b"x");
            Ok(())
        })
        .await
    })
    .await
}

/// Reads `len` bytes at `at` of `f` and checks them against `want`.
fn check_range(f: &mut fs::File, want: &[u8], at: usize, len: usize) -> anyhow::Result<()> {
    f.seek(SeekFrom::Start(at as u64))?;
    let mut got = vec![0u8; len];
    f.read_exact(&mut got)?;
    ensure!(got == want[at..at + len], "bytes {at}..{} differ", at + len);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequential_reads_across_read_ahead_windows() -> anyhow::Result<()> {
    require_fuse!();
    with_env(2, |dirs| async move {
        blocking(LIMIT, move || {
            let (a, b) = (&dirs[0], &dirs[1]);
            // Read-ahead windows double from 1 MiB; 40 MiB crosses the boundaries at 1, 3,
            // 7, 15 and 31 MiB, where each next window is already streaming.
            let len = 40 * CHUNK as usize + 4321;
            let data = pattern(len, 3);
            fs::write(a.join("seq"), &data)?;
            fs::write(a.join("jumps"), &data)?;
            // Mount b has never read these: its reads come from the chunk servers.
            let mut f = fs::File::open(b.join("seq"))?;
            let mut got = Vec::with_capacity(len);
            let mut buf = vec![0u8; 300_007];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            ensure!(got.len() == len, "read {} bytes of {len}", got.len());
            ensure!(got == data, "sequential read differs");
            // Sequential runs broken by jumps, back and forth, past window ends and the
            // file's end.
            let mut f = fs::File::open(b.join("jumps"))?;
            let mib = CHUNK as usize;
            for (at, n) in [
                (0, 5 * mib),
                (20 * mib + 11, 12 * mib),
                (2 * mib + 5, 3 * mib),
                (5 * mib, 10 * mib + 99),
                (38 * mib, len - 38 * mib),
                (31 * mib - 7, 2 * mib),
            ] {
                check_range(&mut f, &data, at, n)?;
            }
            f.seek(SeekFrom::Start(len as u64 - 10))?;
            let mut tail = Vec::new();
            f.read_to_end(&mut tail)?;
            ensure!(tail == data[len - 10..], "tail differs");
            Ok(())
        })
        .await
    })
    .await
}

/// Compiles the lock helper (a C program) into `dir`.
async fn lock_helper(dir: &Path) -> anyhow::Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lockhelper.c");
    let bin = dir.join("lockhelper");
    run(
        LIMIT,
        Command::new("cc").arg("-O").arg("-o").arg(&bin).arg(&src),
    )
    .await?;
    Ok(bin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_exclude_across_mounts() -> anyhow::Result<()> {
    require_fuse!();
    if !have("cc") {
        common::skipping("no C compiler (cc) for the lock helper")?;
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let helper = lock_helper(tmp.path()).await?;
    with_env(2, |dirs| async move {
        let (fa, fb) = (dirs[0].join("locked"), dirs[1].join("locked"));
        fs::write(&fa, b"data")?;
        let lk = |file: &Path, op: &str, typ: &str, start: u64, len: u64, hold: u64| {
            let mut c = tokio::process::Command::new(&helper);
            c.arg(file)
                .arg(op)
                .arg(typ)
                .arg(start.to_string())
                .arg(len.to_string());
            c.arg(hold.to_string()).kill_on_drop(true);
            c.stdout(std::process::Stdio::piped());
            c
        };
        // Process A on mount 0 holds a write lock on [0, 100) for 3 s.
        let mut holder = lk(&fa, "setlk", "w", 0, 100, 3000).spawn()?;
        let mut first = String::new();
        {
            use tokio::io::AsyncBufReadExt;
            let out = holder.stdout.take().context("holder stdout")?;
            tokio::io::BufReader::new(out).read_line(&mut first).await?;
        }
        ensure!(first.trim() == "ok", "holder: {first}");
        let out = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
        // Process B on mount 1: conflicting ranges are refused, others granted.
        let o = out(lk(&fb, "setlk", "w", 50, 10, 0).output().await?);
        ensure!(o == "busy", "overlapping write lock: {o}");
        let o = out(lk(&fb, "setlk", "r", 0, 1, 0).output().await?);
        ensure!(o == "busy", "read lock under a write lock: {o}");
        let o = out(lk(&fb, "getlk", "w", 0, 0, 0).output().await?);
        ensure!(o == "conflict w 0 100", "F_GETLK: {o}");
        let o = out(lk(&fb, "setlk", "w", 100, 50, 0).output().await?);
        ensure!(o == "ok", "disjoint range: {o}");
        // F_SETLKW waits until A's lock goes (A closes after 3 s).
        let t = Instant::now();
        let o = out(lk(&fb, "setlkw", "w", 0, 100, 0).output().await?);
        ensure!(o == "ok", "blocking lock: {o}");
        ensure!(
            t.elapsed() >= Duration::from_millis(1500),
            "did not wait: {:?}",
            t.elapsed()
        );
        holder.wait().await?;
        // flock: exclusive on one mount excludes the other.
        let mut fl = lk(&fa, "flock", "w", 0, 0, 2000).spawn()?;
        let mut first = String::new();
        {
            use tokio::io::AsyncBufReadExt;
            let out = fl.stdout.take().context("flock stdout")?;
            tokio::io::BufReader::new(out).read_line(&mut first).await?;
        }
        ensure!(first.trim() == "ok", "flock holder: {first}");
        let o = out(lk(&fb, "flocknb", "w", 0, 0, 0).output().await?);
        ensure!(o == "busy", "flock on the other mount: {o}");
        fl.wait().await?;
        // The kernel sends FUSE_RELEASE (which carries the flock unlock) asynchronously
        // after the holder's last close, so the holder can be reaped before its mount has
        // heard of the close: the lock must go soon after, not at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let o = out(lk(&fb, "flocknb", "w", 0, 0, 0).output().await?);
            if o == "ok" {
                break;
            }
            ensure!(
                o == "busy" && Instant::now() < deadline,
                "flock after release: {o}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    })
    .await
}

/// Builds a tree of directories, files of many sizes and symlinks under `root`.
fn make_tree(root: &Path) -> anyhow::Result<()> {
    let mut seed = 1u8;
    for d in ["a", "a/b", "a/b/c", "e", "e/empty"] {
        fs::create_dir_all(root.join(d))?;
    }
    for (i, size) in [0usize, 1, 4095, 4096, 65537, 1 << 20, 3_000_001]
        .into_iter()
        .enumerate()
    {
        for d in ["a", "a/b/c", "e"] {
            seed = seed.wrapping_add(13);
            fs::write(root.join(d).join(format!("f{i}")), pattern(size, seed))?;
        }
    }
    std::os::unix::fs::symlink("../e/f3", root.join("a/link"))?;
    fs::set_permissions(root.join("e/f2"), fs::Permissions::from_mode(0o751))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cp_r_and_diff_r() -> anyhow::Result<()> {
    require_fuse!();
    let local = tempfile::tempdir()?;
    let src = local.path().join("src");
    make_tree(&src)?;
    with_env(2, |dirs| async move {
        let dst = dirs[0].join("copy");
        run(LIMIT, Command::new("cp").arg("-a").arg(&src).arg(&dst)).await?;
        run(LIMIT, Command::new("diff").arg("-r").arg(&src).arg(&dst)).await?;
        // The other mount sees the same tree.
        run(
            LIMIT,
            Command::new("diff")
                .arg("-r")
                .arg(&src)
                .arg(dirs[1].join("copy")),
        )
        .await?;
        // And a copy within the mount, removed again.
        run(
            LIMIT,
            Command::new("cp")
                .arg("-r")
                .arg(&dst)
                .arg(dirs[1].join("copy2")),
        )
        .await?;
        run(
            LIMIT,
            Command::new("diff")
                .arg("-r")
                .arg(&src)
                .arg(dirs[0].join("copy2")),
        )
        .await?;
        run(
            LIMIT,
            Command::new("rm").arg("-r").arg(dirs[0].join("copy2")),
        )
        .await?;
        // The other mount's kernel may keep the entry for the entry timeout (1 s).
        let gone = Instant::now();
        while dirs[1].join("copy2").exists() {
            ensure!(
                gone.elapsed() < Duration::from_secs(3),
                "removed tree still visible"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builds_a_c_program_in_the_mount() -> anyhow::Result<()> {
    require_fuse!();
    if !have("cc") {
        common::skipping("no C compiler (cc)")?;
        return Ok(());
    }
    with_env(1, |dirs| async move {
        let p = dirs[0].join("proj");
        fs::create_dir_all(p.join("src"))?;
        fs::write(
            p.join("src/util.h"),
            "int add(int a, int b);\nconst char *greet(void);\n",
        )?;
        fs::write(
            p.join("src/util.c"),
            "#include \"util.h\"\nint add(int a, int b) { return a + b; }\n\
             const char *greet(void) { return \"hello from cairn\"; }\n",
        )?;
        fs::write(
            p.join("src/main.c"),
            "#include <stdio.h>\n#include \"util.h\"\n\
             int main(void) { printf(\"%s %d\\n\", greet(), add(40, 2)); return 0; }\n",
        )?;
        fs::write(
            p.join("build.sh"),
            "set -e\ncd \"$(dirname \"$0\")\"\nmkdir -p obj\n\
             for f in src/*.c; do cc -O2 -Wall -c \"$f\" -o obj/$(basename \"$f\" .c).o; done\n\
             cc -o app obj/*.o\nar rcs obj/libutil.a obj/util.o\n",
        )?;
        run(LIMIT, Command::new("sh").arg(p.join("build.sh"))).await?;
        let out = run(LIMIT, &mut Command::new(p.join("app"))).await?;
        ensure!(out.trim() == "hello from cairn 42", "program said {out:?}");
        // A rebuild after an edit picks the edit up.
        fs::write(
            p.join("src/util.c"),
            "#include \"util.h\"\nint add(int a, int b) { return a * b; }\n\
             const char *greet(void) { return \"rebuilt\"; }\n",
        )?;
        run(LIMIT, Command::new("sh").arg(p.join("build.sh"))).await?;
        let out = run(LIMIT, &mut Command::new(p.join("app"))).await?;
        ensure!(out.trim() == "rebuilt 80", "program said {out:?}");
        Ok(())
    })
    .await
}

/// A directory of many files, used for longer than the entry timeout: every name is found
/// by `stat` and `unlink` whichever cached listing answers the lookups.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_files_in_one_directory() -> anyhow::Result<()> {
    require_fuse!();
    with_env(1, |dirs| async move {
        blocking(LIMIT, move || {
            let d = dirs[0].join("many");
            fs::create_dir(&d)?;
            let names: Vec<PathBuf> = (0..1500).map(|i| d.join(format!("f{i:05}"))).collect();
            for p in &names {
                fs::File::create(p)?;
            }
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                for p in &names {
                    fs::metadata(p).with_context(|| format!("stat {}", p.display()))?;
                }
            }
            // Renames in a directory the mount has listed whole: the mount mirrors each
            // move in its cache, so old names must be gone and new ones found at once.
            let renamed: Vec<PathBuf> = (0..names.len())
                .map(|i| d.join(format!("g{i:05}")))
                .collect();
            let before = fs::metadata(&d)?.modified()?;
            for (p, q) in names.iter().zip(&renamed) {
                fs::rename(p, q).with_context(|| format!("rename {}", p.display()))?;
                ensure!(!p.exists(), "{} still there after its rename", p.display());
                ensure!(q.is_file(), "{} missing after the rename", q.display());
            }
            ensure!(
                fs::metadata(&d)?.modified()? > before,
                "the directory's mtime did not move with renames in it"
            );
            let mut listed: Vec<String> = fs::read_dir(&d)?
                .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
                .collect::<anyhow::Result<_>>()?;
            listed.sort();
            let want: Vec<String> = (0..names.len()).map(|i| format!("g{i:05}")).collect();
            ensure!(listed == want, "listing after renames differs");
            for p in &renamed {
                let before = fs::metadata(&d)?.modified()?;
                fs::remove_file(p).with_context(|| format!("unlink {}", p.display()))?;
                // The parent's attributes come from the unlink's answer: they must be new.
                let after = fs::metadata(&d)?;
                ensure!(
                    after.modified()? >= before,
                    "the directory's mtime went back after an unlink"
                );
            }
            ensure!(fs::read_dir(&d)?.next().is_none(), "files left behind");
            fs::remove_dir(&d)?;
            Ok(())
        })
        .await
    })
    .await
}
