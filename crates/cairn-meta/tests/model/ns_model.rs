//! The namespace model: a map from full path to entry, with files and symlinks as shared
//! objects so that hard links are just two paths naming one object. Straightforward logic,
//! no inodes, no parent pointers.

use std::collections::{BTreeMap, BTreeSet};

use cairn_meta::{ErrorKind, FileType};

#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Dir,
    /// A file or symlink object, by model id.
    Obj(u64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Obj {
    File { len: u64, slots: BTreeSet<u64> },
    Symlink(String),
}

/// The namespace as a map from full path to entry; "/" is always a directory.
pub struct Model {
    pub nodes: BTreeMap<String, Entry>,
    pub objs: BTreeMap<u64, Obj>,
    next_obj: u64,
}

pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The prefix every path strictly below `dir` starts with.
fn below(dir: &str) -> String {
    if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    }
}

/// Whether `path` is `dir` or lies below it.
fn within(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&below(dir))
}

impl Model {
    pub fn new() -> Model {
        Model {
            nodes: BTreeMap::from([("/".to_string(), Entry::Dir)]),
            objs: BTreeMap::new(),
            next_obj: 0,
        }
    }

    pub fn resolve(&self, path: &str) -> Result<&Entry, ErrorKind> {
        let mut prefix = String::new();
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for (i, c) in comps.iter().enumerate() {
            prefix.push('/');
            prefix.push_str(c);
            match self.nodes.get(&prefix) {
                None => return Err(ErrorKind::NotFound),
                Some(Entry::Obj(_)) if i + 1 < comps.len() => {
                    return Err(ErrorKind::NotADirectory);
                }
                Some(_) => {}
            }
        }
        Ok(&self.nodes[if prefix.is_empty() { "/" } else { &prefix }])
    }

    fn resolve_dir(&self, path: &str) -> Result<(), ErrorKind> {
        match self.resolve(path)? {
            Entry::Dir => Ok(()),
            Entry::Obj(_) => Err(ErrorKind::NotADirectory),
        }
    }

    /// The file object at `path`, if that is what it names.
    pub fn file_mut(&mut self, path: &str) -> Option<(&mut u64, &mut BTreeSet<u64>)> {
        let Some(Entry::Obj(id)) = self.nodes.get(path) else {
            return None;
        };
        match self.objs.get_mut(id) {
            Some(Obj::File { len, slots }) => Some((len, slots)),
            _ => None,
        }
    }

    /// Paths naming files or symlinks, sorted.
    pub fn obj_paths(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Obj(_)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn has_children(&self, dir: &str) -> bool {
        let b = below(dir);
        self.nodes
            .keys()
            .any(|k| k.len() > b.len() && k.starts_with(&b))
    }

    fn subtree(&self, path: &str) -> Vec<String> {
        self.nodes
            .keys()
            .filter(|k| within(k, path))
            .cloned()
            .collect()
    }

    fn names(&self, id: u64) -> usize {
        self.nodes
            .values()
            .filter(|e| **e == Entry::Obj(id))
            .count()
    }

    /// Drops objects that lost their last name.
    fn collect(&mut self) {
        let named: BTreeSet<u64> = self
            .nodes
            .values()
            .filter_map(|e| match e {
                Entry::Obj(id) => Some(*id),
                Entry::Dir => None,
            })
            .collect();
        self.objs.retain(|id, _| named.contains(id));
    }

    fn add_obj(&mut self, path: &str, obj: Obj) {
        self.next_obj += 1;
        self.objs.insert(self.next_obj, obj);
        self.nodes
            .insert(path.to_string(), Entry::Obj(self.next_obj));
    }

    pub fn mkdir(&mut self, path: &str, parents: bool) -> Result<(), ErrorKind> {
        if path == "/" {
            return if parents {
                Ok(())
            } else {
                Err(ErrorKind::AlreadyExists)
            };
        }
        if !parents {
            self.resolve_dir(parent_of(path))?;
            if self.nodes.contains_key(path) {
                return Err(ErrorKind::AlreadyExists);
            }
            self.nodes.insert(path.to_string(), Entry::Dir);
            return Ok(());
        }
        let comps: Vec<&str> = path[1..].split('/').collect();
        let mut prefix = String::new();
        for (i, c) in comps.iter().enumerate() {
            prefix.push('/');
            prefix.push_str(c);
            match self.nodes.get(&prefix) {
                Some(Entry::Obj(_)) if i + 1 == comps.len() => {
                    return Err(ErrorKind::AlreadyExists);
                }
                Some(Entry::Obj(_)) => return Err(ErrorKind::NotADirectory),
                Some(Entry::Dir) => {}
                None => {
                    self.nodes.insert(prefix.clone(), Entry::Dir);
                }
            }
        }
        Ok(())
    }

    pub fn create(&mut self, path: &str, overwrite: bool) -> Result<(), ErrorKind> {
        if path == "/" {
            return Err(ErrorKind::IsADirectory);
        }
        self.resolve_dir(parent_of(path))?;
        match self.nodes.get(path) {
            Some(Entry::Dir) => Err(ErrorKind::IsADirectory),
            Some(Entry::Obj(_)) if !overwrite => Err(ErrorKind::AlreadyExists),
            Some(Entry::Obj(_)) => match self.file_mut(path) {
                Some((len, slots)) => {
                    *len = 0;
                    slots.clear();
                    Ok(())
                }
                None => Err(ErrorKind::AlreadyExists),
            },
            None => {
                let file = Obj::File {
                    len: 0,
                    slots: BTreeSet::new(),
                };
                self.add_obj(path, file);
                Ok(())
            }
        }
    }

    pub fn delete(&mut self, path: &str, recursive: bool) -> Result<(), ErrorKind> {
        if path == "/" {
            return Err(ErrorKind::InvalidArgument);
        }
        if *self.resolve(path)? == Entry::Dir && self.has_children(path) && !recursive {
            return Err(ErrorKind::NotEmpty);
        }
        for k in self.subtree(path) {
            self.nodes.remove(&k);
        }
        self.collect();
        Ok(())
    }

    pub fn rename(&mut self, from: &str, to: &str, no_replace: bool) -> Result<(), ErrorKind> {
        if from == "/" || to == "/" {
            return Err(ErrorKind::InvalidArgument);
        }
        let src = self.resolve(from)?.clone();
        self.resolve_dir(parent_of(to))?;
        if from == to {
            return Ok(());
        }
        if src == Entry::Dir && to.starts_with(&below(from)) {
            return Err(ErrorKind::InvalidArgument);
        }
        if let Some(dst) = self.nodes.get(to) {
            if *dst == src && src != Entry::Dir {
                return Ok(()); // two names of one object
            }
            if no_replace {
                return Err(ErrorKind::AlreadyExists);
            }
            match (&src, dst) {
                (Entry::Obj(_), Entry::Dir) => return Err(ErrorKind::IsADirectory),
                (Entry::Dir, Entry::Obj(_)) => return Err(ErrorKind::NotADirectory),
                (Entry::Dir, Entry::Dir) if self.has_children(to) => {
                    return Err(ErrorKind::NotEmpty);
                }
                _ => {}
            }
            self.nodes.remove(to);
        }
        self.move_tree(from, to);
        self.collect();
        Ok(())
    }

    fn move_tree(&mut self, from: &str, to: &str) {
        for k in self.subtree(from) {
            let node = self.nodes.remove(&k).expect("listed just now");
            self.nodes.insert(format!("{to}{}", &k[from.len()..]), node);
        }
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), ErrorKind> {
        self.resolve_dir(parent_of(path))?;
        if self.nodes.contains_key(path) {
            return Err(ErrorKind::AlreadyExists);
        }
        self.add_obj(path, Obj::Symlink(target.to_string()));
        Ok(())
    }

    pub fn link(&mut self, src: &str, dst: &str) -> Result<(), ErrorKind> {
        let Entry::Obj(id) = self.resolve(src)?.clone() else {
            return Err(ErrorKind::PermissionDenied);
        };
        self.resolve_dir(parent_of(dst))?;
        if self.nodes.contains_key(dst) {
            return Err(ErrorKind::AlreadyExists);
        }
        self.nodes.insert(dst.to_string(), Entry::Obj(id));
        Ok(())
    }

    pub fn unlink(&mut self, path: &str) -> Result<(), ErrorKind> {
        self.resolve_dir(parent_of(path))?;
        match self.nodes.get(path) {
            None => Err(ErrorKind::NotFound),
            Some(Entry::Dir) => Err(ErrorKind::IsADirectory),
            Some(Entry::Obj(_)) => {
                self.nodes.remove(path);
                self.collect();
                Ok(())
            }
        }
    }

    pub fn exchange(&mut self, from: &str, to: &str) -> Result<(), ErrorKind> {
        let src = self.resolve(from)?.clone();
        self.resolve_dir(parent_of(to))?;
        if from == to || self.nodes.get(to) == Some(&src) && src != Entry::Dir {
            return Ok(());
        }
        if src == Entry::Dir && within(parent_of(to), from) {
            return Err(ErrorKind::InvalidArgument);
        }
        let Some(dst) = self.nodes.get(to) else {
            return Err(ErrorKind::NotFound);
        };
        if *dst == Entry::Dir && within(parent_of(from), to) {
            return Err(ErrorKind::InvalidArgument);
        }
        let a: Vec<(String, Entry)> = self
            .subtree(from)
            .into_iter()
            .map(|k| {
                (
                    format!("{to}{}", &k[from.len()..]),
                    self.nodes.remove(&k).unwrap(),
                )
            })
            .collect();
        let b: Vec<(String, Entry)> = self
            .subtree(to)
            .into_iter()
            .map(|k| {
                (
                    format!("{from}{}", &k[to.len()..]),
                    self.nodes.remove(&k).unwrap(),
                )
            })
            .collect();
        self.nodes.extend(a);
        self.nodes.extend(b);
        Ok(())
    }

    /// The tree as `path -> (type, size, chunk_count, nlink)`, as the real state reports it.
    pub fn snapshot(&self) -> BTreeMap<String, (FileType, u64, u64, u32)> {
        self.nodes
            .iter()
            .map(|(path, entry)| {
                let v = match entry {
                    Entry::Dir => {
                        let b = below(path);
                        let children: Vec<&String> = self
                            .nodes
                            .keys()
                            .filter(|k| k.len() > b.len() && k.starts_with(&b))
                            .filter(|k| !k[b.len()..].contains('/'))
                            .collect();
                        let subdirs = children
                            .iter()
                            .filter(|k| self.nodes[k.as_str()] == Entry::Dir)
                            .count();
                        let n = children.len() as u64;
                        (FileType::Directory, n, 0, 2 + subdirs as u32)
                    }
                    Entry::Obj(id) => {
                        let names = self.names(*id) as u32;
                        match &self.objs[id] {
                            Obj::File { len, slots } => (
                                FileType::File,
                                *len,
                                slots.last().map_or(0, |s| s + 1),
                                names,
                            ),
                            Obj::Symlink(t) => (FileType::Symlink, t.len() as u64, 0, names),
                        }
                    }
                };
                (path.clone(), v)
            })
            .collect()
    }

    /// `(files, directories, symlinks, bytes, chunks)`.
    pub fn totals(&self) -> (u64, u64, u64, u64, u64) {
        let dirs = self.nodes.values().filter(|e| **e == Entry::Dir).count() as u64;
        let (mut files, mut links, mut bytes, mut chunks) = (0, 0, 0, 0);
        for obj in self.objs.values() {
            match obj {
                Obj::File { len, slots } => {
                    files += 1;
                    bytes += len;
                    chunks += slots.len() as u64;
                }
                Obj::Symlink(_) => links += 1,
            }
        }
        (files, dirs, links, bytes, chunks)
    }
}
