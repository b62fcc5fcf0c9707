//! Directory entries and inode lifetime: adding and removing names, dropping inodes with
//! their last name (and a directory with its subtree), and keeping the per-inode side
//! tables in step. Every helper here cannot fail; callers check first.
//!
//! Invariants kept here: a directory's nlink is 2 + its subdirectory count; a non-directory's
//! nlink is its number of names; `parent` is a directory holding one of the inode's names;
//! `links` lists the directory of every name of each non-directory with two or more names;
//! an inode leaves the map exactly when its last name goes, and with it its chunks, locks,
//! waiters, extended attributes and append reservation.

use crate::node::Body;
use crate::state::MetaState;
use crate::{ChunkId, Grant, InodeId};

impl MetaState {
    /// Adds entry `name -> child` to directory `parent` (which must not hold `name`). A
    /// non-directory's `nlink` must already count this name.
    pub(crate) fn link_entry(&mut self, parent: InodeId, name: &str, child: InodeId, now_ns: i64) {
        let child_node = self.node_mut(child);
        let child_is_dir = child_node.is_dir();
        let names_before = child_node.nlink.saturating_sub(1);
        let old_parent = std::mem::replace(&mut child_node.parent, parent);
        if !child_is_dir && names_before > 0 {
            let dirs = self.links.entry(child).or_insert_with(|| vec![old_parent]);
            let at = dirs.partition_point(|&d| d <= parent);
            dirs.insert(at, parent);
        }
        let parent_node = self.node_mut(parent);
        if child_is_dir {
            parent_node.nlink += 1;
        }
        parent_node.touch(now_ns);
        let dir = parent_node
            .as_dir_mut()
            .expect("caller checked that the parent is a directory");
        let previous = dir.entries.insert(name.into(), child);
        debug_assert!(previous.is_none(), "caller removed any previous entry");
    }

    /// Removes entry `name` (which must exist) from directory `parent` and returns the
    /// inode it named; the inode itself stays (its `nlink` still counts the name) for the
    /// caller to move or drop.
    pub(crate) fn unlink_entry(&mut self, parent: InodeId, name: &str, now_ns: i64) -> InodeId {
        let child = self
            .dir_mut(parent)
            .entries
            .remove(name)
            .expect("caller resolved this entry");
        let child_is_dir = self.node(child).is_dir();
        let parent_node = self.node_mut(parent);
        if child_is_dir {
            parent_node.nlink -= 1;
        }
        parent_node.touch(now_ns);
        self.forget_name(child, parent);
        child
    }

    /// Updates `links` and `parent` of `child` after its name in `dir` went.
    fn forget_name(&mut self, child: InodeId, dir: InodeId) {
        let parent = self.node(child).parent;
        let Some(dirs) = self.links.get_mut(&child) else {
            return;
        };
        if let Some(at) = dirs.iter().position(|&d| d == dir) {
            dirs.remove(at);
        }
        let first = *dirs
            .first()
            .expect("a listed inode keeps at least one name");
        let single = dirs.len() == 1;
        let still_holds_parent = dirs.contains(&parent);
        if single {
            self.links.remove(&child);
        }
        if single || !still_holds_parent {
            self.node_mut(child).parent = first;
        }
    }

    /// Drops one name of `id`, already unlinked from its parent: a directory goes with its
    /// whole subtree, a file or symlink when its last name goes (one that survives gets
    /// ctime = now). Freed chunks are appended to `freed`, waiters of dropped inodes to
    /// `dropped`. Iterative, because a tree may be deeper than any path.
    pub(crate) fn drop_subtree(
        &mut self,
        id: InodeId,
        now_ns: i64,
        freed: &mut Vec<(ChunkId, u64)>,
        dropped: &mut Vec<Grant>,
    ) {
        let mut stack: Vec<(InodeId, Option<InodeId>)> = vec![(id, None)];
        while let Some((id, from_dir)) = stack.pop() {
            if let Some(dir) = from_dir {
                self.forget_name(id, dir);
            }
            let node = self.node_mut(id);
            match node.body {
                Body::Dir(_) => self.counts.directories -= 1,
                Body::File(_) | Body::Symlink(_) => {
                    node.nlink -= 1;
                    if node.nlink > 0 {
                        node.ctime_ns = now_ns;
                        continue;
                    }
                    if matches!(node.body, Body::File(_)) {
                        self.free_slots_from(id, 0, freed);
                        self.set_length(id, 0);
                        self.counts.files -= 1;
                    } else {
                        self.counts.symlinks -= 1;
                    }
                }
            }
            let removed = self.inodes.remove(&id).expect("inode was just read");
            self.xattrs.remove(&id);
            self.appends.remove(&id);
            dropped.extend(self.sessions.drop_inode(id));
            if let Body::Dir(dir) = removed.body {
                stack.extend(dir.entries.into_values().map(|child| (child, Some(id))));
            }
        }
    }
}
