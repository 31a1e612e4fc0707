//! The search text and page number of a paged list (`?q=&page=`) and the
//! links to the pages around it: the repository list and a repository's
//! tags page the same way, so neither ever renders more than one page.

use super::UiError;
use super::format::segment;
use crate::http::query::Query;

/// Longest search text.
const MAX_QUERY: usize = 256;
/// Highest page number asked for (a bound on `skip`, not on the list).
const MAX_PAGE: usize = 1_000_000;

/// What the visitor asked for.
pub struct Listing {
    /// The search text, trimmed (empty: everything).
    pub q: String,
    /// The page, from 1.
    pub page_no: usize,
}

impl Listing {
    /// Reads `q` and `page`; refuses text that is too long or not printable
    /// and pages that are not a number from 1.
    pub fn parse(query: Option<&str>, what: &str) -> Result<Self, UiError> {
        let query = Query::parse(query);
        let q = query.get("q").unwrap_or_default().trim().to_owned();
        if q.len() > MAX_QUERY || q.chars().any(char::is_control) {
            return Err(UiError::BadRequest(format!(
                "the {what} search text must be at most {MAX_QUERY} printable characters"
            )));
        }
        let page_no = match query.get("page") {
            None | Some("") => 1,
            Some(p) => p
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| UiError::BadRequest("page must be a number from 1".into()))?,
        };
        Ok(Self { q, page_no })
    }

    /// How many entries come before this page.
    pub fn skip(&self, per_page: usize) -> usize {
        (self.page_no - 1) * per_page
    }

    /// Whether `name` matches the search (a case-insensitive substring).
    pub fn matcher(&self) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let needle = self.q.to_lowercase();
        move |name: &str| needle.is_empty() || name.to_lowercase().contains(needle.as_str())
    }
}

/// Where a paged list stands, for `templates/ui/pager.html`.
pub struct Pager {
    /// How many entries match in all.
    pub total: usize,
    /// This page, from 1.
    pub page_no: usize,
    /// How many pages (at least 1).
    pub pages: usize,
    /// The previous page's link.
    pub prev: Option<String>,
    /// The next page's link.
    pub next: Option<String>,
}

impl Pager {
    /// Links to `base` (the page's own relative URL without a query:
    /// `repos`, or `../../repos/team/app` on `/ui/repos/team/app`).
    pub fn new(base: &str, listing: &Listing, total: usize, per_page: usize) -> Self {
        let pages = total.div_ceil(per_page).max(1);
        let href = |n: usize| {
            if listing.q.is_empty() {
                format!("{base}?page={n}")
            } else {
                format!("{base}?q={}&page={n}", segment(&listing.q))
            }
        };
        let page_no = listing.page_no;
        Self {
            total,
            page_no,
            pages,
            prev: (page_no > 1).then(|| href(page_no.min(pages + 1) - 1)),
            next: (page_no < pages).then(|| href(page_no + 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_link_around_the_current_one_and_keep_the_search() {
        let l = Listing::parse(Some("q=a%20b&page=2"), "tag").unwrap();
        assert_eq!((l.q.as_str(), l.page_no, l.skip(50)), ("a b", 2, 50));
        let p = Pager::new("repos", &l, 120, 50);
        assert_eq!(p.pages, 3);
        assert_eq!(p.prev.as_deref(), Some("repos?q=a%20b&page=1"));
        assert_eq!(p.next.as_deref(), Some("repos?q=a%20b&page=3"));
        let last = Listing::parse(Some("page=3"), "tag").unwrap();
        let p = Pager::new("../../repos/team/app", &last, 120, 50);
        assert_eq!(p.next, None);
        assert_eq!(p.prev.as_deref(), Some("../../repos/team/app?page=2"));
        // Past the end: "previous" leads back to the last page.
        let far = Listing::parse(Some("page=9"), "tag").unwrap();
        let p = Pager::new("repos", &far, 120, 50);
        assert_eq!((p.prev.as_deref(), p.next), (Some("repos?page=3"), None));
    }

    #[test]
    fn hostile_queries_are_refused() {
        for q in ["page=0", "page=-1", "page=x", "page=1000001", "q=%00"] {
            assert!(Listing::parse(Some(q), "tag").is_err(), "{q}");
        }
        let long = format!("q={}", "a".repeat(257));
        assert!(Listing::parse(Some(&long), "tag").is_err());
        let l = Listing::parse(Some("q=NGINX"), "tag").unwrap();
        assert!((l.matcher())("library/nginx"));
        assert!(!(l.matcher())("library/redis"));
    }
}
