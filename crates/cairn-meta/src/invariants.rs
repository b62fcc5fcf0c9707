//! A full consistency check of the state, for tests and for checkpoints just loaded.
//!
//! It walks the whole tree, so it costs time proportional to the namespace; `apply` never
//! calls it.

use std::collections::BTreeMap;

use crate::node::Body;
use crate::state::{Counts, MetaState};
use crate::{MAX_FILE_SIZE, MAX_GOAL, ROOT_INODE};

impl MetaState {
    /// Checks every structural invariant: the tree is rooted and acyclic, every inode is
    /// reachable and counted, link counts and parent pointers agree with the entries, the
    /// chunk table matches the file slots exactly, ids lie below the counters, the totals are
    /// right and the de-duplication table is well formed. Returns the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.dedup.check()?;
        let Some(config) = &self.config else {
            if self.inodes.is_empty() && self.chunks.is_empty() {
                return Ok(());
            }
            return Err("unformatted state holds inodes or chunks".into());
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
            .keys()
            .any(|&id| id == 0 || id >= self.next_inode)
        {
            return Err("an inode id is 0 or not below the counter".into());
        }

        // Walks the tree once, counting names per inode.
        let mut names: BTreeMap<u64, u32> = BTreeMap::new();
        let mut stack = vec![ROOT_INODE];
        let mut counts = Counts::default();
        let mut slots_seen = 0usize;
        while let Some(id) = stack.pop() {
            let node = &self.inodes[&id];
            match &node.body {
                Body::Dir(dir) => {
                    counts.directories += 1;
                    let mut subdirs = 0u32;
                    for (name, &child) in &dir.entries {
                        let Some(child_node) = self.inodes.get(&child) else {
                            return Err(format!("inode {id}: entry {name} -> missing {child}"));
                        };
                        if child == ROOT_INODE || child_node.parent != id {
                            return Err(format!("inode {child}: parent is not {id}"));
                        }
                        let seen = names.entry(child).or_insert(0);
                        *seen += 1;
                        if child_node.is_dir() {
                            subdirs += 1;
                            if *seen > 1 {
                                return Err(format!("directory {child} has two names"));
                            }
                        }
                        if *seen == 1 {
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
                    if file.length > MAX_FILE_SIZE || file.goal == 0 || file.goal > MAX_GOAL {
                        return Err(format!("file {id}: bad length or goal"));
                    }
                    let mut prev: Option<u64> = None;
                    for slot in &file.slots {
                        if prev.is_some_and(|p| p >= slot.index) {
                            return Err(format!("file {id}: slots not strictly sorted"));
                        }
                        prev = Some(slot.index);
                        match self.chunks.get(&slot.chunk) {
                            Some(m) if m.inode == id && m.index == slot.index => {}
                            _ => return Err(format!("file {id}: slot {} mismatch", slot.index)),
                        }
                    }
                    slots_seen += file.slots.len();
                }
            }
        }
        for (&id, &n) in &names {
            if !self.inodes[&id].is_dir() && self.inodes[&id].nlink != n {
                return Err(format!(
                    "file {id}: nlink {} != {n} names",
                    self.inodes[&id].nlink
                ));
            }
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
            .keys()
            .any(|&id| id == 0 || id >= self.next_chunk)
        {
            return Err("a chunk id is 0 or not below the counter".into());
        }
        if counts != self.counts {
            return Err(format!("totals {:?} != walked {:?}", self.counts, counts));
        }
        Ok(())
    }
}
