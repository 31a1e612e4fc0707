//! The tag list of a repository on a replication target, page by page.

use http::{Method, StatusCode, header};

use super::super::deadline::Deadline;
use super::super::error::UpstreamError;
use super::super::response::read_capped;
use super::auth::Scopes;
use super::call::{Request, failure};
use super::{CALL_TIMEOUT, Target, within};

/// Tags asked for per page.
const TAG_PAGE: usize = 1000;
/// Largest tag list page accepted.
const MAX_TAG_PAGE_BYTES: u64 = 16 << 20;

impl Target {
    /// Every tag of `repo` on the target, following `Link` pages of 1000;
    /// empty when the target does not know the repository (404); more than
    /// `max` tags is an error.
    pub async fn tags(&self, repo: &str, max: usize) -> Result<Vec<String>, UpstreamError> {
        self.tags_paged(repo, max, TAG_PAGE).await
    }

    /// [`Target::tags`] asking for `page` tags at a time (tests use small
    /// pages to exercise the paging).
    pub async fn tags_paged(
        &self,
        repo: &str,
        max: usize,
        page: usize,
    ) -> Result<Vec<String>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let scopes = Scopes::push(repo);
        let mut url = self.endpoint(&format!("/v2/{repo}/tags/list?n={}", page.max(1)))?;
        let mut all = Vec::new();
        loop {
            let deadline = Deadline::after(CALL_TIMEOUT);
            let (list, next) = within(deadline, async {
                let resp = self
                    .call(&Request::new(Method::GET, url.clone(), &scopes), deadline)
                    .await?;
                match resp.status() {
                    StatusCode::NOT_FOUND => return Ok((None, None)),
                    s if s.is_success() => {}
                    _ => return Err(failure(resp).await),
                }
                let next = resp
                    .headers()
                    .get(header::LINK)
                    .and_then(|v| v.to_str().ok())
                    .and_then(next_link)
                    .and_then(|l| resp.url().join(l).ok());
                let body = read_capped(resp, MAX_TAG_PAGE_BYTES, "tag list").await?;
                let list: TagList = serde_json::from_slice(&body)
                    .map_err(|e| UpstreamError::Invalid(format!("tag list of {repo}: {e}")))?;
                Ok((Some(list.tags.unwrap_or_default()), next))
            })
            .await?;
            // 404: the target does not know the repository (NAME_UNKNOWN).
            let Some(list) = list else {
                return Ok(Vec::new());
            };
            let empty = list.is_empty();
            all.extend(list);
            if all.len() > max {
                return Err(UpstreamError::Invalid(format!(
                    "{repo} has more than {max} tags on the target"
                )));
            }
            match next {
                Some(n) if !empty && n.origin() == self.base_url.origin() => url = n,
                _ => return Ok(all),
            }
        }
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(v: &str) -> Option<&str> {
    v.split(',').find_map(|part| {
        let (url, params) = part.trim().strip_prefix('<')?.split_once('>')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then_some(url)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found() {
        assert_eq!(
            next_link("</v2/a/tags/list?n=2&last=b>; rel=\"next\""),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link("<http://h/x?a=1>; rel=prev, <http://h/y>; rel=next"),
            Some("http://h/y")
        );
        assert_eq!(next_link("</v2/a>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }
}
