//! `GET`/`POST /token`: the token endpoint of the Docker Hub auth flow. Takes
//! Basic credentials (GET; docker, skopeo) or a form with `grant_type=password`
//! (POST; containerd), or nothing for an anonymous token, and grants only the
//! requested scopes that the caller's rules allow.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{read_small, respond};
use crate::auth::Denial;
use crate::auth::token::Grant;
use crate::config::AuthScheme;
use crate::http::body::{Body, full};
use crate::http::query::Query;
use crate::http::{ApiError, Ctx, State};
use crate::oci::ErrorCode;

/// Largest form body accepted.
const MAX_FORM: usize = 64 * 1024;
/// Most scopes one token request may carry.
const MAX_SCOPES: usize = 64;

/// Issues a token.
pub async fn issue(
    state: &State,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if state.auth.scheme() != AuthScheme::Token {
        return Err(ApiError::Invalid(
            ErrorCode::Unsupported,
            "this registry uses Basic authentication ([auth] scheme = \"basic\"), not tokens"
                .into(),
        ));
    }
    let headers = req.headers().clone();
    let (query, form_user) = if ctx.method == Method::POST {
        let body = read_small(state, req.into_body(), MAX_FORM)
            .await?
            .ok_or_else(|| {
                ApiError::Invalid(ErrorCode::Unsupported, "token form is too large".into())
            })?;
        let form = Query::parse_form(&String::from_utf8_lossy(&body));
        let grant = form.get("grant_type").unwrap_or("password").to_owned();
        if grant != "password" {
            return Err(ApiError::Invalid(
                ErrorCode::Unsupported,
                format!("grant_type {grant:?} is not supported; use password"),
            ));
        }
        let creds = form
            .get("username")
            .map(|u| (u.to_owned(), form.get("password").unwrap_or("").to_owned()));
        (form, creds)
    } else {
        (Query::parse(req.uri().query()), None)
    };
    // The caller was identified from Authorization already; a form login is checked here.
    let user = match form_user {
        Some((u, p)) => match state.auth.login(&u, &p, ctx.client.limit_key()).await {
            Ok(true) => Some(u),
            Ok(false) => {
                return Err(state.refusal(
                    &headers,
                    None,
                    None,
                    Denial::Unauthenticated {
                        scope: None,
                        message: "invalid username or password".into(),
                    },
                ));
            }
            Err(d) => return Err(state.refusal(&headers, None, None, d)),
        },
        None => ctx.caller.user().map(str::to_owned),
    };
    // A handful of scopes is what any client asks for; more is not a client.
    let requested: Vec<Grant> = query
        .all("scope")
        .flat_map(|s| s.split(' '))
        .filter_map(Grant::parse)
        .take(MAX_SCOPES)
        .collect();
    for g in &requested {
        if let Ok(name) = g.name.parse::<crate::oci::RepoName>() {
            state.store.learn_hosted_name(&name).await;
        }
    }
    let (token, ttl) =
        state
            .auth
            .issue_token(user.as_deref(), ctx.caller.loopback, &requested, |n| {
                state.token_locals(n)
            });
    state.metrics.tokens_issued.inc();
    let body = serde_json::to_vec(&serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
    }))
    .unwrap_or_default();
    Ok(respond(
        StatusCode::OK,
        vec![
            (header::CONTENT_TYPE, "application/json".into()),
            (header::CONTENT_LENGTH, body.len().to_string()),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
        full(Bytes::from(body)),
    ))
}
