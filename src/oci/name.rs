//! Repository names and manifest references, validated by the spec's grammar before
//! any file or index access (a hostile name never reaches the store).

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// Longest repository name accepted, as in distribution (`reference.NameTotalLengthMax`).
pub const MAX_NAME_LEN: usize = 255;

/// Why a string is not a repository name or reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Empty, too long, or outside `[a-z0-9]+([._]|__|[-]*)[a-z0-9]+` per component.
    #[error(
        "invalid repository name {0:?}: components are lowercase letters and digits separated by '.', '_', '__' or '-', joined by '/', at most 255 characters"
    )]
    InvalidName(String),
    /// A tag outside `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error(
        "invalid tag {0:?}: at most 128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    )]
    InvalidTag(String),
    /// Something that looked like a digest but was not a usable one.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A repository name that matched the spec's grammar; safe as an index key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// The name as clients write it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `prefix/rest`, where `rest` is [`valid_suffix`](Self::valid_suffix):
    /// only what joining can break is checked (`prefix`'s components and the
    /// length), so routing a mirrored name does not parse it again.
    pub(crate) fn joined(prefix: &str, rest: &RepoName) -> Result<RepoName, NameError> {
        let len = prefix.len() + 1 + rest.0.len();
        if len > MAX_NAME_LEN || !prefix.split('/').all(valid_component) {
            let whole = format!("{prefix}/{}", rest.0);
            return Err(NameError::InvalidName(whole.chars().take(300).collect()));
        }
        let mut s = String::with_capacity(len);
        s.push_str(prefix);
        s.push('/');
        s.push_str(&rest.0);
        Ok(RepoName(s))
    }

    /// `rest`: a valid name, or the part of one after one of its `/`s (its
    /// components are the name's, so it is valid too).
    pub(crate) fn valid_suffix(name: &RepoName, rest: &str) -> RepoName {
        debug_assert!(name.0.ends_with(rest) && !rest.is_empty());
        debug_assert!(rest.split('/').all(valid_component));
        RepoName(rest.to_owned())
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or any number of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let sep_start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(valid_component) {
            return Err(NameError::InvalidName(s.chars().take(300).collect()));
        }
        Ok(RepoName(s.to_owned()))
    }
}

/// A validated tag.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// The tag as clients write it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !ok {
            return Err(NameError::InvalidTag(s.chars().take(200).collect()));
        }
        Ok(Tag(s.to_owned()))
    }
}

/// The `<reference>` of a manifest URL: a tag or a digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable name for a manifest.
    Tag(Tag),
    /// An immutable content address.
    Digest(Digest),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl FromStr for Reference {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for n in [
            "a",
            "library/nginx",
            "ghcr.io/org/app",
            "a__b/c_d/e.f/g--h---i",
            "0/1/2",
            &"a".repeat(255),
        ] {
            assert!(n.parse::<RepoName>().is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_hostile_names() {
        for n in [
            "",
            "../x",
            "x/..",
            "x/../y",
            ".",
            "Upper",
            "a//b",
            "/a",
            "a/",
            "a___b",
            "a_.b",
            "-a",
            "a-",
            "a b",
            "a%2fb",
            "a:b",
            &"a".repeat(256),
        ] {
            assert!(n.parse::<RepoName>().is_err(), "{n:?} should be invalid");
        }
    }

    #[test]
    fn tags_and_references() {
        assert!("latest".parse::<Tag>().is_ok());
        assert!("_v1.2-rc".parse::<Tag>().is_ok());
        assert!("A".repeat(128).parse::<Tag>().is_ok());
        assert!("A".repeat(129).parse::<Tag>().is_err());
        assert!(".hidden".parse::<Tag>().is_err());
        assert!("-x".parse::<Tag>().is_err());
        assert!("a/b".parse::<Tag>().is_err());
        assert!(matches!("v1".parse::<Reference>(), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert!("sha256:xyz".parse::<Reference>().is_err());
    }
}
