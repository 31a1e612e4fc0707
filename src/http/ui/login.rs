//! `GET`/`POST /ui/login` and `POST /ui/logout`. The password goes through
//! the API's own check (`Authorizer::login`: the htpasswd users, the credential
//! cache, the per-client failed-login limit); a good one gets a new session
//! (never the one the login form was served with).

use askama::Template;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::page::{Page, html, see_other};
use super::{UiError, Visit, form, session};
use crate::auth::Denial;
use crate::auth::session::SESSION_TTL_SECS;
use crate::http::State;
use crate::http::body::Body;

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage<'a> {
    page: &'a Page,
    error: Option<&'a str>,
}

/// The form, with an error line after a failed attempt.
pub fn form(visit: &Visit, error: Option<&str>) -> Result<Response<Body>, UiError> {
    let body = LoginPage {
        page: &visit.page,
        error,
    }
    .render()
    .map_err(|e| UiError::Internal(e.to_string()))?;
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    Ok(html(status, body))
}

/// Checks the credentials; on success a new session cookie and a redirect to
/// the dashboard.
pub async fn login(
    state: &State,
    visit: &mut Visit,
    req: Request<Incoming>,
) -> Result<Response<Body>, UiError> {
    let f = form::checked_form(state, visit, req).await?;
    let user = f.get("user").unwrap_or_default().to_owned();
    let password = f.get("password").unwrap_or_default().to_owned();
    if user.is_empty() || user.len() > 256 || password.len() > 1024 {
        return form(visit, Some("enter a user name and a password"));
    }
    match state.auth.login(&user, &password, visit.caller.ip).await {
        Ok(true) => {
            let cookie = state
                .auth
                .issue_session(Some(&user), crate::store::unix_now());
            tracing::info!(user, client = %visit.caller.ip, "web page login");
            visit.set_cookies.push(session::set_cookie(
                session::COOKIE,
                &cookie,
                SESSION_TTL_SECS,
                visit.secure,
            ));
            Ok(see_other("./"))
        }
        Ok(false) => form(visit, Some("invalid user name or password")),
        Err(Denial::RateLimited { retry_after }) => Err(UiError::TooManyRequests(retry_after)),
        Err(_) => Err(UiError::Forbidden("the login was refused".into())),
    }
}

/// Ends the session: on the server (a replayed copy of the cookie is
/// refused) and in the browser (the cookie is cleared).
pub async fn logout(
    state: &State,
    visit: &mut Visit,
    req: Request<Incoming>,
) -> Result<Response<Body>, UiError> {
    form::checked_form(state, visit, req).await?;
    state
        .auth
        .end_session(&visit.cookie, crate::store::unix_now());
    visit
        .set_cookies
        .push(session::set_cookie(session::COOKIE, "", 0, visit.secure));
    Ok(see_other("./"))
}
