//! Holes found by attacking wharf, each closed: `?ns=` walking around token
//! rules, per-client limits behind a proxy, bcrypt work bounded per client,
//! empty Basic credentials, catalog challenges, bounded metric labels, Host
//! headers, strict Content-Range, and listings that keep `ns` and stay bounded.

mod common;

use std::io::{Read, Write};

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{hub, publish};
use common::{As, Wharf, error_code, htpasswd, http, token};
use reqwest::Method;

fn auth_section(dir: &std::path::Path, extra: &str) -> String {
    let pw = dir.join("htpasswd");
    htpasswd(&pw, &[("dev", "dev-pw"), ("admin", "admin-pw")]);
    format!("[auth]\nhtpasswd = {:?}\n{extra}", pw.display().to_string())
}

/// A counter from /metrics as a whole number.
async fn metric(w: &Wharf, series: &str) -> u64 {
    common::upstreams::metric(w, series).await as u64
}

/// `dev` may pull only docker.io content. A token for `myorg/base` (which maps
/// to docker.io/myorg/base) must not open `myorg/base?ns=ghcr.io`.
#[tokio::test(flavor = "multi_thread")]
async fn ns_query_cannot_walk_around_token_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ghcr = hub(dir.path()).await;
    let img = Image::new(vec![tar_with_file("f", b"private ghcr content")]);
    publish(&ghcr, "myorg/base", "v1", &img).await;
    let extra = format!(
        "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = true\n\
         [[upstream]]\nname = \"ghcr.io\"\nurl = \"{}\"\n{}",
        ghcr.base,
        auth_section(
            dir.path(),
            "scheme = \"token\"\nanonymous_pull = false\n[[auth.rule]]\nusers = [\"dev\"]\nrepos = [\"docker.io/*\"]\nactions = [\"pull\"]\n"
        )
    );
    let m = Wharf::start_config_unchecked(common::config(&dir.path().join("m"), &extra)).await;
    let t = token(&m, Some(("dev", "dev-pw")), &["repository:myorg/base:pull"]).await;
    let dev = As::bearer(&m, t);
    let r = dev
        .req(Method::GET, "/v2/myorg/base/manifests/v1?ns=ghcr.io")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the token is for docker.io/myorg/base only"
    );
    let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        c.contains("insufficient_scope") && c.contains("repository:ghcr.io/myorg/base:pull"),
        "the challenge names the local name the request reaches: {c}"
    );
    for (d, _) in img.blobs() {
        let r = dev
            .req(Method::GET, &format!("/v2/myorg/base/blobs/{d}?ns=ghcr.io"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Asking for the scope the challenge names does not help: the rules say no.
    let t = token(
        &m,
        Some(("dev", "dev-pw")),
        &[
            "repository:myorg/base:pull",
            "repository:ghcr.io/myorg/base:pull",
        ],
    )
    .await;
    assert_eq!(
        As::bearer(&m, t)
            .status(Method::GET, "/v2/myorg/base/manifests/v1?ns=ghcr.io")
            .await,
        401
    );
    // The upstream was never asked for it.
    assert_eq!(
        metric(
            &ghcr,
            "wharf_http_requests_total{method=\"GET\",route=\"manifest\",status=\"200\"}"
        )
        .await,
        0
    );
    m.stop().await;
    ghcr.stop().await;
}

/// Behind a trusted proxy, each forwarded client has its own login budget.
#[tokio::test(flavor = "multi_thread")]
async fn forwarded_clients_have_their_own_login_budget() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{}",
        auth_section(dir.path(), "anonymous_pull = false\n")
    );
    let w = Wharf::start_config_unchecked(common::config(&dir.path().join("d"), &extra)).await;
    let login = |client: &'static str, pw: &'static str| {
        http()
            .get(w.url("/v2/"))
            .basic_auth("dev", Some(pw))
            .header("x-forwarded-for", client)
            .send()
    };
    let mut limited = false;
    for _ in 0..30 {
        let r = login("192.168.1.66", "wrong").await.unwrap();
        if r.status() == 429 {
            limited = true;
            break;
        }
        assert_eq!(r.status(), 401);
    }
    assert!(limited, "the attacker is limited");
    assert_eq!(login("192.168.1.66", "dev-pw").await.unwrap().status(), 429);
    // Another client behind the same proxy logs in at once.
    assert_eq!(login("192.168.1.77", "dev-pw").await.unwrap().status(), 200);
    // An untrusted peer's forwarding header is not believed: a client cannot
    // pick a fresh address for each guess.
    let untrusted = Wharf::start_config_unchecked(common::config(
        &dir.path().join("u"),
        &auth_section(dir.path(), "anonymous_pull = false\n"),
    ))
    .await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let r = http()
            .get(untrusted.url("/v2/"))
            .basic_auth("dev", Some("wrong"))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    untrusted.stop().await;
    w.stop().await;
}

/// A trusted proxy appends to one forwarding header and passes the other on
/// from the client untouched (nginx's `X-Forwarded-For` block passes a
/// client's `Forwarded` through): a request carrying both must not let the
/// client name a fresh address for each guess.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_cannot_pick_its_address_with_the_other_forwarding_header() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{}",
        auth_section(dir.path(), "anonymous_pull = false\n")
    );
    let w = Wharf::start_config_unchecked(common::config(&dir.path().join("d"), &extra)).await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let r = http()
            .get(w.url("/v2/"))
            .basic_auth("dev", Some("wrong"))
            // What nginx appends (the real client), and what the client sent.
            .header("x-forwarded-for", "192.168.1.66")
            .header("forwarded", format!("for=10.1.0.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "never limited: {statuses:?}");
    // The same the other way round (a proxy that writes `Forwarded`, a client
    // that adds `X-Forwarded-For`), on a fresh budget.
    let w2 = Wharf::start_config_unchecked(common::config(&dir.path().join("d2"), &extra)).await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let r = http()
            .get(w2.url("/v2/"))
            .basic_auth("dev", Some("wrong"))
            .header("x-forwarded-for", format!("10.2.0.{i}"))
            .header("forwarded", "for=192.168.1.67")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "never limited: {statuses:?}");
    // A client behind the proxy that sends neither still logs in.
    let r = http()
        .get(w.url("/v2/"))
        .basic_auth("dev", Some("dev-pw"))
        .header("x-forwarded-for", "192.168.1.70")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    w2.stop().await;
    w.stop().await;
}

/// 200 wrong passwords at once from one client run at most the burst of bcrypt
/// checks, and a login from another client is not starved meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_wrong_passwords_cost_bounded_bcrypt() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{}",
        auth_section(dir.path(), "anonymous_pull = false\n")
    );
    let w = Wharf::start_config_unchecked(common::config(&dir.path().join("d"), &extra)).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = w.url("/v2/");
        tasks.push(tokio::spawn(async move {
            http()
                .get(url)
                .basic_auth("dev", Some(format!("guess-{i}")))
                .header("x-forwarded-for", "192.168.1.66")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let good = http()
        .get(w.url("/v2/"))
        .basic_auth("admin", Some("admin-pw"))
        .header("x-forwarded-for", "192.168.1.77")
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let mut counts = std::collections::HashMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert!(counts.get(&429).copied().unwrap_or(0) >= 150, "{counts:?}");
    let runs = metric(&w, "wharf_password_checks_total").await;
    assert!(
        (1..=12).contains(&runs),
        "bcrypt ran {runs} times for 200 parallel guesses and one login"
    );
    // 50 requests with the same right password at once: one bcrypt run.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let url = w.url("/v2/");
        tasks.push(tokio::spawn(async move {
            http()
                .get(url)
                .basic_auth("dev", Some("dev-pw"))
                .header("x-forwarded-for", "192.168.1.88")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let after = metric(&w, "wharf_password_checks_total").await;
    assert_eq!(after, runs + 1, "identical credentials share one check");
    w.stop().await;
}

/// containers/image answers a challenge it has no credentials for with
/// `Authorization: Basic Og==`: an anonymous client, not a failed login.
#[tokio::test(flavor = "multi_thread")]
async fn empty_basic_credentials_are_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let extra = auth_section(dir.path(), "anonymous_pull = true\n");
    let w = Wharf::start_config_unchecked(common::config(&dir.path().join("d"), &extra)).await;
    assert_eq!(
        As::user(&w, "admin", "admin-pw")
            .push_image("pub/x", "v1", b"x")
            .await,
        201
    );
    for _ in 0..30 {
        let r = http()
            .get(w.url("/v2/pub/x/manifests/v1"))
            .header("authorization", "Basic Og==")
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(metric(&w, "wharf_password_checks_total").await, 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_challenges_anonymous_callers() {
    let dir = tempfile::tempdir().unwrap();
    // Token mode ("auto" with users and anonymous pulls).
    let rules = "anonymous_pull = \"mirrored\"\n[[auth.rule]]\nusers = [\"dev\"]\nrepos = [\"team/*\"]\nactions = [\"pull\", \"push\"]\n[[auth.rule]]\nusers = [\"admin\"]\nrepos = [\"*\"]\nactions = [\"pull\", \"push\"]\n";
    let w = Wharf::start_config_unchecked(common::config(
        &dir.path().join("d"),
        &auth_section(dir.path(), rules),
    ))
    .await;
    let admin = As::user(&w, "admin", "admin-pw");
    assert_eq!(admin.push_image("team/app", "v1", b"a").await, 201);
    assert_eq!(admin.push_image("secret/app", "v1", b"b").await, 201);
    let r = http().get(w.url("/v2/_catalog")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        c.starts_with("Bearer ") && c.contains("scope=\"registry:catalog:*\""),
        "{c}"
    );
    let list = |t: String| {
        let w = &w;
        async move {
            let r = As::bearer(w, t)
                .req(Method::GET, "/v2/_catalog")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.unwrap();
            v["repositories"].clone()
        }
    };
    let t = token(&w, Some(("dev", "dev-pw")), &["registry:catalog:*"]).await;
    assert_eq!(list(t).await, serde_json::json!(["team/app"]));
    let t = token(&w, None, &["registry:catalog:*"]).await;
    assert_eq!(
        list(t).await,
        serde_json::json!([]),
        "anonymous: mirrored only"
    );
    // A token without the catalog scope is told to fetch one.
    let t = token(&w, Some(("dev", "dev-pw")), &["repository:team/app:pull"]).await;
    let r = As::bearer(&w, t)
        .req(Method::GET, "/v2/_catalog")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_with_anonymous_pulls_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}scheme = \"basic\"\nanonymous_pull = true\n",
        auth_section(dir.path(), "")
    );
    let e = wharf::config::Config::parse(&text, std::path::Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"auto\"") && e.contains("\"token\""), "{e}");
    // The default ("auto") resolves to token with users and anonymous pulls.
    let w = Wharf::start_config_unchecked(common::config(
        &dir.path().join("d"),
        &auth_section(dir.path(), ""),
    ))
    .await;
    let r = http().get(w.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=")
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metric_labels_never_take_client_values() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    for i in 0..300 {
        let m = Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
        let r = http().request(m, w.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status(), 405);
    }
    let long = Method::from_bytes("M".repeat(2000).as_bytes()).unwrap();
    let r = http().request(long, w.url("/v2/")).send().await.unwrap();
    assert!(r.status().is_client_error());
    let text = common::metrics_text(&w).await;
    let methods: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("wharf_http_requests_total{"))
        .filter_map(|l| l.split("method=\"").nth(1)?.split('"').next())
        .collect();
    assert!(methods.len() <= 8, "{methods:?}");
    assert!(methods.contains("other"), "{methods:?}");
    w.stop().await;
}

/// Sends raw bytes and returns the status line.
fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn http11_requests_need_exactly_one_host() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let addr = w.addr;
    let lines = tokio::task::spawn_blocking(move || {
        [
            raw(addr, "GET /v2/ HTTP/1.1\r\nConnection: close\r\n\r\n"),
            raw(
                addr,
                "GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            ),
            raw(
                addr,
                "GET /v2/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            ),
            raw(addr, "GET /v2/ HTTP/1.0\r\n\r\n"),
        ]
    })
    .await
    .unwrap();
    assert!(lines[0].contains(" 400 "), "{lines:?}");
    assert!(lines[1].contains(" 400 "), "{lines:?}");
    assert!(lines[2].contains(" 200 "), "{lines:?}");
    assert!(
        lines[3].contains(" 200 "),
        "HTTP/1.0 needs no Host: {lines:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_content_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let r = http()
        .post(w.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    for bad in ["0 - 9", "bytes=0-", "-9", "0-9-9", "9-0"] {
        let r = http()
            .patch(w.url(&loc))
            .header("content-range", bad)
            .body(vec![0u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");
    }
    let r = http()
        .patch(w.url(&loc))
        .header("content-range", "0-9")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_keep_ns_and_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    for tag in ["a", "b", "c"] {
        common::push_image(&w, "team/app", tag, &[b"layer".to_vec()]).await;
    }
    // containerd puts ns= on every request: the next page must keep it.
    let r = http()
        .get(w.url("/v2/team/app/tags/list?n=1&ns=registry.lan"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("ns=registry.lan") && link.contains("last=a"),
        "{link}"
    );
    // A huge n is capped, not an error and not an unbounded page.
    let r = http()
        .get(w.url("/v2/team/app/tags/list?n=18446744073709551615"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["a", "b", "c"]));
    let r = http()
        .get(w.url("/v2/_catalog?n=99999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    w.stop().await;
}
