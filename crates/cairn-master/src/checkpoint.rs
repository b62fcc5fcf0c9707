//! Checkpoints: the namespace state serialized at a log index, so restart replays only the
//! log after it and old log segments can be removed.
//!
//! Invariants: a checkpoint file appears under its final name only when complete and
//! durable; a file whose header, length or CRC does not match is ignored (the previous
//! checkpoint is used instead), never half-loaded.
//!
//! File `checkpoint-<index, 20 digits>.ckpt`: magic `CAIRNCKP` | format version `u32 LE` |
//! index `u64 LE` | payload length `u64 LE` | CRC32C of payload `u32 LE` | reserved `u32` |
//! payload (postcard of the state).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CAIRNCKP";
/// Format version written by this build. Readers accept every version listed in `load`.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8 + 4 + 4;

fn name(index: u64) -> String {
    format!("checkpoint-{index:020}.ckpt")
}

fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?
        .strip_suffix(".ckpt")?
        .parse()
        .ok()
}

fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(i) = entry.file_name().to_str().and_then(parse_name) {
            out.push((i, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Serializes a checkpoint frame around `payload`.
pub fn encode(index: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER + payload.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(payload);
    buf
}

/// Parses a checkpoint frame; `None` if anything about it is off.
pub fn decode(buf: &[u8]) -> Option<(u64, u32, &[u8])> {
    if buf.len() < HEADER || &buf[0..8] != MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().ok()?);
    let index = u64::from_le_bytes(buf[12..20].try_into().ok()?);
    let len = u64::from_le_bytes(buf[20..28].try_into().ok()?);
    let crc = u32::from_le_bytes(buf[28..32].try_into().ok()?);
    let payload = &buf[HEADER..];
    if version != FORMAT_VERSION || payload.len() as u64 != len || crc32c::crc32c(payload) != crc {
        return None;
    }
    Some((index, version, payload))
}

/// Writes the checkpoint for `index` durably and atomically.
pub fn write(dir: &Path, index: u64, payload: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(name(index));
    cairn_common::fsutil::write_atomic(&path, &encode(index, payload))?;
    Ok(path)
}

/// The newest checkpoint that reads back whole, as `(index, payload)`.
pub fn load_newest(dir: &Path) -> io::Result<Option<(u64, Vec<u8>)>> {
    for (index, path) in list(dir)?.into_iter().rev() {
        let buf = fs::read(&path)?;
        match decode(&buf) {
            Some((i, _, payload)) if i == index => return Ok(Some((index, payload.to_vec()))),
            _ => tracing::warn!(checkpoint = %path.display(), "ignoring a damaged checkpoint"),
        }
    }
    Ok(None)
}

/// Removes all but the newest `keep` checkpoints.
pub fn prune(dir: &Path, keep: usize) -> io::Result<()> {
    let all = list(dir)?;
    if all.len() > keep {
        for (_, path) in &all[..all.len() - keep] {
            fs::remove_file(path)?;
        }
        cairn_common::fsutil::fsync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_checkpoint_wins() {
        let d = tempfile::tempdir().unwrap();
        assert!(load_newest(d.path()).unwrap().is_none());
        write(d.path(), 5, b"five").unwrap();
        write(d.path(), 9, b"nine").unwrap();
        assert_eq!(load_newest(d.path()).unwrap(), Some((9, b"nine".to_vec())));
        // Damage the newest: the older one is used.
        let p = d.path().join(name(9));
        let mut buf = fs::read(&p).unwrap();
        let last = buf.len() - 1;
        buf[last] ^= 1;
        fs::write(&p, buf).unwrap();
        assert_eq!(load_newest(d.path()).unwrap(), Some((5, b"five".to_vec())));
        // A truncated file is ignored too.
        fs::write(d.path().join(name(12)), &encode(12, b"twelve")[..20]).unwrap();
        assert_eq!(load_newest(d.path()).unwrap(), Some((5, b"five".to_vec())));
    }

    #[test]
    fn prune_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        for i in 1..=4 {
            write(d.path(), i, b"x").unwrap();
        }
        prune(d.path(), 2).unwrap();
        assert_eq!(
            list(d.path())
                .unwrap()
                .iter()
                .map(|x| x.0)
                .collect::<Vec<_>>(),
            [3, 4]
        );
    }

    #[test]
    fn format_v1_frame_is_stable() {
        // Pinned bytes: a format change must add a reader for the old one.
        let frame = encode(1, b"ab");
        assert_eq!(&frame[..8], b"CAIRNCKP");
        assert_eq!(&frame[8..12], &[1, 0, 0, 0]);
        assert_eq!(decode(&frame).unwrap(), (1, 1, &b"ab"[..]));
    }
}
