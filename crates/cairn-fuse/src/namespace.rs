//! Names and attributes through the mount: lookup (with listing prefetch), getattr,
//! setattr, creation of every kind of node, links, unlink (hiding a file still open here
//! until its last close), rmdir and rename.
//!
//! Every change this mount makes updates or drops the cache records it affects at once.

use cairn_client::{Error, Kind, NewNode, Node, RenameFlags, Result, SetAttr, SpecialKind};

use crate::cache::MAX_LISTED_DIR;
use crate::core::Core;

/// Longest name, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Prefix of the names files unlinked while open are hidden under.
pub const HIDDEN_PREFIX: &str = ".cairn-hidden.";

/// Checks and converts a name from the kernel.
pub fn name_str(name: &std::ffi::OsStr) -> std::result::Result<&str, i32> {
    if name.len() > NAME_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    name.to_str().ok_or(libc::EINVAL)
}

/// An attribute change as the kernel asks for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttrChange {
    pub set: SetAttr,
    pub size: Option<u64>,
}

impl Core {
    /// The answer to a lookup if the cache alone gives it (the node, or `NotFound` from a
    /// fresh listing of `parent`), so the request is answered without leaving the thread
    /// that read it.
    pub fn lookup_cached(&self, parent: u64, name: &str) -> Option<Result<Node>> {
        match self.cache.entry(parent, name) {
            Some(ino) => self.cache.attr(ino).map(Ok),
            None if self.cache.listed(parent) => Some(Err(Error::new(
                Kind::NotFound,
                format!("inode {parent}/{name}: not found"),
            ))),
            None => None,
        }
    }

    /// The node `name` names in `parent`.
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Node> {
        if let Some(answer) = self.lookup_cached(parent, name) {
            return answer;
        }
        if self.cache.note_miss(parent) && self.list_into_cache(parent).await? {
            return match self.cache.entry(parent, name) {
                Some(ino) => self.node(ino).await,
                None => Err(Error::new(
                    Kind::NotFound,
                    format!("inode {parent}/{name}: not found"),
                )),
            };
        }
        let n = self.posix.lookup_at(parent, name).await?;
        self.cache.put_entry(parent, name, &n);
        Ok(n)
    }

    /// Reads all of directory `dir` into the cache, if it is small enough to; true if done.
    async fn list_into_cache(&self, dir: u64) -> Result<bool> {
        let size = self.node(dir).await?.attr.size;
        if size > MAX_LISTED_DIR {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let mut after = String::new();
        loop {
            let page = self.posix.read_dir(dir, &after, 0).await?;
            for (name, node) in &page.entries {
                self.cache.put_entry(dir, name, node);
            }
            match page.entries.last() {
                Some((name, _)) if page.truncated => after = name.clone(),
                _ => break,
            }
        }
        self.cache.set_listed(dir, started);
        Ok(true)
    }

    /// Attributes of `ino` (fresh within the attribute timeout).
    pub async fn getattr(&self, ino: u64) -> Result<Node> {
        self.node(ino).await
    }

    /// Applies an attribute change: the size through a truncate (after flushing buffered
    /// writes), the rest in one master call.
    pub async fn setattr(&self, ino: u64, c: AttrChange) -> Result<Node> {
        // Buffered writes land first, so an explicit time set afterwards is not overwritten
        // by their commit.
        self.flush_inode(ino).await?;
        let mut node = None;
        if let Some(size) = c.size {
            let attr = self.truncate(ino, size).await?;
            node = Some(Node {
                attr,
                special: None,
                rdev: 0,
            });
        }
        if !c.set.is_empty() || node.is_none() {
            node = Some(self.posix.set_attr(ino, c.set).await?);
        }
        let node = node.expect("set above");
        self.cache.put_attr(&node);
        self.cache.forget_xattrs(ino);
        Ok(node)
    }

    /// Caches `parent/name -> node` after this mount made that entry (`new`: the command
    /// surely added it). The parent's cached attributes are brought up to date in place
    /// rather than dropped: after every change in a directory the kernel re-checks its
    /// permissions with a getattr, and answering that from the cache saves a master round
    /// trip per create. The master's command touches the parent (mtime and ctime) at the
    /// same instant it gives the new entry's inode as ctime, and counts a subdirectory in
    /// its nlink (`cairn-meta`, `link_entry`); anything else (an entry that may have
    /// existed, times going backwards) drops the record instead.
    fn created(&self, parent: u64, name: &str, node: &Node, new: bool) {
        self.cache.put_entry(parent, name, node);
        let t = node.attr.ctime_ns;
        let is_dir = node.attr.file_type == cairn_client::FileType::Directory;
        let kept = new
            && self.cache.update_attr(parent, |p| {
                let a = &mut p.attr;
                if t < a.mtime_ns.max(a.ctime_ns) {
                    return false;
                }
                a.mtime_ns = t;
                a.ctime_ns = t;
                a.size += 1;
                if is_dir {
                    a.nlink += 1;
                }
                true
            });
        if !kept {
            self.cache.forget_attr(parent);
        }
    }

    pub async fn mkdir(&self, parent: u64, name: &str, n: NewNode) -> Result<Node> {
        let node = self.posix.mkdir_at(parent, name, n).await?;
        self.created(parent, name, &node, true);
        Ok(node)
    }

    /// Creates (or, without `exclusive`, opens an existing) regular file and opens it. A
    /// new file opened for writing comes with a lease for its first chunk, so its first
    /// flush skips `PrepareWrite` (the flush still holds its data if the master does not
    /// take that chunk at the commit, and writes it again).
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        n: NewNode,
        exclusive: bool,
        truncate: bool,
        write: bool,
    ) -> Result<(Node, u64)> {
        // The kernel asks to create only after a lookup found no such name, so an
        // exclusive attempt nearly always succeeds, and then the file is surely new: its
        // parent's attributes can be updated here and it has no extended attributes (the
        // kernel asks for `security.capability` at the first write). Only when another
        // client made the name meanwhile does a plain create follow.
        let (mut node, new) = match self.posix.create_at_for(parent, name, n, true, write).await {
            Ok(node) => (node, true),
            Err(err) if !exclusive && err.kind() == Kind::AlreadyExists => {
                (self.posix.create_at(parent, name, n, false).await?, false)
            }
            Err(err) => return Err(err),
        };
        if truncate && node.attr.size > 0 {
            let attr = self.truncate(node.attr.inode, 0).await?;
            node.attr = attr;
        }
        self.created(parent, name, &node, new);
        let ino = node.attr.inode;
        if new {
            self.cache.put_no_xattrs(ino);
        }
        self.files.with(ino, |s| {
            if !s.has_local_data() {
                s.size = node.attr.size;
                s.remote_size = node.attr.size;
            }
            s.layout = None;
            s.layout_gen += 1;
        });
        Ok((node, self.files.open(ino)))
    }

    pub async fn mknod(
        &self,
        parent: u64,
        name: &str,
        kind: SpecialKind,
        rdev: u32,
        n: NewNode,
    ) -> Result<Node> {
        let node = self.posix.mknod_at(parent, name, kind, rdev, n).await?;
        self.created(parent, name, &node, true);
        Ok(node)
    }

    pub async fn symlink(&self, parent: u64, name: &str, target: &str, n: NewNode) -> Result<Node> {
        let node = self.posix.symlink_at(parent, name, target, n).await?;
        self.created(parent, name, &node, true);
        Ok(node)
    }

    pub async fn link(&self, ino: u64, parent: u64, name: &str) -> Result<Node> {
        let node = self.posix.link_at(ino, parent, name).await?;
        self.created(parent, name, &node, true);
        Ok(node)
    }

    /// Removes `parent/name`. A file open in this mount is renamed to a hidden name
    /// instead and removed at its last close, so its open descriptors keep working.
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        let ino = match self.cache.entry(parent, name) {
            Some(ino) => Some(ino),
            None if self.files.any_open() => {
                Some(self.posix.lookup_at(parent, name).await?.attr.inode)
            }
            None => None,
        };
        let open = ino.is_some_and(|i| self.files.is_open(i));
        let dir = match ino {
            Some(ino) if open => {
                let hidden = format!("{HIDDEN_PREFIX}{ino:x}");
                let already = self.files.with(ino, |s| s.hidden.clone());
                match already {
                    // A second name of a hidden file goes for real.
                    Some(_) => self.posix.unlink_at(parent, name).await?,
                    None => {
                        let flags = RenameFlags {
                            no_replace: true,
                            exchange: false,
                        };
                        let (dir, _) = self
                            .posix
                            .rename_at(parent, name, parent, &hidden, flags)
                            .await?;
                        self.files
                            .with(ino, |s| s.hidden = Some((parent, hidden.clone())));
                        dir
                    }
                }
            }
            _ => self.posix.unlink_at(parent, name).await?,
        };
        self.cache.forget_entry(parent, name);
        self.changed_dir(parent, dir);
        if let Some(ino) = ino {
            self.cache.forget_attr(ino);
        }
        Ok(())
    }

    /// Takes a directory's attributes from the answer to a change in it (the kernel asks
    /// for them next), or forgets them if the master sent none.
    pub(crate) fn changed_dir(&self, dir: u64, node: Option<Node>) {
        match node {
            Some(n) if n.attr.inode == dir => self.cache.put_attr(&n),
            _ => self.cache.forget_attr(dir),
        }
    }

    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        let ino = self.cache.entry(parent, name);
        let dir = self.posix.rmdir_at(parent, name).await?;
        self.cache.forget_entry(parent, name);
        self.changed_dir(parent, dir);
        if let Some(ino) = ino {
            self.cache.forget_attr(ino);
            self.cache.unlist(ino);
        }
        Ok(())
    }

    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        flags: RenameFlags,
    ) -> Result<()> {
        let moved = [
            self.cache.entry(parent, name),
            self.cache.entry(new_parent, new_name),
        ];
        let dirs = self
            .posix
            .rename_at(parent, name, new_parent, new_name, flags)
            .await?;
        // Mirroring the move keeps a listing of either directory complete, so the next
        // lookup of a new name there needs no round trip (a run of `mv`s stays fast).
        if !self
            .cache
            .move_entry((parent, name), (new_parent, new_name), flags.exchange)
        {
            for (dir, n) in [(parent, name), (new_parent, new_name)] {
                self.cache.forget_entry(dir, n);
                self.cache.unlist(dir);
            }
        }
        self.changed_dir(parent, dirs.0);
        self.changed_dir(new_parent, dirs.1);
        for ino in moved.into_iter().flatten() {
            self.cache.forget_attr(ino);
        }
        Ok(())
    }

    pub async fn readlink(&self, ino: u64) -> Result<String> {
        self.posix.read_link(ino).await
    }
}

/// Creates a new node's owner from a request: the caller's uid and gid.
pub fn new_node(mode: u32, uid: u32, gid: u32) -> NewNode {
    NewNode {
        mode: mode & 0o7777,
        uid,
        gid,
    }
}
