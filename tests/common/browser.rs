//! Headless Chromium for the web page's browser tests: Debian's `chromium`
//! driven through `chromedriver` (WebDriver, with the fantoccini client), one
//! fresh profile per session. Tests open pages, find elements by their
//! `data-test` attribute, type, click, submit, resize to a phone or a desktop,
//! save screenshots where CI keeps them, and read what went wrong in the page:
//! the browser console's SEVERE entries and the requests that failed (a 404
//! for the CSS is a bug).
//!
//! Missing chromium or chromedriver: [`Browser::start`] answers `None` after a
//! loud skip message, or panics under `WHARF_REQUIRE_INTEROP=1` (CI).
//! `WHARF_BROWSER_DEBUG=1` prints every network event the page logged.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A phone's viewport (CSS pixels), emulated as a mobile device: the page's
/// `<meta name="viewport">` is honoured as on a real phone.
pub const PHONE: (u32, u32) = (390, 844);
/// A wide screen's viewport.
pub const DESKTOP: (u32, u32) = (1440, 900);

/// How long a page, an element or chromedriver may take to appear.
const PATIENCE: Duration = Duration::from_secs(20);

/// Where screenshots go: `${CARGO_TARGET_DIR:-target}/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ui-screenshots")
}

/// One browser console entry.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, ...
    pub level: String,
    /// `console-api`, `network`, `javascript`, `security`, ...
    pub source: String,
    /// The text, with the URL and line where the browser gives them.
    pub message: String,
}

/// A request the page made that did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRequest {
    /// The URL asked for.
    pub url: String,
    /// The HTTP status (4xx/5xx), or `None` when no response came.
    pub status: Option<u16>,
    /// The network error (`net::ERR_...`), or the status text.
    pub reason: String,
}

/// A running chromedriver, killed with everything it started on drop.
struct Driver {
    child: Child,
    /// `http://127.0.0.1:PORT`
    url: String,
}

impl Driver {
    /// Starts chromedriver on a port the kernel picks (`--port=0`; it prints
    /// the port, so there is no bind-release race) and waits until `/status`
    /// says it is ready.
    fn start() -> Driver {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new("chromedriver")
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: dropping the driver kills the browsers it
            // started too, even when a test panicked before closing a session.
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let stdout = child.stdout.take().expect("chromedriver stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("chromedriver never said which port it listens on");
                }
            };
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest
                    .trim_end_matches('.')
                    .trim()
                    .parse::<u16>()
                    .expect("chromedriver's port");
            }
        };
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let status = format!("{}/status", driver.url);
        let ready = || {
            reqwest::blocking::get(&status)
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true)
        };
        // chromedriver's /status answers from a plain thread: no runtime here.
        let ok = std::thread::scope(|s| {
            s.spawn(|| {
                while !ready() {
                    if Instant::now() > deadline {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                true
            })
            .join()
            .unwrap_or(false)
        });
        assert!(ok, "chromedriver on {} never became ready", driver.url);
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group this driver leads: chromedriver and every chromium it ran.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of the chromium binary, when installed (else the skip/fail gate).
fn chromium_binary() -> Option<String> {
    if !super::have_tool("chromium") || !super::have_tool("chromedriver") {
        return None;
    }
    let out = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One headless Chromium session with its own chromedriver and profile.
pub struct Browser {
    client: Client,
    session: String,
    /// The test's name: the first part of every screenshot's file name.
    test: String,
    width: u32,
    /// requestId → URL, from the performance log, to name failed loads.
    requests: HashMap<String, String>,
    console: Vec<LogEntry>,
    failed: Vec<FailedRequest>,
    http: reqwest::Client,
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh browser at desktop size for the test `test` (its name goes into
    /// screenshot file names), or `None` when chromium is not installed and
    /// interop is not required.
    pub async fn start(test: &str) -> Option<Browser> {
        let binary = chromium_binary()?;
        let driver = tokio::task::spawn_blocking(Driver::start)
            .await
            .expect("chromedriver start");
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless=new",
                    // We run as root: Chromium refuses to start sandboxed then.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-breakpad",
                    "--hide-scrollbars",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "perfLoggingPrefs": { "enableNetwork": true, "enablePage": false },
            },
            "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a chromium session");
        let session = client
            .session_id()
            .await
            .expect("session id")
            .expect("chromedriver names its session");
        let mut b = Browser {
            client,
            session,
            test: test.to_owned(),
            width: DESKTOP.0,
            requests: HashMap::new(),
            console: Vec::new(),
            failed: Vec::new(),
            http: reqwest::Client::new(),
            driver,
            _profile: profile,
        };
        b.set_size(DESKTOP).await;
        // Chromium's own start page (its new-tab page asks the network) is
        // not the test's business: start blank, forget what came before.
        b.open("about:blank").await;
        b.collect().await;
        b.console.clear();
        b.failed.clear();
        Some(b)
    }

    /// The underlying WebDriver client, for what this harness does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A raw WebDriver command on this session (`path` after
    /// `/session/{id}/`); answers the `value`.
    pub async fn command(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.driver.url, self.session);
        let r = self.http.post(&url).json(&body).send().await.expect(&url);
        let status = r.status();
        let v: Value = r.json().await.expect("WebDriver answers JSON");
        assert!(status.is_success(), "{path}: {status} {v}");
        v["value"].clone()
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.command("goog/cdp/execute", json!({ "cmd": cmd, "params": params }))
            .await
    }

    /// Resizes the viewport to `(width, height)` CSS pixels; below 800 wide it
    /// is a phone (mobile emulation, the viewport meta tag honoured). Checks
    /// that the page then reports that width.
    pub async fn set_size(&mut self, (width, height): (u32, u32)) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": width < 800,
            }),
        )
        .await;
        self.width = width;
    }

    /// The viewport width the page lays out at (`window.innerWidth`): on a
    /// phone, a page without `<meta name="viewport">` reports 980 here.
    pub async fn layout_width(&self) -> u64 {
        self.eval("return window.innerWidth")
            .await
            .as_u64()
            .unwrap_or(0)
    }

    /// How many CSS pixels the page is wider than its viewport (0: no
    /// sideways scrolling, what a phone layout must achieve).
    pub async fn horizontal_overflow(&self) -> i64 {
        self.eval("const e = document.documentElement; return e.scrollWidth - e.clientWidth")
            .await
            .as_i64()
            .unwrap_or(0)
    }

    /// Runs a script in the page (WebDriver's, not subject to the page's CSP)
    /// and answers its return value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect(script)
    }

    /// Navigates to `url` and waits for the load to finish.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect(url);
    }

    /// The address now shown.
    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .to_string()
    }

    /// Waits until the address satisfies `pred` (a form's redirect landed).
    pub async fn wait_for_url(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let url = self.current_url().await;
            if pred(&url) {
                return url;
            }
            assert!(Instant::now() < deadline, "never reached {what}; at {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The CSS selector of a `data-test` name.
    fn selector(name: &str) -> String {
        format!("[data-test=\"{name}\"]")
    }

    /// The element with `data-test="name"`, waiting for it to appear.
    pub async fn find(&self, name: &str) -> Element {
        let css = Self::selector(name);
        let found = self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(&css))
            .await;
        match found {
            Ok(e) => e,
            Err(e) => panic!(
                "no [data-test={name:?}] on {}: {e}",
                self.current_url().await
            ),
        }
    }

    /// Every element with `data-test="name"` now on the page (none: empty).
    pub async fn find_all(&self, name: &str) -> Vec<Element> {
        let css = Self::selector(name);
        self.client
            .find_all(Locator::Css(&css))
            .await
            .expect("find_all")
    }

    /// How many elements carry `data-test="name"`.
    pub async fn count(&self, name: &str) -> usize {
        self.find_all(name).await.len()
    }

    /// The rendered text of the element `name` (trimmed).
    pub async fn text(&self, name: &str) -> String {
        let t = self.find(name).await.text().await.expect("text");
        t.trim().to_owned()
    }

    /// The rendered text of every element `name`.
    pub async fn texts(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.find_all(name).await {
            out.push(e.text().await.expect("text").trim().to_owned());
        }
        out
    }

    /// An attribute of the element `name`.
    pub async fn attr(&self, name: &str, attr: &str) -> Option<String> {
        self.find(name).await.attr(attr).await.expect("attr")
    }

    /// Types `text` into the input `name`, replacing what it held.
    pub async fn type_into(&self, name: &str, text: &str) {
        let e = self.find(name).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("send_keys");
    }

    /// Clicks the element `name` (a link, a button).
    pub async fn click(&self, name: &str) {
        self.find(name).await.click().await.expect("click");
    }

    /// Submits a form the way a user does: clicks the element `name` when it is
    /// a submit button, or the first submit button of the form `name`.
    pub async fn submit(&self, name: &str) {
        let e = self.find(name).await;
        let tag = e.tag_name().await.expect("tag").to_ascii_lowercase();
        let button = if tag == "form" {
            e.find(Locator::Css(
                "button:not([type=button]):not([type=reset]), input[type=submit]",
            ))
            .await
            .unwrap_or_else(|_| panic!("form {name:?} has no submit button"))
        } else {
            e
        };
        button.click().await.expect("submit click");
    }

    /// The form holding the element `name` (or the form `name` itself), as a
    /// script would post it: its resolved action URL and its fields (hidden
    /// ones included, the CSRF token among them).
    pub async fn form_of(&self, name: &str) -> (String, Vec<(String, String)>) {
        self.form_of_nth(name, 0).await
    }

    /// [`Browser::form_of`] for the `n`th element `name` on the page (one
    /// delete control per tag row).
    pub async fn form_of_nth(&self, name: &str, n: usize) -> (String, Vec<(String, String)>) {
        let script = format!(
            "const e = document.querySelectorAll('{}')[{n}];\
             const f = e && (e.tagName === 'FORM' ? e : e.form || e.closest('form'));\
             if (!f) return null;\
             const fields = Array.from(new FormData(f)).map(([k, v]) => [k, String(v)]);\
             if (e.name && e !== f) fields.push([e.name, e.value]);\
             return [f.action, fields];",
            Self::selector(name).replace('\'', "\\'")
        );
        let v = self.eval(&script).await;
        let action = v[0]
            .as_str()
            .unwrap_or_else(|| panic!("no form around [data-test={name:?}] #{n}"))
            .to_owned();
        let fields = v[1]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| {
                        (
                            kv[0].as_str().unwrap_or("").to_owned(),
                            kv[1].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        (action, fields)
    }

    /// The value of the first `<input name="field">` on the page (a CSRF
    /// token), if any.
    pub async fn input_value(&self, field: &str) -> Option<String> {
        let css = format!("input[name=\"{field}\"]");
        let e = self.client.find(Locator::Css(&css)).await.ok()?;
        e.prop("value").await.ok().flatten()
    }

    /// Every cookie the browser holds for the current page.
    pub async fn cookies(&self) -> Vec<fantoccini::cookies::Cookie<'static>> {
        self.client.get_all_cookies().await.expect("cookies")
    }

    /// The page's HTML as the browser holds it now.
    pub async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    /// Saves a full-page PNG as `<test>-<page>-<width>.png` under
    /// [`screenshot_dir`]; answers its path.
    pub async fn screenshot(&self, page: &str) -> PathBuf {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(f64::from(self.width));
        // Long pages are cut at 8000 px: enough to see, small enough to keep.
        let height = size["height"].as_f64().unwrap_or(900.0).clamp(1.0, 8000.0);
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
                }),
            )
            .await;
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let path = dir.join(format!(
            "{}-{}-{}.png",
            safe(&self.test),
            safe(page),
            self.width
        ));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Reads (and so empties) chromedriver's log of `kind` for this session.
    async fn log(&self, kind: &str) -> Vec<Value> {
        let v = self.command("se/log", json!({ "type": kind })).await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Pulls the console and network logs gathered since the last call.
    async fn collect(&mut self) {
        for e in self.log("browser").await {
            self.console.push(LogEntry {
                level: e["level"].as_str().unwrap_or("").to_owned(),
                source: e["source"].as_str().unwrap_or("").to_owned(),
                message: e["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        for e in self.log("performance").await {
            let Some(msg) = e["message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
            else {
                continue;
            };
            if std::env::var_os("WHARF_BROWSER_DEBUG").is_some() {
                eprintln!("perf: {msg}");
            }
            let msg = &msg["message"];
            let params = &msg["params"];
            let id = params["requestId"].as_str().unwrap_or("").to_owned();
            match msg["method"].as_str().unwrap_or("") {
                "Network.requestWillBeSent" => {
                    let url = params["request"]["url"].as_str().unwrap_or("");
                    self.requests.insert(id, url.to_owned());
                }
                "Network.responseReceived" => {
                    let resp = &params["response"];
                    let status = resp["status"].as_u64().unwrap_or(0);
                    if status >= 400 {
                        self.failed.push(FailedRequest {
                            url: resp["url"].as_str().unwrap_or("").to_owned(),
                            status: u16::try_from(status).ok(),
                            reason: resp["statusText"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                }
                "Network.loadingFailed" if params["canceled"] != true => {
                    let url = self.requests.get(&id).cloned().unwrap_or_default();
                    // A 4xx/5xx is also a loadingFailed for some resources:
                    // count it once.
                    if !self
                        .failed
                        .iter()
                        .any(|f| f.url == url && f.status.is_some())
                    {
                        self.failed.push(FailedRequest {
                            url,
                            status: None,
                            reason: params["errorText"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// Console entries at SEVERE level since the last call (uncaught errors,
    /// `console.error`, CSP violations, resources that failed to load);
    /// assert it is empty after each page.
    pub async fn console_errors(&mut self) -> Vec<LogEntry> {
        self.collect().await;
        let all = std::mem::take(&mut self.console);
        all.into_iter().filter(|e| e.level == "SEVERE").collect()
    }

    /// Requests that answered 4xx/5xx or failed on the network since the last
    /// call, the page itself included.
    pub async fn failed_requests(&mut self) -> Vec<FailedRequest> {
        self.collect().await;
        std::mem::take(&mut self.failed)
    }

    /// Asserts the page now shown had no console error and no failed request.
    pub async fn assert_clean(&mut self, page: &str) {
        let errors = self.console_errors().await;
        let failed = self.failed_requests().await;
        assert!(
            errors.is_empty() && failed.is_empty(),
            "{page} at {} px: console errors {errors:#?}, failed requests {failed:#?}",
            self.width
        );
    }

    /// Ends the session (chromedriver closes the browser); the driver dies on
    /// drop either way.
    pub async fn close(self) {
        let Browser { client, driver, .. } = self;
        let _ = client.close().await;
        drop(driver);
    }
}
