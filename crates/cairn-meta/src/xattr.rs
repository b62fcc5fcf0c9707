//! Extended attributes: SetXattr, RemoveXattr and their queries.
//!
//! They live in a side table keyed by inode, so inodes without any pay nothing; the table
//! entry goes with the inode.
//!
//! Invariants: only live inodes have an entry, and an entry is never empty; names are
//! 1..=255 bytes without NUL, values at most 64 KiB, and one inode's names plus values at
//! most 256 KiB.

use std::collections::BTreeMap;

use crate::state::MetaState;
use crate::{
    InodeId, MAX_XATTR_NAME, MAX_XATTR_TOTAL, MAX_XATTR_VALUE, MetaError, MetaResponse, XattrMode,
};

/// "inode N: name", the subject of errors about one attribute.
fn subject(inode: InodeId, name: &str) -> String {
    format!("inode {inode}: {name}")
}

/// Bytes an attribute map accounts for (names plus values).
pub(crate) fn xattr_bytes(map: &BTreeMap<Box<str>, Box<[u8]>>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn check_name(name: &str) -> Result<(), MetaError> {
    if name.is_empty() || name.len() > MAX_XATTR_NAME || name.contains('\0') {
        return Err(MetaError::invalid(
            format_args!("attribute name {name:?}"),
            "must be 1 to 255 bytes without NUL",
        ));
    }
    Ok(())
}

impl MetaState {
    pub(crate) fn set_xattr(
        &mut self,
        inode: InodeId,
        name: &str,
        value: &[u8],
        mode: XattrMode,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        check_name(name)?;
        if value.len() > MAX_XATTR_VALUE {
            return Err(MetaError::invalid(
                subject(inode, name),
                "value is larger than 64 KiB",
            ));
        }
        self.live(inode)?;
        let map = self.xattrs.get(&inode);
        let old = map.and_then(|m| m.get(name));
        match (mode, old) {
            (XattrMode::CreateOnly, Some(_)) => {
                return Err(MetaError::AlreadyExists(subject(inode, name)));
            }
            (XattrMode::ReplaceOnly, None) => {
                return Err(MetaError::NoAttribute(subject(inode, name)));
            }
            _ => {}
        }
        let total = map.map_or(0, xattr_bytes) - old.map_or(0, |v| name.len() + v.len())
            + name.len()
            + value.len();
        if total > MAX_XATTR_TOTAL {
            return Err(MetaError::invalid(
                format_args!("inode {inode}"),
                "extended attributes would exceed 256 KiB",
            ));
        }
        self.xattrs
            .entry(inode)
            .or_default()
            .insert(name.into(), value.into());
        self.node_mut(inode).ctime_ns = now_ns;
        Ok(MetaResponse::Unit)
    }

    pub(crate) fn remove_xattr(
        &mut self,
        inode: InodeId,
        name: &str,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        check_name(name)?;
        self.live(inode)?;
        let map = self
            .xattrs
            .get_mut(&inode)
            .filter(|m| m.contains_key(name))
            .ok_or_else(|| MetaError::NoAttribute(subject(inode, name)))?;
        map.remove(name);
        if map.is_empty() {
            self.xattrs.remove(&inode);
        }
        self.node_mut(inode).ctime_ns = now_ns;
        Ok(MetaResponse::Unit)
    }

    // ---- queries

    /// Value of extended attribute `name` of `inode` ([`MetaError::NoAttribute`] if absent).
    pub fn get_xattr(&self, inode: InodeId, name: &str) -> Result<Vec<u8>, MetaError> {
        self.ensure_formatted()?;
        self.live(inode)?;
        self.xattrs
            .get(&inode)
            .and_then(|m| m.get(name))
            .map(|v| v.to_vec())
            .ok_or_else(|| MetaError::NoAttribute(subject(inode, name)))
    }

    /// Names of `inode`'s extended attributes, sorted (byte order).
    pub fn list_xattr(&self, inode: InodeId) -> Result<Vec<String>, MetaError> {
        self.ensure_formatted()?;
        self.live(inode)?;
        Ok(self
            .xattrs
            .get(&inode)
            .map(|m| m.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default())
    }
}
