//! An image reference as people write it on a command line: `team/app:1`,
//! `docker.io/library/nginx:1.27`, `team/app@sha256:…`. The admin API's `rm`,
//! `pin` and `unpin` take these; routing then maps the name to its local one.

use std::fmt;
use std::str::FromStr;

use super::name::{NameError, Reference, RepoName};

/// A repository name with a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The repository, as written (before routing).
    pub name: RepoName,
    /// The tag or digest. `name:tag@digest` keeps the digest, as clients do.
    pub reference: Reference,
}

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageRefError {
    /// Neither `:tag` nor `@digest` follows the name.
    #[error("{0:?} names no tag or digest: write NAME:TAG or NAME@sha256:DIGEST")]
    Incomplete(String),
    /// The name, tag or digest is malformed.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = without_own_host(s.trim());
        if let Some((name, digest)) = s.split_once('@') {
            // `name:tag@digest`: the digest is what counts.
            let name = match name.rsplit_once(':') {
                Some((n, tag)) if !tag.contains('/') => {
                    tag.parse::<super::name::Tag>()?;
                    n
                }
                _ => name,
            };
            return Ok(ImageRef {
                name: name.parse()?,
                reference: Reference::Digest(digest.parse().map_err(NameError::from)?),
            });
        }
        match s.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => Ok(ImageRef {
                name: name.parse()?,
                reference: Reference::Tag(tag.parse()?),
            }),
            _ => Err(ImageRefError::Incomplete(s.chars().take(300).collect())),
        }
    }
}

/// Drops a leading `host:port/` or `localhost/`: that is this registry's own
/// address, as `docker push registry.lan:5000/team/app:1` writes it. (An
/// upstream's name such as `docker.io/...` has no port and stays: routing
/// needs it.) A name component can hold no `:`, so nothing else is lost.
fn without_own_host(s: &str) -> &str {
    match s.split_once('/') {
        Some((host, rest))
            if !rest.is_empty()
                && (host == "localhost"
                    || host
                        .rsplit_once(':')
                        .is_some_and(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))) =>
        {
            rest
        }
        _ => s,
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(t) => write!(f, "{}:{t}", self.name),
            Reference::Digest(d) => write!(f, "{}@{d}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn tags_and_digests_as_clients_write_them() {
        let r: ImageRef = "team/app:1".parse().unwrap();
        assert_eq!(r.name.as_str(), "team/app");
        assert!(matches!(r.reference, Reference::Tag(ref t) if t.as_str() == "1"));
        let r: ImageRef = "docker.io/library/nginx:1.27".parse().unwrap();
        assert_eq!(r.name.as_str(), "docker.io/library/nginx");
        let r: ImageRef = format!("team/app@{D}").parse().unwrap();
        assert!(matches!(r.reference, Reference::Digest(_)));
        assert_eq!(r.to_string(), format!("team/app@{D}"));
        let r: ImageRef = format!("team/app:1@{D}").parse().unwrap();
        assert_eq!(r.name.as_str(), "team/app");
        assert!(matches!(r.reference, Reference::Digest(_)));
    }

    #[test]
    fn this_registrys_own_address_is_dropped() {
        for written in [
            "registry.lan:5000/team/app:1",
            "127.0.0.1:5000/team/app:1",
            "localhost/team/app:1",
            "team/app:1",
        ] {
            let r: ImageRef = written.parse().unwrap();
            assert_eq!(r.name.as_str(), "team/app", "{written}");
        }
        let r: ImageRef = "registry.lan:5000/team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .unwrap();
        assert_eq!(r.name.as_str(), "team/app");
        // An upstream's name has no port and is kept for routing.
        let r: ImageRef = "ghcr.io/org/app:1".parse().unwrap();
        assert_eq!(r.name.as_str(), "ghcr.io/org/app");
    }

    #[test]
    fn malformed_references_say_why() {
        assert!(matches!(
            "team/app".parse::<ImageRef>(),
            Err(ImageRefError::Incomplete(_))
        ));
        assert!(matches!(
            "Team/app:1".parse::<ImageRef>(),
            Err(ImageRefError::Name(NameError::InvalidName(_)))
        ));
        assert!(matches!(
            "team/app:.x".parse::<ImageRef>(),
            Err(ImageRefError::Name(NameError::InvalidTag(_)))
        ));
        assert!(matches!(
            "team/app@sha256:zz".parse::<ImageRef>(),
            Err(ImageRefError::Name(NameError::Digest(_)))
        ));
        assert!("".parse::<ImageRef>().is_err());
        assert!(":1".parse::<ImageRef>().is_err());
    }
}
