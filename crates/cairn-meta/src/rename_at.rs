//! RenameAt: POSIX `renameat2` on `(parent inode, name)` pairs, with `RENAME_NOREPLACE`
//! and `RENAME_EXCHANGE`.
//!
//! Rules (as the path-based `Rename`): renaming an entry onto itself, or onto another name
//! of the same inode, does nothing; a directory may replace only an empty directory, a
//! non-directory only a non-directory; a directory may not move below itself. An exchange
//! swaps two existing entries of any types, fixing directory parent pointers and the
//! parents' link counts. A mandatory lock of another session on either inode refuses.

use crate::posix::at;
use crate::state::MetaState;
use crate::{InodeId, MetaError, MetaResponse, SessionId};

/// The fields of [`crate::MetaCommand::RenameAt`].
pub(crate) struct RenameAtReq<'a> {
    pub parent: InodeId,
    pub name: &'a str,
    pub new_parent: InodeId,
    pub new_name: &'a str,
    pub no_replace: bool,
    pub exchange: bool,
    pub session: Option<SessionId>,
    pub now_ns: i64,
}

fn nothing() -> MetaResponse {
    MetaResponse::Removed {
        freed: Vec::new(),
        dropped: Vec::new(),
    }
}

impl MetaState {
    pub(crate) fn rename_at(&mut self, r: &RenameAtReq<'_>) -> Result<MetaResponse, MetaError> {
        if r.no_replace && r.exchange {
            return Err(MetaError::invalid(
                "rename",
                "no_replace and exchange exclude each other",
            ));
        }
        let src = self.entry(r.parent, r.name)?;
        let dst = self.find_entry(r.new_parent, r.new_name)?;
        if (r.parent, r.name) == (r.new_parent, r.new_name) || dst == Some(src) {
            // The same entry, or two names of one inode: POSIX says do nothing.
            return Ok(nothing());
        }
        let src_is_dir = self.node(src).is_dir();
        if src_is_dir && self.is_within(r.new_parent, src) {
            return Err(MetaError::invalid(
                at(r.new_parent, r.new_name),
                "cannot move a directory into itself",
            ));
        }
        if r.exchange {
            let Some(dst) = dst else {
                return Err(MetaError::NotFound(at(r.new_parent, r.new_name)));
            };
            if self.node(dst).is_dir() && self.is_within(r.parent, dst) {
                return Err(MetaError::invalid(
                    at(r.parent, r.name),
                    "cannot move a directory into itself",
                ));
            }
            self.check_write(src, r.session)?;
            self.check_write(dst, r.session)?;
            self.unlink_entry(r.parent, r.name, r.now_ns);
            self.unlink_entry(r.new_parent, r.new_name, r.now_ns);
            self.link_entry(r.parent, r.name, dst, r.now_ns);
            self.link_entry(r.new_parent, r.new_name, src, r.now_ns);
            self.node_mut(src).ctime_ns = r.now_ns;
            self.node_mut(dst).ctime_ns = r.now_ns;
            return Ok(nothing());
        }
        if let Some(dst) = dst {
            let subject = || at(r.new_parent, r.new_name);
            if r.no_replace {
                return Err(MetaError::AlreadyExists(subject()));
            }
            match (src_is_dir, self.node(dst).as_dir()) {
                (false, Some(_)) => return Err(MetaError::IsADirectory(subject())),
                (true, None) => return Err(MetaError::NotADirectory(subject())),
                (true, Some(d)) if !d.entries.is_empty() => {
                    return Err(MetaError::NotEmpty(subject()));
                }
                _ => {}
            }
            self.check_write(dst, r.session)?;
        }
        self.check_write(src, r.session)?;
        let (mut freed, mut dropped) = (Vec::new(), Vec::new());
        if let Some(dst) = dst {
            self.unlink_entry(r.new_parent, r.new_name, r.now_ns);
            self.drop_subtree(dst, r.now_ns, &mut freed, &mut dropped);
        }
        self.unlink_entry(r.parent, r.name, r.now_ns);
        self.link_entry(r.new_parent, r.new_name, src, r.now_ns);
        self.node_mut(src).ctime_ns = r.now_ns;
        freed.sort_unstable();
        Ok(MetaResponse::Removed { freed, dropped })
    }

    /// Whether directory `dir` is `ancestor` or lies below it (following parent pointers,
    /// which for directories always lead to the root).
    pub(crate) fn is_within(&self, dir: InodeId, ancestor: InodeId) -> bool {
        let mut cur = dir;
        for _ in 0..=self.inodes.len() {
            if cur == ancestor {
                return true;
            }
            if cur == crate::ROOT_INODE {
                return false;
            }
            cur = self.node(cur).parent;
        }
        false
    }
}
