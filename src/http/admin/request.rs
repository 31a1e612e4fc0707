//! Request bodies of the admin API: JSON, at most [`MAX_BODY`] bytes (413
//! beyond), and a malformed one is a 400 that names the problem.

use http::{Request, header};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::AdminError;
use crate::http::State;

/// Largest admin request body.
pub const MAX_BODY: usize = 64 * 1024;

/// Reads and parses the JSON body of `req`; `example` shows the expected shape
/// in the message for an empty body.
pub(super) async fn json_body<T: DeserializeOwned>(
    state: &State,
    req: Request<Incoming>,
    example: &str,
) -> Result<T, AdminError> {
    optional_json_body(state, req).await?.ok_or_else(|| {
        AdminError::BadRequest(format!("the request needs a JSON body like {example}"))
    })
}

/// Reads and parses the JSON body of `req`, which may be empty (`None`): for
/// endpoints whose every field has a default (`POST /gc` is `{"dry_run":false}`).
pub(super) async fn optional_json_body<T: DeserializeOwned>(
    state: &State,
    req: Request<Incoming>,
) -> Result<Option<T>, AdminError> {
    let too_large = || AdminError::TooLarge(format!("the request body is over {MAX_BODY} bytes"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let bytes = crate::http::handlers::read_small(state, req.into_body(), MAX_BODY)
        .await
        .map_err(|e| AdminError::BadRequest(e.to_string()))?
        .ok_or_else(too_large)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AdminError::BadRequest(format!("malformed JSON body: {e}")))
}

/// The body of an endpoint without options: empty, or `{}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

/// Reads a body that must carry no options (empty or `{}`; anything else is
/// a 400 naming the field, so a misspelt option is never silently ignored).
pub(super) async fn no_options(state: &State, req: Request<Incoming>) -> Result<(), AdminError> {
    optional_json_body::<NoOptions>(state, req).await.map(drop)
}
