//! Validated namespace paths.
//!
//! A [`CairnPath`] is absolute, `/`-separated UTF-8 with non-empty components that are not
//! `.` or `..` and hold no NUL, at most [`MAX_COMPONENT_LEN`] bytes per component and
//! [`MAX_PATH_LEN`] bytes in all. It is validated once, when built; everything that holds
//! one may rely on those rules.

use std::fmt;

/// Longest allowed path component, in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;
/// Longest allowed path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Why a string is not a valid path or name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must be absolute (start with '/')")]
    NotAbsolute,
    #[error("path has an empty component")]
    EmptyComponent,
    #[error("path component '{0}' is not allowed")]
    DotComponent(String),
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path component is {0} bytes, over the limit of 255")]
    ComponentTooLong(usize),
    #[error("path is {0} bytes, over the limit of 4096")]
    PathTooLong(usize),
    #[error("name contains '/'")]
    SlashInName,
}

/// An absolute, validated path in the Cairn namespace. `/` is the root.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CairnPath(String);

impl CairnPath {
    /// The root directory.
    pub fn root() -> CairnPath {
        CairnPath("/".to_string())
    }

    /// Validates `s` as a path.
    pub fn new(s: &str) -> Result<CairnPath, PathError> {
        if s.len() > MAX_PATH_LEN {
            return Err(PathError::PathTooLong(s.len()));
        }
        if !s.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        if s == "/" {
            return Ok(CairnPath::root());
        }
        for c in s[1..].split('/') {
            validate_name(c)?;
        }
        Ok(CairnPath(s.to_string()))
    }

    /// Validates a path typed by a person: a trailing `/` is dropped and a repeated `/`
    /// is not collapsed (that is still an error), nothing else is forgiven.
    pub fn parse_lenient(s: &str) -> Result<CairnPath, PathError> {
        if s.len() > 1 && s.ends_with('/') {
            CairnPath::new(&s[..s.len() - 1])
        } else {
            CairnPath::new(s)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The components, root first; empty for `/`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The parent directory and last component, or `None` for the root.
    pub fn split_last(&self) -> Option<(CairnPath, &str)> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').expect("a valid path starts with '/'");
        let parent = if cut == 0 {
            "/".to_string()
        } else {
            self.0[..cut].to_string()
        };
        Some((CairnPath(parent), &self.0[cut + 1..]))
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.split_last().map(|(_, name)| name)
    }

    /// Appends one validated name.
    pub fn join(&self, name: &str) -> Result<CairnPath, PathError> {
        validate_name(name)?;
        let joined = if self.is_root() {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.0)
        };
        if joined.len() > MAX_PATH_LEN {
            return Err(PathError::PathTooLong(joined.len()));
        }
        Ok(CairnPath(joined))
    }

    /// Whether `self` is `ancestor` or lies below it.
    pub fn starts_with(&self, ancestor: &CairnPath) -> bool {
        if ancestor.is_root() {
            return true;
        }
        self.0 == ancestor.0
            || (self.0.starts_with(&ancestor.0) && self.0.as_bytes()[ancestor.0.len()] == b'/')
    }
}

/// Validates one path component (a file or directory name).
pub fn validate_name(name: &str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::EmptyComponent);
    }
    if name == "." || name == ".." {
        return Err(PathError::DotComponent(name.to_string()));
    }
    if name.contains('\0') {
        return Err(PathError::Nul);
    }
    if name.contains('/') {
        return Err(PathError::SlashInName);
    }
    if name.len() > MAX_COMPONENT_LEN {
        return Err(PathError::ComponentTooLong(name.len()));
    }
    Ok(())
}

impl TryFrom<String> for CairnPath {
    type Error = PathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        CairnPath::new(&s)
    }
}

impl TryFrom<&str> for CairnPath {
    type Error = PathError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        CairnPath::new(s)
    }
}

impl From<CairnPath> for String {
    fn from(p: CairnPath) -> String {
        p.0
    }
}

impl fmt::Display for CairnPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CairnPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_paths() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a b/c.d",
            "/ünï/código",
            "/...",
            "/.hidden",
        ] {
            assert!(CairnPath::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn rejects_bad_paths() {
        let long_name = format!("/{}", "x".repeat(256));
        let long_path = "/a".repeat(2049);
        let cases: Vec<(&str, PathError)> = vec![
            ("", PathError::NotAbsolute),
            ("a/b", PathError::NotAbsolute),
            ("/a//b", PathError::EmptyComponent),
            ("/a/", PathError::EmptyComponent),
            ("/a/./b", PathError::DotComponent(".".into())),
            ("/a/../b", PathError::DotComponent("..".into())),
            ("/..", PathError::DotComponent("..".into())),
            ("/a\0b", PathError::Nul),
            (&long_name, PathError::ComponentTooLong(256)),
            (&long_path, PathError::PathTooLong(4098)),
        ];
        for (p, want) in cases {
            assert_eq!(CairnPath::new(p), Err(want), "{p:?}");
        }
        let max_name = format!("/{}", "x".repeat(255));
        assert!(CairnPath::new(&max_name).is_ok());
    }

    #[test]
    fn lenient_drops_one_trailing_slash() {
        assert_eq!(CairnPath::parse_lenient("/a/").unwrap().as_str(), "/a");
        assert_eq!(CairnPath::parse_lenient("/").unwrap().as_str(), "/");
        assert!(CairnPath::parse_lenient("/a//").is_err());
    }

    #[test]
    fn split_join_and_ancestry() {
        let p = CairnPath::new("/a/b/c").unwrap();
        let (parent, name) = p.split_last().unwrap();
        assert_eq!(parent.as_str(), "/a/b");
        assert_eq!(name, "c");
        assert_eq!(parent.join("c").unwrap(), p);
        assert_eq!(
            CairnPath::new("/a").unwrap().split_last().unwrap().0,
            CairnPath::root()
        );
        assert!(CairnPath::root().split_last().is_none());
        assert!(p.starts_with(&CairnPath::new("/a").unwrap()));
        assert!(p.starts_with(&p));
        assert!(
            !CairnPath::new("/ab")
                .unwrap()
                .starts_with(&CairnPath::new("/a").unwrap())
        );
        assert_eq!(p.components().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(p.join("..").is_err());
    }

    #[test]
    fn serde_validates() {
        let bad: Result<CairnPath, _> = serde_json_like("\"/a/../b\"");
        assert!(bad.is_err());
    }

    // Uses the TryFrom path serde takes, without pulling in a JSON crate.
    fn serde_json_like(s: &str) -> Result<CairnPath, PathError> {
        CairnPath::try_from(s.trim_matches('"').to_string())
    }
}
