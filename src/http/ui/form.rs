//! Form POSTs: the body (url-encoded, small), and the checks every one
//! passes before it acts: sent from this origin, by a live session, with
//! that session's CSRF field.

use http::Request;
use hyper::body::Incoming;

use super::{UiError, Visit, session};
use crate::http::State;
use crate::http::query::Query;

/// Largest form body (the forms hold a few short fields).
const MAX_FORM: usize = 16 * 1024;

/// Reads the form and checks origin and CSRF field.
pub async fn checked_form(
    state: &State,
    visit: &Visit,
    req: Request<Incoming>,
) -> Result<Query, UiError> {
    session::check_same_origin(req.headers(), req.uri().authority().map(|a| a.as_str()))?;
    let body = crate::http::handlers::read_small(state, req.into_body(), MAX_FORM)
        .await
        .map_err(|e| UiError::BadRequest(e.to_string()))?
        .ok_or_else(|| UiError::BadRequest("the form is too large".into()))?;
    let form = Query::parse_form(&String::from_utf8_lossy(&body));
    let csrf = form.get("csrf").unwrap_or_default();
    // A new session means the request came without a live one: its field
    // cannot match, and the visitor should reload the page.
    if visit.new_session || !state.auth.check_csrf(&visit.cookie, csrf) {
        return Err(UiError::Forbidden(
            "the form is stale or was not sent from this page (missing or wrong CSRF field); \
             reload the page and try again"
                .into(),
        ));
    }
    Ok(form)
}
