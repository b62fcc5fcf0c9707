//! Read-only queries on the namespace: by path (`lookup`, `list`), by inode (`attr`,
//! `lookup_at`, `readdir`, `readlink`, `parent_of`), and over chunks and totals.
//!
//! Queries never change the state; each answers `NotFormatted` (where it can fail) until
//! the state is formatted.

use crate::chunks::ChunkRec;
use crate::node::{Body, DirBody, Inode};
use crate::state::MetaState;
use crate::{
    Attr, CairnPath, ChunkId, ChunkMeta, ChunkRef, DEFAULT_LIST_LIMIT, InodeId, MAX_CHUNK_REFS,
    MetaError, ROOT_INODE, Totals,
};

impl MetaState {
    /// Whether `Format` has been applied.
    pub fn is_formatted(&self) -> bool {
        self.config.is_some()
    }

    /// Chunk size in bytes; 0 if unformatted.
    pub fn chunk_size(&self) -> u64 {
        self.config.as_ref().map_or(0, |c| c.chunk_size)
    }

    /// Goal of files created with goal 0; 0 if unformatted.
    pub fn default_goal(&self) -> u8 {
        self.config.as_ref().map_or(0, |c| c.default_goal)
    }

    /// Secret for signing chunk leases; all zeros if unformatted.
    pub fn lease_key(&self) -> [u8; 32] {
        self.config.as_ref().map_or([0; 32], |c| c.lease_key)
    }

    /// Attributes of the inode at `path`.
    pub fn lookup(&self, path: &CairnPath) -> Result<Attr, MetaError> {
        self.ensure_formatted()?;
        let id = self.resolve(path)?;
        Ok(self.node(id).attr(id))
    }

    /// Attributes of inode `inode`.
    pub fn attr(&self, inode: InodeId) -> Result<Attr, MetaError> {
        self.ensure_formatted()?;
        self.inodes
            .get(&inode)
            .map(|n| n.attr(inode))
            .ok_or_else(|| MetaError::NotFound(format!("inode {inode}")))
    }

    /// Paged listing sorted by name (byte order): entries with names > `start_after`, at
    /// most `limit` of them (0 = [`DEFAULT_LIST_LIMIT`]); the bool says whether more remain.
    pub fn list(
        &self,
        path: &CairnPath,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Attr)>, bool), MetaError> {
        self.ensure_formatted()?;
        let dir = self.resolve_dir(path)?;
        Ok(self.page(self.dir(dir), start_after, limit))
    }

    /// Like [`MetaState::list`] for directory `inode` (`NotFound` / `NotADirectory`).
    pub fn readdir(
        &self,
        inode: InodeId,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Attr)>, bool), MetaError> {
        self.ensure_formatted()?;
        Ok(self.page(self.live_dir(inode)?, start_after, limit))
    }

    fn page(&self, dir: &DirBody, start_after: &str, limit: usize) -> (Vec<(String, Attr)>, bool) {
        let limit = if limit == 0 {
            DEFAULT_LIST_LIMIT
        } else {
            limit
        };
        let mut iter = dir.entries.after(start_after);
        let page: Vec<(String, Attr)> = iter
            .by_ref()
            .take(limit)
            .map(|(name, &id)| (name.to_string(), self.node(id).attr(id)))
            .collect();
        (page, iter.next().is_some())
    }

    /// Attributes of entry `name` of directory `parent`.
    pub fn lookup_at(&self, parent: InodeId, name: &str) -> Result<Attr, MetaError> {
        self.ensure_formatted()?;
        let id = self.entry(parent, name)?;
        Ok(self.node(id).attr(id))
    }

    /// Target of symlink `inode` (`InvalidArgument` for other inodes).
    pub fn readlink(&self, inode: InodeId) -> Result<String, MetaError> {
        self.ensure_formatted()?;
        match &self.live(inode)?.body {
            Body::Symlink(target) => Ok(target.to_string()),
            _ => Err(MetaError::invalid(
                format_args!("inode {inode}"),
                "is not a symbolic link",
            )),
        }
    }

    /// Parent of directory `inode` (the root's is the root); `None` for other inodes.
    pub fn parent_of(&self, inode: InodeId) -> Option<InodeId> {
        self.inodes
            .get(&inode)
            .filter(|n| n.is_dir())
            .map(|n| n.parent)
    }

    /// Attributes of a file plus its chunk slots `[first, first + count)` clipped to the
    /// file's slots (count 0 = to the end) and to [`MAX_CHUNK_REFS`] entries. Holes have
    /// chunk id 0 and version 0.
    pub fn file_chunks(
        &self,
        inode: InodeId,
        first: u64,
        count: u64,
    ) -> Result<(Attr, Vec<ChunkRef>), MetaError> {
        self.ensure_formatted()?;
        let file = self.file(inode)?;
        let slots = file.slots.slot_count();
        let end = if count == 0 {
            slots
        } else {
            first.saturating_add(count).min(slots)
        };
        let end = end.min(first.saturating_add(MAX_CHUNK_REFS));
        let mut refs = Vec::with_capacity(end.saturating_sub(first) as usize);
        let mut allocated = file.slots.iter_from(first).peekable();
        for index in first..end {
            let slot = allocated.next_if(|s| s.index == index);
            refs.push(match slot {
                Some(s) => ChunkRef {
                    index,
                    chunk_id: s.chunk,
                    version: self.version(s.chunk),
                },
                None => ChunkRef {
                    index,
                    chunk_id: 0,
                    version: 0,
                },
            });
        }
        Ok((self.node(inode).attr(inode), refs))
    }

    /// The durable record of chunk `id`, if it is live.
    pub fn chunk(&self, id: ChunkId) -> Option<ChunkMeta> {
        self.chunks.get(&id).map(ChunkRec::meta)
    }

    /// Every live chunk with its file's goal, by chunk id, for the replication scan.
    pub fn chunks(&self) -> impl Iterator<Item = (ChunkId, ChunkMeta, u8)> + '_ {
        self.chunks.iter().map(|(id, rec)| {
            let meta = rec.meta();
            let goal = self
                .inodes
                .get(&meta.inode)
                .and_then(Inode::as_file)
                .map_or(0, |f| f.goal());
            (id, meta, goal)
        })
    }

    /// Namespace-wide counts (`bytes` saturates at `u64::MAX`).
    pub fn totals(&self) -> Totals {
        Totals {
            files: self.counts.files,
            directories: self.counts.directories,
            symlinks: self.counts.symlinks,
            bytes: u64::try_from(self.counts.bytes).unwrap_or(u64::MAX),
            chunks: self.chunks.len() as u64,
        }
    }

    /// Path of an inode (its first link), for messages and dashboards; `None` if unknown or
    /// if the path would be longer than a valid path may be. Costs a scan of each ancestor
    /// directory's entries, since names are stored only in the parent.
    pub fn path_of(&self, inode: InodeId) -> Option<CairnPath> {
        let mut cur = inode;
        self.inodes.get(&cur)?;
        let mut names: Vec<&str> = Vec::new();
        while cur != ROOT_INODE {
            // A chain longer than the inode count means a corrupt parent cycle.
            if names.len() > self.inodes.len() {
                return None;
            }
            let parent = self.inodes.get(&cur)?.parent;
            let dir = self.inodes.get(&parent)?.as_dir()?;
            let (name, _) = dir.entries.iter().find(|&(_, &id)| id == cur)?;
            names.push(name);
            cur = parent;
        }
        let mut path = String::new();
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        if path.is_empty() {
            return Some(CairnPath::root());
        }
        CairnPath::new(&path).ok()
    }
}
