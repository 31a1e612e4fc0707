//! A rule's tag list: every page the upstream serves (following its `Link`
//! header), kept to the tags the rule's globs match, at most [`MAX_MATCHED`].
//! Names that are not tags (longer than 128 characters, a path, a space) are
//! dropped here: a hostile list can then neither hold more than
//! `MAX_MATCHED` short names in memory nor fill the rule's report and state
//! with its garbage, pass after pass.

use globset::GlobSet;

use crate::oci::{RepoName, Tag};
use crate::proxy::{Proxy, ProxyError};

/// Matching tags one rule keeps per pass; more are reported as truncated.
pub const MAX_MATCHED: usize = 10_000;
/// Pages followed per pass (a `Link` loop cannot hold a pass forever).
const MAX_PAGES: usize = 1_000;

/// What the tag list gave.
#[derive(Debug, Default)]
pub struct Listed {
    /// Tags the upstream listed.
    pub seen: u64,
    /// Those matching the globs (at most [`MAX_MATCHED`], sorted).
    pub matched: Vec<String>,
    /// More matched than were kept, or pages were left unread.
    pub truncated: bool,
    /// Pages fetched.
    pub pages: u64,
    /// Names listed that are not tags (dropped).
    pub invalid: u64,
}

/// The query of the next page named by a `Link` header
/// (`</v2/<name>/tags/list?n=100&last=x>; rel="next"`), if any.
pub fn next_query(link: &str) -> Option<String> {
    let start = link.find('<')? + 1;
    let end = start + link[start..].find('>')?;
    let target = &link[start..end];
    let (_, query) = target.split_once('?')?;
    (!query.is_empty()).then(|| query.to_owned())
}

/// Lists `remote`'s tags at `upstream`, every page, keeping those `globs` match.
pub async fn list(
    proxy: &Proxy,
    upstream: usize,
    remote: &RepoName,
    globs: &GlobSet,
) -> Result<Listed, ProxyError> {
    let mut out = Listed::default();
    let mut query = String::new();
    let mut asked = std::collections::HashSet::new();
    loop {
        let (tags, link) = proxy.tags(upstream, remote, &query).await?;
        out.pages += 1;
        out.seen += tags.len() as u64;
        for t in tags {
            if t.parse::<Tag>().is_err() {
                out.invalid += 1;
                continue;
            }
            if globs.is_match(&t) {
                if out.matched.len() < MAX_MATCHED {
                    out.matched.push(t);
                } else {
                    out.truncated = true;
                }
            }
        }
        match link.as_deref().and_then(next_query) {
            Some(next) if asked.insert(next.clone()) => {
                if out.pages as usize >= MAX_PAGES {
                    out.truncated = true;
                    break;
                }
                query = next;
            }
            _ => break,
        }
    }
    out.matched.sort();
    out.matched.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::next_query;

    #[test]
    fn link_headers_give_the_next_query() {
        assert_eq!(
            next_query("</v2/library/nginx/tags/list?n=100&last=1.2>; rel=\"next\"").as_deref(),
            Some("n=100&last=1.2")
        );
        assert_eq!(
            next_query("<https://h/v2/a/tags/list?last=x&n=2>; rel=\"next\"").as_deref(),
            Some("last=x&n=2")
        );
        assert_eq!(next_query("</v2/a/tags/list>; rel=\"next\""), None);
        assert_eq!(next_query("garbage"), None);
    }
}
