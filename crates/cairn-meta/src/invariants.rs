//! A full consistency check of the state, for tests and for checkpoints just loaded.
//!
//! It walks the whole tree, so it costs time proportional to the namespace; `apply` never
//! calls it.

use std::collections::BTreeMap;

use crate::node::Body;
use crate::state::{Counts, MetaState};
use crate::xattr::xattr_bytes;
use crate::{
    InodeId, MAX_FILE_SIZE, MAX_GOAL, MAX_SYMLINK_TARGET, MAX_XATTR_NAME, MAX_XATTR_TOTAL,
    MAX_XATTR_VALUE, ROOT_INODE,
};

impl MetaState {
    /// Checks every structural invariant: the tree is rooted and acyclic, every inode is
    /// reachable and counted, link counts and parent pointers agree with the entries, the
    /// chunk table matches the file slots exactly, ids lie below the counters, the totals are
    /// right, the de-duplication table is well formed, and the side tables (sessions and
    /// locks, extended attributes, append reservations, hard-link parents) agree with the
    /// inodes. Returns the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.dedup.check()?;
        self.sessions.check()?;
        let Some(config) = &self.config else {
            if self.inodes.is_empty()
                && self.chunks.is_empty()
                && self.sessions.by_id.is_empty()
                && self.sessions.tables.is_empty()
            {
                return Ok(());
            }
            return Err("unformatted state holds inodes, chunks or sessions".into());
        };
        if config.chunk_size == 0 || config.default_goal == 0 || config.default_goal > MAX_GOAL {
            return Err("bad file system parameters".into());
        }
        match self.inodes.get(&ROOT_INODE) {
            Some(root) if root.is_dir() && root.parent == ROOT_INODE => {}
            _ => return Err("root is missing, not a directory, or has a parent".into()),
        }
        if self
            .inodes
            .iter()
            .any(|(id, _)| id == 0 || id >= self.next_inode)
        {
            return Err("an inode id is 0 or not below the counter".into());
        }

        // Walks the tree once, noting the directory of every name of every inode.
        let mut names: BTreeMap<InodeId, Vec<InodeId>> = BTreeMap::new();
        let mut stack = vec![ROOT_INODE];
        let mut counts = Counts::default();
        let mut slots_seen = 0usize;
        while let Some(id) = stack.pop() {
            let node = self
                .inodes
                .get(&id)
                .ok_or_else(|| format!("inode {id} is named but missing"))?;
            match &node.body {
                Body::Dir(dir) => {
                    counts.directories += 1;
                    let mut subdirs = 0u32;
                    for (name, &child) in &dir.entries {
                        let Some(child_node) = self.inodes.get(&child) else {
                            return Err(format!("inode {id}: entry {name} -> missing {child}"));
                        };
                        if child == ROOT_INODE || (child_node.is_dir() && child_node.parent != id) {
                            return Err(format!("inode {child}: parent is not {id}"));
                        }
                        let dirs = names.entry(child).or_default();
                        dirs.push(id);
                        if child_node.is_dir() {
                            subdirs += 1;
                            if dirs.len() > 1 {
                                return Err(format!("directory {child} has two names"));
                            }
                        }
                        if dirs.len() == 1 {
                            stack.push(child);
                        }
                    }
                    if node.nlink != 2 + subdirs {
                        return Err(format!(
                            "directory {id}: nlink {} != 2 + {subdirs}",
                            node.nlink
                        ));
                    }
                }
                Body::File(file) => {
                    counts.files += 1;
                    counts.bytes += u128::from(file.length);
                    if file.length > MAX_FILE_SIZE || file.goal() == 0 || file.goal() > MAX_GOAL {
                        return Err(format!("file {id}: bad length or goal"));
                    }
                    let mut prev: Option<u64> = None;
                    for slot in file.slots.iter() {
                        if prev.is_some_and(|p| p >= slot.index) {
                            return Err(format!("file {id}: slots not strictly sorted"));
                        }
                        prev = Some(slot.index);
                        match self.chunks.get(&slot.chunk) {
                            Some(m) if m.inode.get() == id && m.index == slot.index => {}
                            _ => return Err(format!("file {id}: slot {} mismatch", slot.index)),
                        }
                    }
                    slots_seen += file.slots.len();
                }
                Body::Symlink(target) => {
                    counts.symlinks += 1;
                    if target.is_empty() || target.len() > MAX_SYMLINK_TARGET {
                        return Err(format!("symlink {id}: bad target length"));
                    }
                }
            }
        }
        for (&id, dirs) in &mut names {
            let node = self
                .inodes
                .get(&id)
                .ok_or_else(|| format!("inode {id} is named but missing"))?;
            if node.is_dir() {
                if self.links.contains_key(&id) {
                    return Err(format!("directory {id} is in the link table"));
                }
                continue;
            }
            if node.nlink as usize != dirs.len() || !dirs.contains(&node.parent) {
                return Err(format!(
                    "inode {id}: nlink {} or parent {} disagree with names in {dirs:?}",
                    node.nlink, node.parent
                ));
            }
            dirs.sort_unstable();
            let listed = self.links.get(&id);
            if (dirs.len() > 1) != listed.is_some() || listed.is_some_and(|l| l != dirs) {
                return Err(format!("inode {id}: link table {listed:?} != {dirs:?}"));
            }
        }
        if self.links.keys().any(|id| !names.contains_key(id)) {
            return Err("link table names a dead inode".into());
        }
        if names.len() + 1 != self.inodes.len() {
            return Err(format!(
                "{} inodes, {} reachable",
                self.inodes.len(),
                names.len() + 1
            ));
        }
        if slots_seen != self.chunks.len() {
            return Err(format!(
                "{} chunks, {slots_seen} referenced",
                self.chunks.len()
            ));
        }
        if self
            .chunks
            .iter()
            .any(|(id, _)| id == 0 || id >= self.next_chunk)
        {
            return Err("a chunk id is 0 or not below the counter".into());
        }
        if counts != self.counts {
            return Err(format!("totals {:?} != walked {:?}", self.counts, counts));
        }
        self.check_side_tables()
    }

    /// The side tables name live inodes only and keep their own limits.
    fn check_side_tables(&self) -> Result<(), String> {
        for (&id, map) in &self.xattrs {
            if !self.inodes.contains_key(&id) || map.is_empty() {
                return Err(format!("xattrs of inode {id}: dead inode or empty"));
            }
            let bad = map.iter().any(|(k, v)| {
                k.is_empty() || k.len() > MAX_XATTR_NAME || v.len() > MAX_XATTR_VALUE
            });
            if bad || xattr_bytes(map) > MAX_XATTR_TOTAL {
                return Err(format!("xattrs of inode {id}: over a limit"));
            }
        }
        for (&id, &end) in &self.appends {
            match self.inodes.get(&id).and_then(|n| n.as_file()) {
                Some(f) if end > f.length && end <= MAX_FILE_SIZE => {}
                _ => return Err(format!("append reservation of inode {id} is stale")),
            }
        }
        for (&id, table) in &self.sessions.tables {
            let Some(node) = self.inodes.get(&id) else {
                return Err(format!("locks on dead inode {id}"));
            };
            if table.mandatory().is_some() && node.as_file().is_none() {
                return Err(format!("mandatory lock on non-file inode {id}"));
            }
        }
        Ok(())
    }
}
