//! Path-based namespace commands: Mkdir, Create, Delete, Rename.
//!
//! Each handler first does every check that can fail, touching nothing, and only then
//! mutates through the helpers of `entries.rs`, which cannot fail; that is what keeps
//! `apply` atomic. Paths never pass through symlinks (a symlink component is not a
//! directory). Changes to a file under another session's mandatory lock fail with
//! `Locked` (`lock_commands.rs`).

use crate::node::Inode;
use crate::{
    CairnPath, MAX_GOAL, MetaError, MetaResponse, ROOT_INODE, SessionId, state::MetaState,
};

impl MetaState {
    pub(crate) fn mkdir(
        &mut self,
        path: &CairnPath,
        parents: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        let full = path.as_str();
        let names: Vec<&str> = path.components().collect();
        // Finds the deepest existing prefix; every existing component must be a directory.
        let mut cur = ROOT_INODE;
        let mut end = 0;
        let mut existing = 0;
        for (i, name) in names.iter().enumerate() {
            let Some(&child) = self.dir(cur).entries.get(name) else {
                break;
            };
            end += 1 + name.len();
            let last = i + 1 == names.len();
            if !self.node(child).is_dir() {
                return Err(if last {
                    MetaError::AlreadyExists(full.to_string())
                } else {
                    MetaError::NotADirectory(full[..end].to_string())
                });
            }
            cur = child;
            existing += 1;
        }
        if existing == names.len() {
            // The whole path exists and is a directory (the root included).
            return if parents {
                Ok(MetaResponse::Attr(self.node(cur).attr(cur)))
            } else {
                Err(MetaError::AlreadyExists(full.to_string()))
            };
        }
        // Without `parents` only the last component may be missing.
        if !parents && existing + 1 < names.len() {
            return Err(MetaError::NotFound(full.to_string()));
        }
        for name in &names[existing..] {
            let id = self.alloc_inode_id();
            self.inodes
                .insert(id, Inode::new_dir(cur, mode, uid, gid, now_ns));
            self.counts.directories += 1;
            self.link_entry(cur, name, id, now_ns);
            cur = id;
        }
        Ok(MetaResponse::Attr(self.node(cur).attr(cur)))
    }

    #[allow(clippy::too_many_arguments)] // mirrors the fields of MetaCommand::Create
    pub(crate) fn create(
        &mut self,
        path: &CairnPath,
        overwrite: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        goal: u8,
        now_ns: i64,
        session: Option<SessionId>,
    ) -> Result<MetaResponse, MetaError> {
        if goal > MAX_GOAL {
            return Err(MetaError::invalid(
                format_args!("goal {goal}"),
                "must be between 0 and 16",
            ));
        }
        let Some((parent_path, name)) = path.split_last() else {
            return Err(MetaError::IsADirectory(path.to_string()));
        };
        let parent = self.resolve_dir(&parent_path)?;
        let Some(&existing) = self.dir(parent).entries.get(name) else {
            let goal = if goal == 0 {
                self.config_default_goal()
            } else {
                goal
            };
            let id = self.alloc_inode_id();
            self.inodes
                .insert(id, Inode::new_file(parent, mode, uid, gid, goal, now_ns));
            self.counts.files += 1;
            self.link_entry(parent, name, id, now_ns);
            let attr = self.node(id).attr(id);
            return Ok(MetaResponse::Created {
                attr,
                freed: Vec::new(),
            });
        };
        if self.node(existing).is_dir() {
            return Err(MetaError::IsADirectory(path.to_string()));
        }
        if !overwrite || self.node(existing).as_file().is_none() {
            return Err(MetaError::AlreadyExists(path.to_string()));
        }
        self.check_write(existing, session)?;
        // Overwrite keeps the inode and its owner and mode (like O_TRUNC), empties it and
        // takes an explicitly given goal.
        let mut freed = Vec::new();
        self.free_slots_from(existing, 0, &mut freed);
        self.set_length(existing, 0);
        self.appends.remove(&existing);
        let node = self.node_mut(existing);
        node.touch(now_ns);
        if goal != 0
            && let Some(file) = node.as_file_mut()
        {
            file.slots.set_goal(goal);
        }
        freed.sort_unstable();
        Ok(MetaResponse::Created {
            attr: node.attr(existing),
            freed,
        })
    }

    pub(crate) fn delete(
        &mut self,
        path: &CairnPath,
        recursive: bool,
        now_ns: i64,
        session: Option<SessionId>,
    ) -> Result<MetaResponse, MetaError> {
        let Some((parent_path, name)) = path.split_last() else {
            return Err(MetaError::invalid("/", "cannot delete the root directory"));
        };
        let id = self.resolve(path)?;
        if let Some(dir) = self.node(id).as_dir()
            && !dir.entries.is_empty()
            && !recursive
        {
            return Err(MetaError::NotEmpty(path.to_string()));
        }
        let parent = self.resolve_dir(&parent_path)?;
        self.check_tree_writable(id, session)?;
        let mut freed = Vec::new();
        self.unlink_entry(parent, name, now_ns);
        // The waiters dropped here are found by the master through `lock_status`.
        self.drop_subtree(id, now_ns, &mut freed, &mut Vec::new());
        freed.sort_unstable();
        Ok(MetaResponse::Freed(freed))
    }

    pub(crate) fn rename(
        &mut self,
        from: &CairnPath,
        to: &CairnPath,
        no_replace: bool,
        now_ns: i64,
        session: Option<SessionId>,
    ) -> Result<MetaResponse, MetaError> {
        let (Some((from_parent_path, from_name)), Some((to_parent_path, to_name))) =
            (from.split_last(), to.split_last())
        else {
            return Err(MetaError::invalid("/", "cannot rename the root directory"));
        };
        let src = self.resolve(from)?;
        let dst_parent = self.resolve_dir(&to_parent_path)?;
        if from == to {
            return Ok(MetaResponse::Freed(Vec::new()));
        }
        let src_is_dir = self.node(src).is_dir();
        if src_is_dir && to.starts_with(from) {
            return Err(MetaError::invalid(
                to,
                "cannot move a directory into itself",
            ));
        }
        let src_parent = self.resolve_dir(&from_parent_path)?;
        let existing = self.dir(dst_parent).entries.get(to_name).copied();
        if let Some(dst) = existing {
            if dst == src {
                // Two names of one inode: POSIX says do nothing.
                return Ok(MetaResponse::Freed(Vec::new()));
            }
            if no_replace {
                return Err(MetaError::AlreadyExists(to.to_string()));
            }
            match (src_is_dir, self.node(dst).as_dir()) {
                (false, Some(_)) => return Err(MetaError::IsADirectory(to.to_string())),
                (true, None) => return Err(MetaError::NotADirectory(to.to_string())),
                (true, Some(d)) if !d.entries.is_empty() => {
                    return Err(MetaError::NotEmpty(to.to_string()));
                }
                _ => {}
            }
            self.check_write(dst, session)?;
        }
        self.check_write(src, session)?;
        let mut freed = Vec::new();
        if let Some(dst) = existing {
            self.unlink_entry(dst_parent, to_name, now_ns);
            self.drop_subtree(dst, now_ns, &mut freed, &mut Vec::new());
        }
        self.unlink_entry(src_parent, from_name, now_ns);
        self.link_entry(dst_parent, to_name, src, now_ns);
        self.node_mut(src).ctime_ns = now_ns;
        freed.sort_unstable();
        Ok(MetaResponse::Freed(freed))
    }
}
