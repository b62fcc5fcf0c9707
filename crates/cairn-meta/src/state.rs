//! [`MetaState`]: the stored namespace, the `apply` entry point and the read-only queries.
//!
//! The state is a set of ordered maps (inodes by id, chunks by id), the id counters, running
//! totals, and the request de-duplication table. Command handlers live in `namespace.rs`
//! and `chunks.rs`; each validates everything first and mutates only once nothing can fail,
//! which is what makes `apply` atomic without copying the state.
//!
//! Invariants: formatted iff `config` is `Some`, and then the root inode exists and is a
//! directory; `counts` equals what a full walk would count; ids below the counters only.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::dedup::DedupTable;
use crate::node::{DirBody, FileBody, Inode};
use crate::{
    Attr, CairnPath, ChunkId, ChunkMeta, ChunkRef, DEFAULT_LIST_LIMIT, InodeId, MAX_CHUNK_REFS,
    MAX_FILE_SIZE, MAX_GOAL, MetaCommand, MetaError, MetaResponse, ROOT_INODE, RequestId, Totals,
};

/// File system parameters fixed by `Format`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FsConfig {
    pub chunk_size: u64,
    pub default_goal: u8,
    pub lease_key: [u8; 32],
    pub formatted_ns: i64,
}

/// Running totals, kept so that status queries do not walk the tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub files: u64,
    pub directories: u64,
    /// Sum of file lengths; u128 because 16 files of the largest size overflow a u64.
    pub bytes: u128,
}

/// The master's namespace: a pure, deterministic state machine.
///
/// Serialize it for checkpoints; the caller wraps the bytes in a versioned, checksummed
/// container and should call [`MetaState::check_invariants`] after loading one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub(crate) config: Option<FsConfig>,
    pub(crate) inodes: BTreeMap<InodeId, Inode>,
    pub(crate) chunks: BTreeMap<ChunkId, ChunkMeta>,
    /// Next inode id to hand out (2 after Format).
    pub(crate) next_inode: InodeId,
    /// Next chunk id to hand out (1 after Format).
    pub(crate) next_chunk: ChunkId,
    pub(crate) counts: Counts,
    pub(crate) dedup: DedupTable,
}

impl MetaState {
    /// An unformatted, empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one command.
    ///
    /// With `Some(req)` and `req.client_id != 0`, a request already applied answers its
    /// remembered result (a clone) without being applied again; otherwise the command is
    /// applied and its result remembered, errors included (so a retried `Delete` that failed
    /// cannot succeed later against a different file). Retryable errors (`NotFormatted`)
    /// are not remembered. On `Err` the namespace is unchanged; the de-duplication table is
    /// the only part that may record the error.
    pub fn apply(
        &mut self,
        req: Option<RequestId>,
        cmd: &MetaCommand,
    ) -> Result<MetaResponse, MetaError> {
        let dedup_key = req.filter(|r| r.client_id != 0);
        if let Some(r) = dedup_key
            && let Some(done) = self.dedup.get(r)
        {
            return done.clone();
        }
        let result = self.execute(cmd);
        if let Some(r) = dedup_key {
            let retryable = matches!(&result, Err(e) if e.kind().is_retryable());
            if !retryable {
                self.dedup.record(r, &result);
            }
        }
        result
    }

    fn execute(&mut self, cmd: &MetaCommand) -> Result<MetaResponse, MetaError> {
        use MetaCommand as C;
        match cmd {
            C::Format {
                chunk_size,
                default_goal,
                lease_key,
                now_ns,
            } => self.format(*chunk_size, *default_goal, *lease_key, *now_ns),
            _ if !self.is_formatted() => Err(MetaError::NotFormatted),
            C::Mkdir {
                path,
                parents,
                mode,
                uid,
                gid,
                now_ns,
            } => self.mkdir(path, *parents, *mode, *uid, *gid, *now_ns),
            C::Create {
                path,
                overwrite,
                mode,
                uid,
                gid,
                goal,
                now_ns,
            } => self.create(path, *overwrite, *mode, *uid, *gid, *goal, *now_ns),
            C::Delete {
                path,
                recursive,
                now_ns,
            } => self.delete(path, *recursive, *now_ns),
            C::Rename {
                from,
                to,
                no_replace,
                now_ns,
            } => self.rename(from, to, *no_replace, *now_ns),
            C::AllocChunk { inode, index } => self.alloc_chunk(*inode, *index),
            C::SetChunkVersion { chunk_id, version } => self.set_chunk_version(*chunk_id, *version),
            C::CommitWrite { inode, end, now_ns } => self.commit_write(*inode, *end, *now_ns),
            C::Truncate {
                inode,
                size,
                now_ns,
            } => self.truncate(*inode, *size, *now_ns),
        }
    }

    fn format(
        &mut self,
        chunk_size: u64,
        default_goal: u8,
        lease_key: [u8; 32],
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        if self.config.is_some() {
            return Err(MetaError::AlreadyExists("file system".into()));
        }
        if chunk_size == 0 || chunk_size > MAX_FILE_SIZE {
            return Err(MetaError::invalid(
                format_args!("chunk size {chunk_size}"),
                "must be between 1 and 2^60",
            ));
        }
        if default_goal == 0 || default_goal > MAX_GOAL {
            return Err(MetaError::invalid(
                format_args!("goal {default_goal}"),
                "must be between 1 and 16",
            ));
        }
        self.config = Some(FsConfig {
            chunk_size,
            default_goal,
            lease_key,
            formatted_ns: now_ns,
        });
        self.inodes
            .insert(ROOT_INODE, Inode::new_dir(ROOT_INODE, 0o755, 0, 0, now_ns));
        self.next_inode = ROOT_INODE + 1;
        self.next_chunk = 1;
        self.counts = Counts {
            files: 0,
            directories: 1,
            bytes: 0,
        };
        Ok(MetaResponse::Unit)
    }

    // ---- read-only queries

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
        let limit = if limit == 0 {
            DEFAULT_LIST_LIMIT
        } else {
            limit
        };
        let mut iter = self
            .dir(dir)
            .entries
            .range::<str, _>((Bound::Excluded(start_after), Bound::Unbounded));
        let page: Vec<(String, Attr)> = iter
            .by_ref()
            .take(limit)
            .map(|(name, &id)| (name.to_string(), self.node(id).attr(id)))
            .collect();
        Ok((page, iter.next().is_some()))
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
        let slots = file.slot_count();
        let end = if count == 0 {
            slots
        } else {
            first.saturating_add(count).min(slots)
        };
        let end = end.min(first.saturating_add(MAX_CHUNK_REFS));
        let mut refs = Vec::with_capacity(end.saturating_sub(first) as usize);
        let mut allocated = file.slots[file.first_at_or_after(first)..]
            .iter()
            .peekable();
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
        self.chunks.get(&id).copied()
    }

    /// Every live chunk with its file's goal, by chunk id, for the replication scan.
    pub fn chunks(&self) -> impl Iterator<Item = (ChunkId, ChunkMeta, u8)> + '_ {
        self.chunks.iter().map(|(&id, &meta)| {
            let goal = self
                .inodes
                .get(&meta.inode)
                .and_then(Inode::as_file)
                .map_or(0, |f| f.goal);
            (id, meta, goal)
        })
    }

    /// Namespace-wide counts (`bytes` saturates at `u64::MAX`).
    pub fn totals(&self) -> Totals {
        Totals {
            files: self.counts.files,
            directories: self.counts.directories,
            symlinks: 0,
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

    // ---- helpers shared by the command handlers

    pub(crate) fn ensure_formatted(&self) -> Result<(), MetaError> {
        if self.config.is_some() {
            Ok(())
        } else {
            Err(MetaError::NotFormatted)
        }
    }

    /// Chunk size of a formatted state.
    pub(crate) fn config_chunk_size(&self) -> u64 {
        self.config
            .as_ref()
            .expect("commands run only on a formatted state")
            .chunk_size
    }

    pub(crate) fn config_default_goal(&self) -> u8 {
        self.config
            .as_ref()
            .expect("commands run only on a formatted state")
            .default_goal
    }

    /// The inode `id`, which the caller knows to be live (it came from a directory entry,
    /// a chunk record or a check just made).
    pub(crate) fn node(&self, id: InodeId) -> &Inode {
        self.inodes
            .get(&id)
            .expect("inode ids held by the state are live")
    }

    pub(crate) fn node_mut(&mut self, id: InodeId) -> &mut Inode {
        self.inodes
            .get_mut(&id)
            .expect("inode ids held by the state are live")
    }

    /// The directory `id`, which the caller knows to be a live directory.
    pub(crate) fn dir(&self, id: InodeId) -> &DirBody {
        self.node(id)
            .as_dir()
            .expect("caller checked that this inode is a directory")
    }

    pub(crate) fn dir_mut(&mut self, id: InodeId) -> &mut DirBody {
        self.node_mut(id)
            .as_dir_mut()
            .expect("caller checked that this inode is a directory")
    }

    /// The file `inode`, or `NotFound` / `IsADirectory`.
    pub(crate) fn file(&self, inode: InodeId) -> Result<&FileBody, MetaError> {
        let node = self
            .inodes
            .get(&inode)
            .ok_or_else(|| MetaError::NotFound(format!("inode {inode}")))?;
        node.as_file()
            .ok_or_else(|| MetaError::IsADirectory(format!("inode {inode}")))
    }

    pub(crate) fn version(&self, chunk: ChunkId) -> u64 {
        self.chunks
            .get(&chunk)
            .expect("every slot's chunk is in the chunk table")
            .version
    }

    /// Walks `path` from the root. A missing component is `NotFound` (naming the whole
    /// path); a file where a directory is needed is `NotADirectory` (naming that prefix).
    pub(crate) fn resolve(&self, path: &CairnPath) -> Result<InodeId, MetaError> {
        let full = path.as_str();
        let mut cur = ROOT_INODE;
        let mut end = 0;
        for name in path.components() {
            let Some(dir) = self.node(cur).as_dir() else {
                return Err(MetaError::NotADirectory(full[..end].to_string()));
            };
            cur = *dir
                .entries
                .get(name)
                .ok_or_else(|| MetaError::NotFound(full.to_string()))?;
            end += 1 + name.len();
        }
        Ok(cur)
    }

    /// Like [`MetaState::resolve`], and the result must be a directory.
    pub(crate) fn resolve_dir(&self, path: &CairnPath) -> Result<InodeId, MetaError> {
        let id = self.resolve(path)?;
        if self.node(id).is_dir() {
            Ok(id)
        } else {
            Err(MetaError::NotADirectory(path.to_string()))
        }
    }

    /// Hands out the next inode id.
    pub(crate) fn alloc_inode_id(&mut self) -> InodeId {
        let id = self.next_inode;
        self.next_inode += 1;
        id
    }

    /// Hands out the next chunk id.
    pub(crate) fn alloc_chunk_id(&mut self) -> ChunkId {
        let id = self.next_chunk;
        self.next_chunk += 1;
        id
    }
}
