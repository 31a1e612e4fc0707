//! The web page at `/ui/`: a surface of its own beside the OCI and admin
//! APIs, over the same pipeline (client address, access log, metrics) and
//! the same users and rules. Pages are askama templates (`templates/ui/`)
//! extending one layout, styled by one stylesheet and no script, so the CSP
//! forbids every script. Failures become HTML error pages in [`error`].
//!
//! Who is visiting comes from a signed session cookie (login form, same
//! htpasswd check and failed-login limit as the API); every form carries the
//! session's CSRF field and must come from this origin. What a visitor sees
//! is what they may pull; admin actions need an admin, checked here whatever
//! the page showed.

mod actions;
mod assets;
mod dashboard;
pub mod error;
mod form;
pub mod format;
mod image;
mod listing;
mod login;
pub mod page;
mod repo;
mod repos;
pub mod route;
pub mod session;
pub mod svg;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;

pub use error::UiError;
pub use route::{UiRoute, is_ui_path};

use super::State;
use super::body::Body;
use crate::auth::{Access, Caller, Identity};
use crate::config::{Action, AnonymousPull};
use crate::net::ClientAddr;
use page::Page;
use session::{COOKIE, FLASH_COOKIE};

/// One visit: who, and what the layout needs.
pub struct Visit {
    /// The caller every decision is made for.
    pub caller: Caller,
    /// The layout's values.
    pub page: Page,
    /// The session cookie's value (the CSRF field is derived from it).
    pub cookie: String,
    /// Whether the session is new (its cookie is sent with the response).
    pub new_session: bool,
    /// Whether the visitor came over HTTPS (cookies are then `Secure`).
    pub secure: bool,
    /// `Set-Cookie` values to send.
    pub set_cookies: Vec<String>,
}

impl Visit {
    /// Whether the visitor may pull from the repository stored as `local`.
    pub fn may_pull(&self, state: &State, local: &str) -> bool {
        state.auth.allows(&self.caller, local, Action::Pull)
    }

    /// Whether the visitor may use the admin actions.
    pub fn is_admin(&self, state: &State) -> bool {
        state.auth.authorize(&Access::Admin, &self.caller).is_ok()
    }
}

/// Serves one request under `/ui`; failures become HTML error pages.
/// `route_name` and `user` are set for the access log.
pub(super) async fn serve(
    state: &Arc<State>,
    req: Request<Incoming>,
    client: ClientAddr,
    remote: SocketAddr,
    route_name: &mut &'static str,
    user: &mut Option<String>,
) -> Response<Body> {
    let route = UiRoute::parse(req.method(), req.uri().path());
    if let Ok(r) = &route {
        *route_name = r.name();
    }
    if matches!(route, Ok(UiRoute::Stylesheet)) {
        let mut resp = assets::stylesheet();
        page::secure(&mut resp);
        return resp;
    }
    let mut visit = visit(state, &req, client, remote);
    *user = visit.caller.user().map(str::to_owned);
    let shows_flash = visit.page.flash.is_some();
    let is_page = route.as_ref().is_ok_and(|r| !r.is_post());
    let result = match (super::check_host(&req), route) {
        (Err(e), _) => Err(UiError::BadRequest(e.to_string())),
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(r)) => Box::pin(dispatch(state, r, req, &mut visit)).await,
    };
    let mut resp = result.unwrap_or_else(|e| e.into_response(&visit.page));
    if shows_flash && is_page {
        visit
            .set_cookies
            .push(session::set_cookie(FLASH_COOKIE, "", 0, visit.secure));
    }
    if visit.new_session {
        visit.set_cookies.push(session::set_cookie(
            COOKIE,
            &visit.cookie,
            crate::auth::session::SESSION_TTL_SECS,
            visit.secure,
        ));
    }
    for c in &visit.set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    page::secure(&mut resp);
    resp
}

/// Who is visiting: the session the cookie names, or a new anonymous one.
fn visit(state: &State, req: &Request<Incoming>, client: ClientAddr, remote: SocketAddr) -> Visit {
    let now = crate::store::unix_now();
    let headers = req.headers();
    let secure = is_https(state, headers, remote);
    let existing = session::cookie(headers, COOKIE)
        .and_then(|c| state.auth.session(c, now).map(|s| (c.to_owned(), s)));
    let (cookie, session, new_session) = match existing {
        Some((c, s)) => (c, Some(s), false),
        None => (state.auth.issue_session(None, now), None, true),
    };
    let caller = state.auth.session_caller(session.as_ref(), client);
    let policy = state.auth.policy();
    let admin = state.auth.authorize(&Access::Admin, &caller).is_ok();
    let flash = session::cookie(headers, FLASH_COOKIE).and_then(|v| state.auth.unseal(v));
    let page = Page {
        root: root_of(req.uri().path()),
        user: caller.user().map(str::to_owned),
        admin,
        has_users: policy.has_users,
        csrf: state.auth.csrf_token(&cookie),
        flash,
        version: crate::build_info::VERSION,
    };
    Visit {
        caller,
        page,
        cookie,
        new_session,
        secure,
        set_cookies: Vec::new(),
    }
}

/// The relative way from a URL under `/ui/` back to `/ui/`: one `../` per
/// segment past the first.
fn root_of(path: &str) -> String {
    match path.strip_prefix(route::PREFIX) {
        Some(rest) => "../".repeat(rest.matches('/').count()),
        None => "ui/".into(),
    }
}

/// Whether the browser talks HTTPS to us: TLS here, or a trusted proxy
/// saying it terminated TLS (`X-Forwarded-Proto: https`).
fn is_https(state: &State, headers: &http::HeaderMap, remote: SocketAddr) -> bool {
    if state.tls.is_some() {
        return true;
    }
    let peer = remote.ip().to_canonical();
    let trusted = state.trusted_proxies.iter().any(|c| c.contains(peer));
    trusted
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Pages need the visitor to see something: an anonymous visitor where
/// anonymous pulls are off (and users exist) is sent to the login form.
fn needs_login(state: &State, visit: &Visit) -> bool {
    let policy = state.auth.policy();
    matches!(visit.caller.identity, Identity::Anonymous)
        && policy.has_users
        && policy.anonymous_pull == AnonymousPull::None
}

/// The single `match` from route to handler.
async fn dispatch(
    state: &Arc<State>,
    route: UiRoute,
    req: Request<Incoming>,
    visit: &mut Visit,
) -> Result<Response<Body>, UiError> {
    let page_route = !route.is_post() && !matches!(route, UiRoute::LoginForm | UiRoute::Bare);
    if page_route && needs_login(state, visit) {
        return Ok(page::see_other(&format!("{}login", visit.page.root)));
    }
    match route {
        UiRoute::Bare => Ok(page::see_other("ui/")),
        UiRoute::Stylesheet => Ok(assets::stylesheet()),
        UiRoute::Dashboard => dashboard::show(state, visit).await,
        UiRoute::Repos => repos::list(state, visit, req.uri().query()).await,
        UiRoute::Repo { name } => repo::show(state, visit, &name, req.uri().query()).await,
        UiRoute::Image { name, reference } => {
            let host = image::client_host(state, &req);
            image::show(state, visit, &name, &reference, &host).await
        }
        UiRoute::LoginForm => login::form(visit, None),
        UiRoute::Login => login::login(state, visit, req).await,
        UiRoute::Logout => login::logout(state, visit, req).await,
        UiRoute::Action(a) => actions::run(state, visit, a, req).await,
    }
}

/// The local repository a name on the page stands for: the name as listed,
/// or where routing reads a name as clients write it from; only one the
/// visitor may pull (any other is "not found", so its existence is not told).
async fn visible_repo(
    state: &State,
    visit: &Visit,
    name: &crate::oci::RepoName,
) -> Result<crate::oci::RepoName, UiError> {
    let mut candidates = vec![name.clone()];
    if let Some(local) = state.local_name(name) {
        if local != *name {
            candidates.push(local);
        }
    }
    for c in candidates {
        if state.store.has_repo(&c).await? && visit.may_pull(state, c.as_str()) {
            return Ok(c);
        }
    }
    Err(UiError::NotFound(format!(
        "there is no repository {name} here"
    )))
}
