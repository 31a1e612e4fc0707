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
use common::Wharf;
use common::browser::{Browser, DESKTOP, PHONE};
use http_body_util::{BodyExt as _, Full};

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
<body><p data-test="para">no viewport</p></body></html>"#;

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
