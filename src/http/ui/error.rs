//! The one place where web page failures become responses: an HTML page
//! (`templates/ui/error.html`, in the layout) with the status and message
//! decided by the same `match`. Handlers only return `Err`.

use askama::Template;
use http::{HeaderValue, Method, Response, StatusCode, header};

use super::page::{Page, html};
use crate::http::body::Body;
use crate::store::StoreError;

/// Everything a web page request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Malformed input (a name, a reference, a query, a form).
    #[error("{0}")]
    BadRequest(String),
    /// No such page, repository, tag or image (also what a visitor who may
    /// not see a repository gets: its existence is not told).
    #[error("{0}")]
    NotFound(String),
    /// The page exists for another method.
    #[error("this page takes {0} requests")]
    MethodNotAllowed(Method),
    /// The visitor may not do this (not an admin, a cross-site form, a
    /// missing or wrong CSRF field).
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed logins from this address.
    #[error("too many failed logins from this address; try again in {0} s")]
    TooManyRequests(u64),
    /// The index or content failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A pass could not run now (one is running already, an upstream is
    /// down): 503 with its own words, which are safe to show.
    #[error("{0}")]
    Unavailable(String),
    /// Something else broke; logged, and the visitor is told to look there.
    #[error("{0}")]
    Internal(String),
}

impl From<crate::workers::WorkerError> for UiError {
    fn from(e: crate::workers::WorkerError) -> Self {
        use crate::workers::WorkerError as W;
        match e {
            W::Store(s) => UiError::Store(s),
            W::Refused(m) => UiError::BadRequest(m),
            e @ (W::Busy(_) | W::Upstream(_)) => UiError::Unavailable(e.to_string()),
            W::Other(m) => UiError::Internal(m),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage<'a> {
    page: &'a Page,
    status: String,
    message: &'a str,
}

impl UiError {
    /// The status a failure answers with.
    pub fn status(&self) -> StatusCode {
        use StatusCode as S;
        match self {
            UiError::BadRequest(_) => S::BAD_REQUEST,
            UiError::NotFound(_) => S::NOT_FOUND,
            UiError::MethodNotAllowed(_) => S::METHOD_NOT_ALLOWED,
            UiError::Forbidden(_) => S::FORBIDDEN,
            UiError::TooManyRequests(_) => S::TOO_MANY_REQUESTS,
            UiError::Store(e) => match e {
                StoreError::BlobUnknown(_)
                | StoreError::ManifestUnknown(_)
                | StoreError::NameUnknown(_) => S::NOT_FOUND,
                StoreError::Pinned { .. } | StoreError::TagTaken { .. } => S::CONFLICT,
                StoreError::Closed => S::SERVICE_UNAVAILABLE,
                _ => S::INTERNAL_SERVER_ERROR,
            },
            UiError::Unavailable(_) => S::SERVICE_UNAVAILABLE,
            UiError::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a visitor sees: its own words, but never an internal
    /// cause (that is logged here, once).
    pub fn message(&self) -> String {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "web page request failed");
            return match self {
                UiError::Store(StoreError::Closed) => "wharf is shutting down".into(),
                UiError::Unavailable(m) => m.clone(),
                _ => "internal error; see the server log".into(),
            };
        }
        match self {
            UiError::Store(StoreError::Pinned { .. }) => {
                format!("{self} (unpin it first)")
            }
            UiError::Store(StoreError::ManifestUnknown(_) | StoreError::NameUnknown(_)) => {
                "there is no such image here".into()
            }
            _ => self.to_string(),
        }
    }

    /// The error page.
    pub fn into_response(self, page: &Page) -> Response<Body> {
        let status = self.status();
        let message = self.message();
        let body = ErrorPage {
            page,
            status: format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            message: &message,
        }
        .render()
        .unwrap_or_else(|_| {
            format!(
                "<!DOCTYPE html><title>{}</title><p>error</p>",
                status.as_u16()
            )
        });
        let mut resp = html(status, body);
        match &self {
            UiError::MethodNotAllowed(allow) => {
                if let Ok(v) = HeaderValue::from_str(allow.as_str()) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
            }
            UiError::TooManyRequests(secs) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            _ => {}
        }
        resp
    }
}
