//! The web page (`/ui/`) in a real browser: headless Chromium through
//! chromedriver (`tests/common/browser.rs`). Every page renders at phone and
//! desktop width with no console error and no failed request (screenshots
//! under `${CARGO_TARGET_DIR:-target}/ui-screenshots/`); the dashboard's
//! numbers are the ones `/metrics` and `/_wharf/v1/` give and move with a
//! pull; an admin deletes a tag from the page; a pull user sees no admin
//! control and a forged action POST is refused.
//!
//! The first tests prove the harness itself on a small page served here (a
//! console error on purpose, a missing image, a form whose POST redirects)
//! and on what wharf serves without the ui.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::browser::{Browser, DESKTOP, PHONE};
use common::image::{Image, tar_with_file};
use common::upstreams::{hub, mirror_config, publish};
use common::{As, Wharf, htpasswd, http};
use http_body_util::{BodyExt as _, Full};
use reqwest::Method;
use serde_json::Value;

// ---------------------------------------------------------------------------
// The harness, proved on pages that exist without the ui.
// ---------------------------------------------------------------------------

/// A page with a viewport, a stylesheet and a form; nothing wrong with it.
const CLEAN: &str = r#"<!doctype html>
<html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="style.css"><title>clean</title></head>
<body><h1 data-test="heading">A form</h1>
<form method="post" action="submit" data-test="form">
<input name="who" data-test="who"><input type="hidden" name="csrf" value="t0k3n">
<button type="submit" data-test="go">Go</button></form></body></html>"#;

/// A page that logs an error on purpose and asks for an image that is not there.
const NOISY: &str = r#"<!doctype html>
<html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>noisy</title></head>
<body><p data-test="para">noisy</p><img src="missing.png" alt="">
<script>console.error("deliberate error for the harness test");</script></body></html>"#;

/// A page without a viewport meta tag: a phone lays it out 980 px wide.
const NO_VIEWPORT: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>wide</title></head>
<body><p data-test="para">no viewport</p><a href="/abs">an absolute link</a></body></html>"#;

fn page(status: u16, ctype: &str, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(body.into()))
        .unwrap()
}

/// The test site's answer to one request (the POST body already read).
fn site(
    method: &http::Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> http::Response<Full<Bytes>> {
    match (method.as_str(), path) {
        ("GET", "/clean") => page(200, "text/html; charset=utf-8", CLEAN),
        ("GET", "/noisy") => page(200, "text/html; charset=utf-8", NOISY),
        ("GET", "/wide") => page(200, "text/html; charset=utf-8", NO_VIEWPORT),
        ("GET", "/style.css") => page(200, "text/css", "body { margin: 0 1em; }"),
        ("POST", "/submit") => {
            // Post/redirect/get, with a relative Location as the ui answers.
            let form = String::from_utf8_lossy(body).into_owned();
            http::Response::builder()
                .status(303)
                .header("location", format!("done?{form}"))
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        ("GET", "/done") => {
            let who = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("who="))
                .unwrap_or("");
            let csrf = query.contains("csrf=t0k3n");
            page(
                200,
                "text/html; charset=utf-8",
                format!(
                    "<!doctype html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">\
                     <title>done</title></head><body><p data-test=\"greeting\">hello {who}</p>\
                     <p data-test=\"csrf-seen\">{csrf}</p></body></html>"
                ),
            )
        }
        _ => page(404, "text/plain", "not found"),
    }
}

/// A small HTTP site on 127.0.0.1:0 serving [`site`]; stops on drop.
struct Site {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_site() -> Site {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let query = parts.uri.query().unwrap_or("").to_owned();
                        Ok::<_, Infallible>(site(&parts.method, parts.uri.path(), &query, &body))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Site { url, task }
}

#[tokio::test(flavor = "multi_thread")]
async fn harness_catches_console_errors_and_failed_requests() {
    let Some(mut b) = Browser::start("harness-noisy").await else {
        return;
    };
    let site = serve_site().await;

    b.open(&format!("{}/clean", site.url)).await;
    assert_eq!(b.text("heading").await, "A form");
    b.assert_clean("the clean page").await;

    b.open(&format!("{}/noisy", site.url)).await;
    assert_eq!(b.text("para").await, "noisy");
    let errors = b.console_errors().await;
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("deliberate error for the harness test")),
        "the console error was caught: {errors:#?}"
    );
    let failed = b.failed_requests().await;
    assert!(
        failed
            .iter()
            .any(|f| f.url.ends_with("/missing.png") && f.status == Some(404)),
        "the missing image was caught: {failed:#?}"
    );
    // Both logs were drained: a clean page after it is clean again.
    b.open(&format!("{}/clean", site.url)).await;
    b.assert_clean("the clean page again").await;

    // A page that is not there is a failed request too.
    b.open(&format!("{}/nowhere", site.url)).await;
    let failed = b.failed_requests().await;
    assert!(
        failed
            .iter()
            .any(|f| f.url.ends_with("/nowhere") && f.status == Some(404)),
        "{failed:#?}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn harness_fills_a_form_follows_the_redirect_and_screenshots_both_widths() {
    let Some(mut b) = Browser::start("harness-form").await else {
        return;
    };
    let site = serve_site().await;
    let _ = std::fs::remove_dir_all(common::browser::screenshot_dir().join("none"));

    for size in [PHONE, DESKTOP] {
        b.set_size(size).await;
        b.open(&format!("{}/clean", site.url)).await;
        assert_eq!(b.layout_width().await, u64::from(size.0), "{size:?}");
        assert_eq!(b.horizontal_overflow().await, 0, "{size:?}");
        let shot = b.screenshot("clean").await;
        assert!(
            shot.ends_with(format!("harness-form-clean-{}.png", size.0)),
            "{}",
            shot.display()
        );
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        // The PNG's width (IHDR) is the viewport's: the page, not a window.
        let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        assert_eq!(width, size.0, "{}", shot.display());
        b.assert_clean("the clean page").await;
    }

    // What the form will post, as a script would forge it.
    let (action, fields) = b.form_of("go").await;
    assert_eq!(action, format!("{}/submit", site.url));
    assert!(
        fields.contains(&("csrf".to_owned(), "t0k3n".to_owned())),
        "{fields:?}"
    );
    assert_eq!(b.input_value("csrf").await.as_deref(), Some("t0k3n"));

    b.type_into("who", "dockerhand").await;
    b.submit("form").await;
    let url = b
        .wait_for_url("the redirect", |u| u.contains("/done?"))
        .await;
    assert!(url.contains("who=dockerhand"), "{url}");
    assert_eq!(b.text("greeting").await, "hello dockerhand");
    assert_eq!(b.text("csrf-seen").await, "true");
    b.assert_clean("the page after the redirect").await;

    // On a phone, a page without a viewport meta tag lays out 980 px wide:
    // the check the ui's pages must pass is able to fail.
    b.set_size(PHONE).await;
    b.open(&format!("{}/wide", site.url)).await;
    assert_eq!(b.layout_width().await, 980);
    // The relative-links check the ui's pages must pass can fail too.
    assert_eq!(b.eval(ABSOLUTE_LINKS).await, serde_json::json!(["/abs"]));
    b.open(&format!("{}/clean", site.url)).await;
    assert_eq!(b.eval(ABSOLUTE_LINKS).await, serde_json::json!([]));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn harness_opens_what_wharf_serves() {
    let Some(mut b) = Browser::start("harness-wharf").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;

    // `/metrics` is OpenMetrics text, which a browser downloads rather than
    // shows; `/healthz` and `/v2/` are JSON it renders.
    b.open(&w.url("/healthz")).await;
    let body = b.eval("return document.body.innerText").await;
    assert!(
        body.as_str().unwrap_or("").contains("\"status\":\"ok\""),
        "{body}"
    );
    b.screenshot("healthz").await;

    b.open(&w.url("/v2/")).await;
    let body = b.eval("return document.body.innerText").await;
    assert_eq!(body.as_str().map(str::trim), Some("{}"));

    // Errors other than the favicon (wharf has none outside the ui) are bugs.
    let errors: Vec<_> = b
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !e.message.contains("favicon.ico"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let failed: Vec<_> = b
        .failed_requests()
        .await
        .into_iter()
        .filter(|f| !f.url.ends_with("/favicon.ico"))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");

    // A path wharf does not serve is seen as failed.
    b.open(&w.url("/v2/nothing/here/manifests/x")).await;
    let failed = b.failed_requests().await;
    assert!(
        failed
            .iter()
            .any(|f| f.url.ends_with("/manifests/x") && f.status == Some(404)),
        "{failed:#?}"
    );
    b.close().await;
    w.stop().await;
}

// ---------------------------------------------------------------------------
// The ui itself (engineer A's surface), against its fixed contract: URLs under
// `/ui/`, `data-test` names, the login form, actions as CSRF-guarded POSTs.
// ---------------------------------------------------------------------------

const ADMIN: (&str, &str) = ("admin", "admin-pw");
const PULLER: (&str, &str) = ("puller", "puller-pw");

/// A mirror of a hub holding `library/busybox:1`, with a pushed `team/app`
/// (tags 1 and 2), an admin and a user who may only pull.
struct Setup {
    w: Wharf,
    _hub: Wharf,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![tar_with_file("busybox", &common::bytes(40_000, 7))]);
    publish(&hub, "library/busybox", "1", &img).await;
    let pw = dir.path().join("htpasswd");
    htpasswd(&pw, &[ADMIN, PULLER]);
    let extra = mirror_config(
        &hub.base,
        "",
        &format!(
            "[hosted]\nprefixes = [\"team/\"]\n\
             [auth]\nhtpasswd = {:?}\nanonymous_pull = true\nadmins = [\"admin\"]\n\
             [[auth.rule]]\nusers = [\"admin\"]\nrepos = [\"*\"]\nactions = [\"pull\", \"push\", \"delete\"]\n\
             [[auth.rule]]\nusers = [\"puller\"]\nrepos = [\"*\"]\nactions = [\"pull\"]\n",
            pw.display().to_string()
        ),
    );
    // Token scheme (users beside anonymous pulls): /v2/ challenges anonymous callers.
    let w = Wharf::start_config_unchecked(common::config(&dir.path().join("mirror"), &extra)).await;
    let admin = As::user(&w, ADMIN.0, ADMIN.1);
    assert_eq!(admin.push_image("team/app", "1", b"team app").await, 201);
    // Tag 2 names the same manifest: deleting it leaves the image.
    let m = admin
        .req(Method::GET, "/v2/team/app/manifests/1")
        .header("accept", common::image::OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let r = admin
        .req(Method::PUT, "/v2/team/app/manifests/2")
        .header("content-type", common::image::OCI_MANIFEST)
        .body(m.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    Setup {
        w,
        _hub: hub,
        _dir: dir,
    }
}

/// Pulls `repo:tag` through the mirror as a client does (manifest, config,
/// layers), reading every body to the end.
async fn pull(w: &Wharf, repo: &str, tag: &str) {
    let who = As::user(w, ADMIN.0, ADMIN.1);
    let r = who
        .req(Method::GET, &format!("/v2/{repo}/manifests/{tag}"))
        .header("accept", common::image::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "manifest of {repo}:{tag}");
    let m: Value = r.json().await.unwrap();
    let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        digests.push(l["digest"].as_str().unwrap().to_owned());
    }
    for d in digests {
        let r = who
            .req(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "blob {d}");
        r.bytes().await.unwrap();
    }
    // Settled: no download still in flight (the index is written after the
    // last bytes went out).
    common::wait_for(10, "downloads to settle", || async {
        metric(w, "wharf_downloads_in_flight").await == 0.0
    })
    .await;
}

/// The sum of a family's samples whose labels include `labels`.
async fn metric_where(w: &Wharf, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = common::metrics_text(w).await;
    let exp = common::metrics::parse(&text);
    exp.samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn metric(w: &Wharf, name: &str) -> f64 {
    metric_where(w, name, &[]).await
}

/// `team/app` → `team/app`: a repository name in a page's URL (its own path;
/// an image adds `/-/<reference>`).
fn seg(name: &str) -> String {
    name.to_owned()
}

/// An admin API GET with the admin's credentials.
async fn admin_json(w: &Wharf, path: &str) -> reqwest::Response {
    As::user(w, ADMIN.0, ADMIN.1)
        .req(Method::GET, path)
        .send()
        .await
        .unwrap()
}

/// The tags the admin API lists for `repo`.
async fn api_tags(w: &Wharf, repo: &str) -> Vec<String> {
    let r = admin_json(w, &format!("/_wharf/v1/repos/{repo}")).await;
    if r.status() == 404 {
        return Vec::new();
    }
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap().to_owned())
        .collect()
}

/// Logs in through the form; lands on a page that is not the login page.
async fn login(b: &mut Browser, w: &Wharf, (user, password): (&str, &str)) {
    b.open(&w.url("/ui/login")).await;
    b.type_into("login-user", user).await;
    b.type_into("login-password", password).await;
    b.submit("login-submit").await;
    let url = b
        .wait_for_url("a page past the login form", |u| !u.contains("/login"))
        .await;
    assert!(!url.contains(password), "no credentials in URLs: {url}");
    b.assert_clean("the page after logging in").await;
}

/// The browser's cookies as one `Cookie` header.
async fn cookie_header(b: &Browser) -> String {
    b.cookies()
        .await
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// POSTs a form as a script outside the browser would: `cookie`, `fields`.
async fn forge(action: &str, cookie: &str, fields: &[(String, String)]) -> u16 {
    http()
        .post(action)
        .header("cookie", cookie)
        .form(fields)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A refused action: 403 (not allowed, bad CSRF token) or 401 (no session).
fn refusal(status: u16) -> bool {
    matches!(status, 401 | 403)
}

/// `fields` with the `csrf` field set to `token` (or removed for `None`).
fn with_csrf(fields: &[(String, String)], token: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<_> = fields
        .iter()
        .filter(|(k, _)| k != "csrf")
        .cloned()
        .collect();
    if let Some(t) = token {
        out.push(("csrf".to_owned(), t.to_owned()));
    }
    out
}

/// A number shown on the page: the element's `data-value` when it has one
/// (the raw number), else its text, with the precision the text shows.
/// Sizes (`12.3 MiB`, `512 B`, `1.5 GB`) are bytes; `42 %` is 0.42.
/// Answers the candidate values (binary and decimal readings of a unit) and
/// the tolerance of the rounding.
fn shown_number(raw: Option<&str>, text: &str) -> (Vec<f64>, f64) {
    if let Some(v) = raw.and_then(|r| r.trim().parse::<f64>().ok()) {
        return (vec![v], v.abs() * 1e-9);
    }
    let t = text.trim();
    let start = t
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or_else(|| panic!("no number in {t:?}"));
    let num: String = t[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    let v: f64 = num.parse().unwrap_or_else(|_| panic!("number in {t:?}"));
    let decimals = num.split('.').nth(1).map_or(0, str::len);
    let half_step = 0.5 * 10f64.powi(-i32::try_from(decimals).unwrap());
    let unit = t[start + num.len()..].trim().to_ascii_lowercase();
    if unit.starts_with('%') {
        return (vec![v / 100.0], half_step / 100.0);
    }
    let (bin, dec) = match unit.chars().next() {
        Some('k') => (1024f64, 1e3),
        Some('m') => (1024f64.powi(2), 1e6),
        Some('g') => (1024f64.powi(3), 1e9),
        Some('t') => (1024f64.powi(4), 1e12),
        _ => (1.0, 1.0),
    };
    // A unit written the binary way (KiB) is binary; KB/kB may be either.
    let candidates = if unit.contains('i') || bin == dec {
        vec![v * bin]
    } else {
        vec![v * bin, v * dec]
    };
    (candidates, half_step * bin)
}

/// The number the element `name` shows.
async fn read_number(b: &Browser, name: &str) -> (Vec<f64>, f64, String) {
    let raw = b.attr(name, "data-value").await;
    let text = b.text(name).await;
    let (values, tol) = shown_number(raw.as_deref(), &text);
    (values, tol, text)
}

fn matches(shown: &(Vec<f64>, f64, String), expected: &[f64]) -> bool {
    let (values, tol, _) = shown;
    values
        .iter()
        .any(|v| expected.iter().any(|e| (v - e).abs() <= tol + 1e-9))
}

/// What `/metrics` says the dashboard's three numbers are: hit ratio (by
/// requests, or by bytes), bytes served locally, bytes fetched upstream.
async fn dashboard_truth(w: &Wharf) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let hits = metric_where(w, "wharf_cache_requests_total", &[("result", "HIT")]).await
        + metric_where(w, "wharf_cache_requests_total", &[("result", "STALE")]).await;
    let all = metric(w, "wharf_cache_requests_total").await;
    let local = metric_where(w, "wharf_served_bytes_total", &[("source", "local")]).await;
    let upstream = metric_where(w, "wharf_served_bytes_total", &[("source", "upstream")]).await;
    let peer = metric_where(w, "wharf_served_bytes_total", &[("source", "peer")]).await;
    let fetched = metric(w, "wharf_upstream_blob_bytes_total").await;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    (
        vec![ratio(hits, all), ratio(local, local + upstream + peer)],
        vec![local],
        vec![upstream, fetched],
    )
}

/// Reloads the dashboard until its three numbers are what `/metrics` says
/// (history sampling may lag a moment); answers the hit ratio shown.
async fn dashboard_agrees(b: &mut Browser, w: &Wharf) -> f64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        b.open(&w.url("/ui/")).await;
        let ratio = read_number(b, "hit-ratio").await;
        let local = read_number(b, "bytes-local").await;
        let upstream = read_number(b, "bytes-upstream").await;
        let (t_ratio, t_local, t_upstream) = dashboard_truth(w).await;
        if matches(&ratio, &t_ratio) && matches(&local, &t_local) && matches(&upstream, &t_upstream)
        {
            b.assert_clean("the dashboard").await;
            return ratio.0[0];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dashboard shows hit ratio {:?}, local {:?}, upstream {:?}; /metrics says {t_ratio:?}, {t_local:?}, {t_upstream:?}",
            ratio.2,
            local.2,
            upstream.2
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[test]
fn shown_numbers_are_read_with_their_precision() {
    let (v, tol) = shown_number(None, "42.5 %");
    assert_eq!(v, vec![0.425]);
    assert!((tol - 0.0005).abs() < 1e-12);
    let (v, tol) = shown_number(None, "1.5 MiB");
    assert_eq!(v, vec![1.5 * 1024.0 * 1024.0]);
    assert!((tol - 0.05 * 1024.0 * 1024.0).abs() < 1e-6);
    let (v, _) = shown_number(None, "2 kB");
    assert_eq!(v, vec![2048.0, 2000.0]);
    let (v, tol) = shown_number(None, "1,234 B");
    assert_eq!((v, tol), (vec![1234.0], 0.5));
    let (v, _) = shown_number(Some("0.25"), "25 %");
    assert_eq!(v, vec![0.25]);
    let shown = (vec![0.5], 0.005, String::new());
    assert!(matches(&shown, &[0.0, 0.503]));
    assert!(!matches(&shown, &[0.0, 0.6]));
}

/// The pages a visitor can open, with a short name for screenshots.
async fn pages(w: &Wharf) -> Vec<(String, String)> {
    let digest = admin_json(w, "/_wharf/v1/repos/team/app").await;
    let v: Value = digest.json().await.unwrap();
    let d = v["tags"][0]["digest"].as_str().unwrap().to_owned();
    vec![
        ("dashboard".into(), w.url("/ui/")),
        ("repos".into(), w.url("/ui/repos")),
        ("repos-search".into(), w.url("/ui/repos?q=team")),
        (
            "repo-hosted".into(),
            w.url(&format!("/ui/repos/{}", seg("team/app"))),
        ),
        (
            "repo-mirrored".into(),
            w.url(&format!("/ui/repos/{}", seg("library/busybox"))),
        ),
        (
            "image-tag".into(),
            w.url(&format!("/ui/repos/{}/-/1", seg("team/app"))),
        ),
        (
            "image-digest".into(),
            w.url(&format!("/ui/repos/{}/-/{d}", seg("team/app"))),
        ),
        (
            "image-mirrored".into(),
            w.url(&format!("/ui/repos/{}/-/1", seg("library/busybox"))),
        ),
    ]
}

/// Links, form actions, stylesheets and images written as absolute paths or
/// URLs (what breaks under a reverse proxy's sub-path); `data:` is fine.
const ABSOLUTE_LINKS: &str = "return Array.from(document.querySelectorAll(\
     'a[href], form[action], link[href], img[src], script[src]'))\
     .map(e => e.getAttribute('href') ?? e.getAttribute('action') ?? e.getAttribute('src'))\
     .filter(u => u.startsWith('/') || (/^[a-z][a-z0-9+.-]*:/i.test(u) && !u.startsWith('data:')))";

#[tokio::test(flavor = "multi_thread")]
async fn every_page_renders_clean_at_phone_and_desktop_width() {
    let s = setup().await;
    pull(&s.w, "library/busybox", "1").await;
    let Some(mut b) = Browser::start("ui-pages").await else {
        return;
    };
    for size in [PHONE, DESKTOP] {
        b.set_size(size).await;
        // Anonymous: the login form.
        b.open(&s.w.url("/ui/login")).await;
        b.client().delete_all_cookies().await.unwrap();
        b.open(&s.w.url("/ui/login")).await;
        b.find("login-user").await;
        b.find("login-password").await;
        b.find("login-submit").await;
        assert_eq!(
            b.layout_width().await,
            u64::from(size.0),
            "login: viewport meta"
        );
        assert_eq!(
            b.horizontal_overflow().await,
            0,
            "login scrolls sideways at {size:?}"
        );
        b.assert_clean("the login page").await;
        b.screenshot("login").await;

        login(&mut b, &s.w, ADMIN).await;
        for (name, url) in pages(&s.w).await {
            b.open(&url).await;
            assert_eq!(b.count("error").await, 0, "{name} shows an error");
            assert_eq!(
                b.layout_width().await,
                u64::from(size.0),
                "{name}: viewport meta"
            );
            assert_eq!(
                b.horizontal_overflow().await,
                0,
                "{name} scrolls sideways at {size:?}"
            );
            let absolute = b.eval(ABSOLUTE_LINKS).await;
            assert_eq!(
                absolute,
                Value::Array(vec![]),
                "{name}: links must be relative"
            );
            b.assert_clean(&name).await;
            b.screenshot(&name).await;
        }
    }
    // A page that is not there is an HTML error page, not a blank one.
    b.open(&s.w.url(&format!("/ui/repos/{}", seg("no/such"))))
        .await;
    b.find("error").await;
    let errors = b.console_errors().await;
    assert!(
        errors.iter().all(|e| e.message.contains("404")),
        "only the 404 itself: {errors:#?}"
    );
    b.screenshot("not-found").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_sets_a_strict_http_only_session_and_refuses_bad_passwords() {
    let s = setup().await;
    let Some(mut b) = Browser::start("ui-login").await else {
        return;
    };
    b.open(&s.w.url("/ui/login")).await;
    b.type_into("login-user", ADMIN.0).await;
    b.type_into("login-password", "not-the-password").await;
    b.submit("login-submit").await;
    b.find("error").await;
    assert!(b.current_url().await.contains("/ui/login"));
    assert!(!b.current_url().await.contains("not-the-password"));
    b.screenshot("login-refused").await;
    let _ = b.console_errors().await;
    let _ = b.failed_requests().await;

    login(&mut b, &s.w, ADMIN).await;
    let cookies = b.cookies().await;
    assert!(!cookies.is_empty(), "a session cookie");
    for c in &cookies {
        assert_eq!(c.http_only(), Some(true), "{c}: HttpOnly");
        // (fantoccini does not re-export the cookie crate's SameSite.)
        assert_eq!(
            format!("{:?}", c.same_site()),
            "Some(Strict)",
            "{c}: SameSite=Strict"
        );
        assert!(
            !c.value().contains(ADMIN.1),
            "{c}: no password in the cookie"
        );
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_numbers_match_the_api_and_metrics_and_a_pull_moves_the_hit_ratio() {
    let s = setup().await;
    let Some(mut b) = Browser::start("ui-dashboard").await else {
        return;
    };
    login(&mut b, &s.w, ADMIN).await;

    // A first pull: everything comes from the upstream.
    pull(&s.w, "library/busybox", "1").await;
    let first = dashboard_agrees(&mut b, &s.w).await;
    b.screenshot("dashboard-after-miss").await;

    // The same image again: served locally, the hit ratio rises.
    pull(&s.w, "library/busybox", "1").await;
    let second = dashboard_agrees(&mut b, &s.w).await;
    assert!(second > first, "hit ratio {first} → {second}");
    b.screenshot("dashboard-after-hit").await;

    // One row per upstream, one per worker `/_wharf/v1/status` lists.
    assert_eq!(b.count("upstream-row").await, 1);
    let status: Value = admin_json(&s.w, "/_wharf/v1/status")
        .await
        .json()
        .await
        .unwrap();
    let workers = status["workers"].as_array().unwrap();
    let rows = b.texts("worker-row").await;
    assert_eq!(rows.len(), workers.len(), "{rows:?}");
    for wk in workers {
        let name = wk["name"].as_str().unwrap_or_default();
        assert!(
            rows.iter().any(|r| r.contains(name)),
            "worker {name} in {rows:?}"
        );
    }
    b.find("storage-gauge").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_deletes_a_tag_from_the_page() {
    let s = setup().await;
    let Some(mut b) = Browser::start("ui-delete").await else {
        return;
    };
    login(&mut b, &s.w, ADMIN).await;
    b.open(&s.w.url(&format!("/ui/repos/{}", seg("team/app"))))
        .await;
    assert_eq!(b.count("tag-row").await, 2);
    b.screenshot("repo-before-delete").await;

    // The delete control whose form names tag 2.
    let buttons = b.find_all("delete-tag").await;
    assert_eq!(buttons.len(), 2, "one delete control per tag");
    let mut target = None;
    for (i, _) in buttons.iter().enumerate() {
        let (_, fields) = b.form_of_nth("delete-tag", i).await;
        if fields
            .iter()
            .any(|(k, v)| k != "csrf" && (v == "2" || v.ends_with(":2")))
        {
            target = Some(i);
        }
    }
    let i = target.expect("a delete-tag form naming tag 2");
    buttons[i].click().await.unwrap();
    // A confirmation step, when the page asks for one.
    if b.count("confirm").await > 0 {
        b.click("confirm").await;
    }
    common::wait_for(20, "the API to stop listing tag 2", || async {
        api_tags(&s.w, "team/app").await == vec!["1".to_owned()]
    })
    .await;
    b.open(&s.w.url(&format!("/ui/repos/{}", seg("team/app"))))
        .await;
    assert_eq!(b.count("tag-row").await, 1, "the page lists one tag");
    b.assert_clean("the repository after the delete").await;
    b.screenshot("repo-after-delete").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_user_sees_no_admin_control_and_forged_actions_are_refused() {
    let s = setup().await;
    pull(&s.w, "library/busybox", "1").await;
    let Some(mut b) = Browser::start("ui-forged").await else {
        return;
    };

    // The admin's forms, as an attacker would copy them.
    login(&mut b, &s.w, ADMIN).await;
    b.open(&s.w.url(&format!("/ui/repos/{}", seg("team/app"))))
        .await;
    let (delete_action, delete_fields) = b.form_of("delete-tag").await;
    assert!(
        delete_action.ends_with("/ui/actions/delete-tag"),
        "{delete_action}"
    );
    let admin_csrf = delete_fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.clone())
        .expect("a csrf field in the delete form");
    b.open(&s.w.url("/ui/")).await;
    let (gc_action, gc_fields) = b.form_of("gc").await;
    let admin_cookie = cookie_header(&b).await;

    // Anonymous visitors see what anonymous_pull lets them pull (everything
    // here), and no admin control.
    b.client().delete_all_cookies().await.unwrap();
    b.open(&s.w.url("/ui/repos")).await;
    assert_eq!(b.count("repo-row").await, 2, "team/app and library/busybox");
    for control in ["delete-tag", "gc", "pin", "sync"] {
        assert_eq!(b.count(control).await, 0, "{control} shown to anonymous");
    }
    b.assert_clean("the repositories, anonymous").await;
    b.screenshot("anonymous-repos").await;

    // The pull user: no admin control on any page.
    login(&mut b, &s.w, PULLER).await;
    for (name, url) in pages(&s.w).await {
        b.open(&url).await;
        for control in ["delete-tag", "gc", "pin", "sync"] {
            assert_eq!(
                b.count(control).await,
                0,
                "{control} shown to a pull user on {name}"
            );
        }
        b.assert_clean(&name).await;
        b.screenshot(&format!("puller-{name}")).await;
    }
    let puller_cookie = cookie_header(&b).await;
    let puller_csrf = b.input_value("csrf").await.unwrap_or(admin_csrf.clone());

    // Forged POSTs: the pull user's session with their own token, with the
    // admin's; the admin's session without a token or with the pull user's.
    let refused = [
        (&puller_cookie, Some(puller_csrf.as_str())),
        (&puller_cookie, Some(admin_csrf.as_str())),
        (&admin_cookie, None),
        (&admin_cookie, Some("forged-token")),
    ];
    for (cookie, csrf) in refused {
        let st = forge(&delete_action, cookie, &with_csrf(&delete_fields, csrf)).await;
        assert!(refusal(st), "delete-tag with csrf {csrf:?}: {st}");
        let st = forge(&gc_action, cookie, &with_csrf(&gc_fields, csrf)).await;
        assert!(refusal(st), "gc with csrf {csrf:?}: {st}");
    }
    if puller_csrf != admin_csrf {
        let st = forge(
            &delete_action,
            &admin_cookie,
            &with_csrf(&delete_fields, Some(&puller_csrf)),
        )
        .await;
        assert!(refusal(st), "another session's token: {st}");
    }
    // Anonymous: no session at all.
    let st = forge(&delete_action, "", &delete_fields).await;
    assert!(refusal(st), "anonymous: {st}");
    assert_eq!(
        api_tags(&s.w, "team/app").await,
        vec!["1", "2"],
        "nothing deleted"
    );

    // The same POST with the admin's session and token is what works: the
    // refusals above were the server's checks, not a malformed request.
    let st = forge(&delete_action, &admin_cookie, &delete_fields).await;
    assert!((200..400).contains(&st), "the admin's own POST: {st}");
    assert_eq!(api_tags(&s.w, "team/app").await.len(), 1);
    b.close().await;
}

/// The `location /wharf-ui/ { … }` block README gives for serving the page
/// under a path of its own, pointed at `wharf` instead of 127.0.0.1:5000.
fn readme_sub_path_location(wharf: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("location /wharf-ui/ {")
        .expect("README shows the sub-path nginx block");
    let end = start + readme[start..].find("\n}").expect("the block ends") + 2;
    let block = &readme[start..end];
    assert!(block.contains("http://127.0.0.1:5000/ui/"), "{block}");
    block.replace("http://127.0.0.1:5000/", &format!("{wharf}/"))
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_the_readmes_nginx_under_a_sub_path_links_cookies_and_actions_stay_under_it() {
    if !common::have_tool("nginx") {
        return;
    }
    let s = setup().await;
    let location = readme_sub_path_location(s.w.base.trim_end_matches('/'));
    let dir = s._dir.path().join("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let (_nginx, port) = tokio::task::spawn_blocking(move || {
        let servers = |p: &[u16]| {
            format!(
                "  server {{\n    listen 127.0.0.1:{};\n    {location}\n  }}",
                p[0]
            )
        };
        let ready = |p: &[u16]| {
            reqwest::blocking::get(format!("http://127.0.0.1:{}/wharf-ui/login", p[0]))
                .is_ok_and(|r| r.status() == 200)
        };
        let (n, ports) = common::nginx::start(&dir, 1, servers, ready);
        (n, ports[0])
    })
    .await
    .unwrap();
    let front = format!("http://127.0.0.1:{port}/wharf-ui/");
    let Some(mut b) = Browser::start("ui-sub-path").await else {
        return;
    };

    b.open(&format!("{front}login")).await;
    b.assert_clean("the login form under /wharf-ui/").await;
    b.type_into("login-user", ADMIN.0).await;
    b.type_into("login-password", ADMIN.1).await;
    b.submit("login-submit").await;
    let url = b
        .wait_for_url("a page past the login form", |u| !u.contains("/login"))
        .await;
    assert!(
        url.starts_with(&front),
        "the login lands under the sub-path: {url}"
    );
    b.assert_clean("the dashboard under /wharf-ui/").await;
    let session: Vec<_> = b.cookies().await;
    assert!(!session.is_empty(), "a session cookie under the sub-path");
    for c in &session {
        assert_eq!(c.path(), Some("/wharf-ui"), "{c:?}");
    }

    // Follow the links as a visitor does: repositories, then team/app.
    b.click("nav-repos").await;
    b.wait_for_url("the repository list", |u| u.ends_with("/wharf-ui/repos"))
        .await;
    b.click("repo-link").await;
    let repo_url = b
        .wait_for_url("team/app's page", |u| u.contains("/wharf-ui/repos/team"))
        .await;
    b.assert_clean("team/app under /wharf-ui/").await;
    assert_eq!(b.count("tag-row").await, 2);
    assert_eq!(b.count("pinned").await, 0);

    // An admin action through the proxy: the CSRF field, the origin check and
    // the redirect all work under the sub-path.
    b.click("pin").await;
    common::wait_for(20, "the API to list a pin", || async {
        let v: Value = admin_json(&s.w, "/_wharf/v1/pins")
            .await
            .json()
            .await
            .unwrap();
        v["pins"].as_array().is_some_and(|p| !p.is_empty())
    })
    .await;
    let after = b
        .wait_for_url("the page after the action", |u| u.starts_with(&front))
        .await;
    assert!(after.starts_with(&front), "{after}");
    b.open(&repo_url).await;
    assert!(b.count("pinned").await >= 1, "the page shows the pin");
    b.assert_clean("team/app after the pin").await;
    b.screenshot("repo-behind-nginx-sub-path").await;
    b.close().await;
}
