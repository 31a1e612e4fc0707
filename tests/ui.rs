//! The web page at `/ui/` over real HTTP, as a browser without JavaScript
//! uses it: a cookie jar kept by hand (so every cookie flag is checked),
//! forms posted with their CSRF field. Login (good, bad, the failed-login
//! limit), cookie flags over HTTP and HTTPS, what each page shows to whom,
//! search and paging, the admin actions and their refusals (pull users,
//! missing or wrong CSRF fields, cross-site forms), hostile input (always an
//! HTML answer, never a 500) and HTML escaping.

mod common;

use std::collections::BTreeMap;

use common::image::OCI_MANIFEST;
use common::{As, Wharf, htpasswd, http};
use reqwest::header::HeaderMap;

/// A browser: one cookie jar, no redirects followed (each is checked).
struct Browser<'a> {
    w: &'a Wharf,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
    /// Every `Set-Cookie` of the last response.
    set_cookies: Vec<String>,
}

/// What a response showed.
struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers["location"].to_str().unwrap()
    }

    /// How many elements carry `data-test="name"`.
    fn count(&self, name: &str) -> usize {
        self.body.matches(&format!("data-test=\"{name}\"")).count()
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let start = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF field")
            + "name=\"csrf\" value=\"".len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_owned()
    }

    /// Checks the page is HTML with the web page's security headers.
    fn assert_html(&self) {
        let ct = self.headers["content-type"].to_str().unwrap();
        assert!(ct.starts_with("text/html"), "{ct}");
        let csp = self.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("script-src"), "no script is allowed: {csp}");
        assert_eq!(self.headers["x-content-type-options"], "nosniff");
        assert_eq!(self.headers["referrer-policy"], "same-origin");
        assert_eq!(self.headers["cache-control"], "no-store");
        assert!(self.body.starts_with("<!DOCTYPE html>"), "{}", self.body);
        assert!(!self.body.contains("<script"), "no script on any page");
    }
}

impl<'a> Browser<'a> {
    fn new(w: &'a Wharf) -> Self {
        Browser::with_client(w, http())
    }

    fn with_client(w: &'a Wharf, client: reqwest::Client) -> Self {
        Browser {
            w,
            client,
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        self.set_cookies = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for c in &self.set_cookies {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let body = r.text().await.unwrap();
        assert_ne!(status, 500, "never a 500: {body}");
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(self.w.url(path));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let req = self.client.post(self.w.url(path)).form(fields);
        self.send(req).await
    }

    /// Posts with extra headers (Origin, Sec-Fetch-Site).
    async fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self.client.post(self.w.url(path)).form(fields);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    /// The login form, then the POST; returns the POST's answer.
    async fn login(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, 200);
        let csrf = form.csrf();
        self.post(
            "/ui/login",
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await
    }

    /// The `Set-Cookie` of `name` in the last response.
    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }
}

/// A wharf with users alice (admin), bob (pull only on team/*) and carol
/// (every action, not an admin), with `extra_auth` in `[auth]`.
async fn with_users(dir: &std::path::Path, extra_auth: &str, extra: &str) -> Wharf {
    let pw = dir.join("htpasswd");
    htpasswd(
        &pw,
        &[
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("carol", "carol-pw"),
        ],
    );
    let cfg = format!(
        "[auth]\nhtpasswd = {:?}\nadmins = [\"alice\"]\n{extra_auth}\n\
         [[auth.rule]]\nusers = [\"alice\", \"carol\"]\nrepos = [\"*\"]\nactions = [\"pull\", \"push\", \"delete\"]\n\
         [[auth.rule]]\nusers = [\"bob\"]\nrepos = [\"team/*\"]\nactions = [\"pull\"]\n{extra}",
        pw.display().to_string()
    );
    Wharf::start_config_unchecked(common::config(&dir.join("data"), &cfg)).await
}

/// Tags of `repo` as the registry API lists them (as alice).
async fn tags_list(w: &Wharf, repo: &str) -> Vec<String> {
    let r = As::user(w, "alice", "alice-pw")
        .req(reqwest::Method::GET, &format!("/v2/{repo}/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_cookie_flags_logout_and_the_failed_login_limit() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_users(dir.path(), "anonymous_pull = false", "").await;
    let mut b = Browser::new(&w);
    // Anonymous pulls are off: pages send the visitor to the login form.
    let p = b.get("/ui/repos").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), "login");
    let p = b.get("/ui/repos/team%2Fapp").await;
    assert_eq!((p.status, p.location()), (303, "../login"));
    let form = b.get("/ui/login").await;
    form.assert_html();
    assert_eq!(form.count("login-user"), 1);
    assert_eq!(form.count("login-password"), 1);
    assert_eq!(form.count("login-submit"), 1);
    assert!(
        form.body.contains("action=\"login\""),
        "relative form action"
    );
    let anon = b.cookies["wharf_session"].clone();
    let c = b.set_cookie("wharf_session").map(str::to_owned);
    assert!(
        c.is_none(),
        "the session was issued on the first page already"
    );
    // Bad password: the form again, 401, an error line, the session unchanged.
    let csrf = form.csrf();
    let p = b
        .post(
            "/ui/login",
            &[("csrf", &csrf), ("user", "alice"), ("password", "wrong")],
        )
        .await;
    assert_eq!(p.status, 401);
    assert_eq!(p.count("error"), 1);
    assert_eq!(b.cookies["wharf_session"], anon);
    // Good password: a new session (never the login form's), flags as asked.
    let p = b.login("alice", "alice-pw").await;
    assert_eq!((p.status, p.location()), (303, "./"));
    let c = b.set_cookie("wharf_session").unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(c.contains(flag), "{flag}: {c}");
    }
    assert!(!c.contains("Secure"), "plain HTTP: no Secure flag: {c}");
    assert_ne!(b.cookies["wharf_session"], anon);
    let p = b.get("/ui/").await;
    p.assert_html();
    assert_eq!(p.status, 200);
    assert!(p.body.contains("data-test=\"user\">alice<"), "{}", p.body);
    // The session is not a registry token.
    let session = b.cookies["wharf_session"].clone();
    let r = http()
        .get(w.url("/v2/"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Logout clears the cookie; the pages want a login again.
    let csrf = p.csrf();
    let p = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert!(b.set_cookie("wharf_session").unwrap().contains("Max-Age=0"));
    assert!(!b.cookies.contains_key("wharf_session"));
    assert_eq!(b.get("/ui/repos").await.status, 303);
    // Failed logins from one address are limited like the API's: 429, HTML.
    let mut limited = None;
    for _ in 0..40 {
        let p = b.login("alice", "guess").await;
        if p.status == 429 {
            limited = Some(p);
            break;
        }
        assert_eq!(p.status, 401);
    }
    let p = limited.expect("the failed-login limit applies to the form");
    p.assert_html();
    assert!(p.headers.contains_key("retry-after"));
    assert_eq!(p.count("error"), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_cookie_is_secure_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::certs::pki("wharf ui CA");
    let (cert, key) = p.write(dir.path());
    let extra = format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let w = Wharf::launch(common::config(&dir.path().join("data"), &extra)).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut b = Browser::with_client(&w, client);
    let probe = b.client.clone();
    let url = w.url("/healthz");
    common::wait_for(10, "the HTTPS listener", || {
        let (c, u) = (probe.clone(), url.clone());
        async move { c.get(u).send().await.is_ok() }
    })
    .await;
    let form = b.get("/ui/login").await;
    assert_eq!(form.status, 200);
    let c = b.set_cookie("wharf_session").unwrap();
    assert!(c.contains("Secure") && c.contains("HttpOnly"), "{c}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_show_the_data_escaped_and_only_what_the_visitor_may_pull() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_users(dir.path(), "anonymous_pull = false", "").await;
    let alice = As::user(&w, "alice", "alice-pw");
    assert_eq!(alice.push_image("team/app", "1.0", b"one").await, 201);
    assert_eq!(alice.push_image("team/app", "latest", b"two").await, 201);
    assert_eq!(alice.push_image("secret/db", "1", b"three").await, 201);
    // An artifact whose annotation holds markup, referring to team/app:1.0.
    let m = http()
        .get(w.url("/v2/team/app/manifests/1.0"))
        .basic_auth("alice", Some("alice-pw"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let subject_digest = m.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let subject_size = m.bytes().await.unwrap().len();
    let empty = b"{}".to_vec();
    assert_eq!(alice.push_blob("team/app", &empty).await, 201);
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": common::digest(&empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": common::digest(&empty), "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size},
        "annotations": {"org.example.note": "<script>alert(1)</script>"}
    }))
    .unwrap();
    let artifact_digest = common::digest(&artifact);
    let r = alice
        .req(
            reqwest::Method::PUT,
            &format!("/v2/team/app/manifests/{artifact_digest}"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(artifact)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // bob may pull team/* only: he sees team/app, never secret/db.
    let mut bob = Browser::new(&w);
    assert_eq!(bob.login("bob", "bob-pw").await.status, 303);
    let list = bob.get("/ui/repos").await;
    list.assert_html();
    assert_eq!(list.count("repo-row"), 1, "{}", list.body);
    assert!(
        list.body.contains("href=\"repos/team/app\""),
        "relative links"
    );
    assert!(!list.body.contains("secret/db"));
    let p = bob.get("/ui/repos/secret/db").await;
    p.assert_html();
    assert_eq!(p.status, 404, "its existence is not told");
    let repo = bob.get("/ui/repos/team/app").await;
    repo.assert_html();
    assert_eq!(repo.count("tag-row"), 2, "{}", repo.body);
    assert!(repo.body.contains("data-tag=\"1.0\"") && repo.body.contains("data-tag=\"latest\""));
    assert!(
        repo.body.contains("linux/amd64"),
        "platforms: {}",
        repo.body
    );
    assert!(repo.body.contains("href=\"../../repos/team/app/-/1.0\""));
    assert_eq!(
        repo.count("delete-tag") + repo.count("pin"),
        0,
        "no admin controls"
    );

    // The image page: layers, config, referrers, pull lines.
    let image = bob.get("/ui/repos/team/app/-/1.0").await;
    image.assert_html();
    assert_eq!(image.status, 200);
    assert_eq!(image.count("layer-row"), 1, "{}", image.body);
    assert!(image.body.contains("data-test=\"config\""));
    assert!(image.body.contains(&subject_digest));
    assert_eq!(image.count("referrer-row"), 1);
    assert!(image.body.contains("application/vnd.example.sbom"));
    let host = w.addr.to_string();
    assert!(
        image
            .body
            .contains(&format!("docker pull {host}/team/app:1.0")),
        "{}",
        image.body
    );
    assert!(
        image
            .body
            .contains(&format!("docker://{host}/team/app@{subject_digest}"))
    );
    assert!(image.body.contains("crane pull"));
    // The artifact's page: its annotation shows as text, never as markup.
    let art = bob
        .get(&format!(
            "/ui/repos/team/app/-/{}",
            artifact_digest.replace(':', "%3A")
        ))
        .await;
    art.assert_html();
    assert_eq!(art.status, 200);
    assert!(
        art.body.contains("&#60;script&#62;alert(1)"),
        "{}",
        art.body
    );

    // alice (admin) gets the controls; the dashboard shows its numbers.
    let mut alice_b = Browser::new(&w);
    assert_eq!(alice_b.login("alice", "alice-pw").await.status, 303);
    let repo = alice_b.get("/ui/repos/team/app").await;
    assert_eq!(repo.count("delete-tag"), 2);
    assert_eq!(repo.count("pin"), 2);
    let list = alice_b.get("/ui/repos").await;
    assert_eq!(list.count("repo-row"), 2);
    let dash = alice_b.get("/ui/").await;
    dash.assert_html();
    for t in [
        "hit-ratio",
        "bytes-local",
        "bytes-upstream",
        "storage-gauge",
        "gc",
        "sync",
    ] {
        assert_eq!(dash.count(t), 1, "{t}: {}", dash.body);
    }
    assert!(dash.count("worker-row") >= 3, "{}", dash.body);
    assert_eq!(dash.count("upstream-row"), 1);
    let bob_dash = bob.get("/ui/").await;
    assert_eq!(bob_dash.count("gc") + bob_dash.count("sync"), 0);
    // The stylesheet is served, and is the only style source.
    let css = http()
        .get(w.url("/ui/static/wharf.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_visitors_see_what_anonymous_pull_grants() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_users(dir.path(), "anonymous_pull = true", "").await;
    let alice = As::user(&w, "alice", "alice-pw");
    assert_eq!(alice.push_image("team/app", "1", b"a").await, 201);
    let mut anon = Browser::new(&w);
    let list = anon.get("/ui/repos").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.count("repo-row"), 1);
    assert_eq!(list.count("login-link"), 1);
    let repo = anon.get("/ui/repos/team/app").await;
    assert_eq!(repo.count("tag-row"), 1);
    assert_eq!(repo.count("delete-tag"), 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn search_and_paging() {
    let dir = tempfile::tempdir().unwrap();
    // No users: a loopback client pushes and sees everything.
    let w = Wharf::start(dir.path()).await;
    for i in 0..120 {
        let (_, _) =
            common::push_image(&w, &format!("proj/app-{i:03}"), "1", &[vec![i as u8]]).await;
    }
    let mut b = Browser::new(&w);
    let p1 = b.get("/ui/repos").await;
    assert_eq!(p1.count("repo-row"), 50);
    assert!(p1.body.contains("120 repositories"), "{}", p1.body);
    assert!(p1.body.contains("proj/app-000") && !p1.body.contains("proj/app-050"));
    assert!(p1.body.contains("href=\"repos?page=2\" rel=\"next\""));
    let p3 = b.get("/ui/repos?page=3").await;
    assert_eq!(p3.count("repo-row"), 20);
    assert_eq!(p3.count("next-page"), 0);
    assert!(p3.body.contains("proj/app-119"));
    let s = b.get("/ui/repos?q=app-11").await;
    assert_eq!(s.count("repo-row"), 10, "{}", s.body);
    let none = b.get("/ui/repos?q=nothing-like-this").await;
    assert_eq!(none.count("repo-row"), 0);
    assert_eq!(none.count("empty"), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_with_many_tags_is_paged_and_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let (manifest, _) = common::push_image(&w, "big/app", "v000", &[vec![7; 100]]).await;
    for i in 1..250 {
        let r =
            common::put_manifest(&w, "big/app", &format!("v{i:03}"), OCI_MANIFEST, &manifest).await;
        assert_eq!(r.status(), 201);
    }
    let mut b = Browser::new(&w);
    let p1 = b.get("/ui/repos/big/app").await;
    p1.assert_html();
    assert_eq!(p1.count("tag-row"), 100);
    assert!(p1.body.contains("250 tags"), "{}", p1.body);
    assert!(p1.body.contains("data-tag=\"v099\"") && !p1.body.contains("data-tag=\"v100\""));
    assert!(
        p1.body
            .contains("href=\"../../repos/big/app?page=2\" rel=\"next\""),
        "{}",
        p1.body
    );
    assert!(
        p1.body.contains("action=\"../../repos/big/app\""),
        "the search form stays on the page"
    );
    let p3 = b.get("/ui/repos/big/app?page=3").await;
    assert_eq!(p3.count("tag-row"), 50);
    assert_eq!(p3.count("next-page"), 0);
    assert!(p3.body.contains("data-tag=\"v249\""));
    assert!(
        p3.body
            .contains("href=\"../../repos/big/app?page=2\" rel=\"prev\"")
    );
    // The name written as one encoded segment is read too.
    let s = b.get("/ui/repos/big%2Fapp?q=v24").await;
    assert_eq!(s.count("tag-row"), 10, "{}", s.body);
    assert!(s.body.contains("10 tags matching"), "{}", s.body);
    let none = b.get("/ui/repos/big/app?q=zzz").await;
    assert_eq!((none.count("tag-row"), none.count("empty")), (0, 1));
    let far = b.get("/ui/repos/big/app?page=40").await;
    assert_eq!((far.status, far.count("tag-row")), (200, 0));
    for bad in ["page=0", "page=x", "q=%01"] {
        let r = b.get(&format!("/ui/repos/big/app?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        r.assert_html();
    }

    // 105 artifacts refer to the image: its page lists 100 and counts the rest.
    let subject = common::digest(&manifest);
    let empty = b"{}".to_vec();
    common::push_blob(&w, "big/app", &empty).await;
    for i in 0..105 {
        let artifact = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": common::digest(&empty), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": common::digest(&empty), "size": 2}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": manifest.len()},
            "annotations": {"n": i.to_string()}
        }))
        .unwrap();
        let d = common::digest(&artifact);
        let r = common::put_manifest(&w, "big/app", &d, OCI_MANIFEST, &artifact).await;
        assert_eq!(r.status(), 201);
    }
    let image = b.get("/ui/repos/big/app/-/v000").await;
    assert_eq!(image.status, 200);
    assert_eq!(image.count("referrer-row"), 100);
    assert!(
        image.body.contains("The first 100 of 105"),
        "{}",
        image.body
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_actions_and_their_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_users(dir.path(), "anonymous_pull = false", "").await;
    let alice = As::user(&w, "alice", "alice-pw");
    for tag in ["1", "2", "3"] {
        assert_eq!(alice.push_image("team/app", tag, tag.as_bytes()).await, 201);
    }
    let fields = |csrf: &str, tag: &'static str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("repo", "team/app".to_owned()),
            ("reference", tag.to_owned()),
        ]
    };

    // bob (pull only) and carol (every action, not an admin): 403 even with
    // a valid session and CSRF field; the tag stays.
    for (user, pw) in [("bob", "bob-pw"), ("carol", "carol-pw")] {
        let mut b = Browser::new(&w);
        assert_eq!(b.login(user, pw).await.status, 303);
        let page = b.get("/ui/repos/team/app").await;
        assert_eq!(page.count("delete-tag"), 0, "{user} sees no admin control");
        let csrf = page.csrf();
        let f = fields(&csrf, "1");
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let p = b.post("/ui/actions/delete-tag", &refs).await;
        p.assert_html();
        assert_eq!(p.status, 403, "{user}");
        let p = b.post("/ui/actions/gc", &[("csrf", &csrf)]).await;
        assert_eq!(p.status, 403, "{user}");
    }
    assert_eq!(tags_list(&w, "team/app").await, ["1", "2", "3"]);

    let mut b = Browser::new(&w);
    assert_eq!(b.login("alice", "alice-pw").await.status, 303);
    let page = b.get("/ui/repos/team/app").await;
    let csrf = page.csrf();
    // Without, or with a wrong, CSRF field: refused, nothing deleted.
    let p = b
        .post(
            "/ui/actions/delete-tag",
            &[("repo", "team/app"), ("reference", "1")],
        )
        .await;
    assert_eq!(p.status, 403);
    p.assert_html();
    let p = b
        .post(
            "/ui/actions/delete-tag",
            &[
                ("csrf", "AAAAAAAA"),
                ("repo", "team/app"),
                ("reference", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, 403);
    // Another browser's (another session's) CSRF field is wrong here too.
    let mut other = Browser::new(&w);
    let other_csrf = other.get("/ui/login").await.csrf();
    let p = b
        .post(
            "/ui/actions/delete-tag",
            &[
                ("csrf", &other_csrf),
                ("repo", "team/app"),
                ("reference", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, 403);
    // A cross-site form, even with the right field: refused.
    let f = [
        ("csrf", csrf.as_str()),
        ("repo", "team/app"),
        ("reference", "1"),
    ];
    let p = b
        .post_with(
            "/ui/actions/delete-tag",
            &f,
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(p.status, 403);
    let p = b
        .post_with(
            "/ui/actions/delete-tag",
            &f,
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(p.status, 403);
    assert_eq!(tags_list(&w, "team/app").await, ["1", "2", "3"]);

    // The admin deletes a tag: 303 back to the repository, the API no longer
    // lists it, the page says what happened once.
    let origin = format!("http://{}", w.addr);
    let p = b
        .post_with(
            "/ui/actions/delete-tag",
            &f,
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "../repos/team/app"));
    assert_eq!(tags_list(&w, "team/app").await, ["2", "3"]);
    let page = b.get("/ui/repos/team/app").await;
    assert_eq!(page.count("flash"), 1);
    assert!(page.body.contains("Deleted team/app:1"), "{}", page.body);
    assert_eq!(page.count("tag-row"), 2);
    let page = b.get("/ui/repos/team/app").await;
    assert_eq!(page.count("flash"), 0, "shown once");

    // Pin, then a pinned tag cannot be deleted; unpin.
    let f = [
        ("csrf", csrf.as_str()),
        ("repo", "team/app"),
        ("reference", "2"),
    ];
    let p = b.post("/ui/actions/pin", &f).await;
    assert_eq!(p.status, 303);
    let page = b.get("/ui/repos/team%2Fapp").await;
    assert!(page.body.contains("data-test=\"unpin\""));
    let pins: serde_json::Value = As::user(&w, "alice", "alice-pw")
        .req(reqwest::Method::GET, "/_wharf/v1/pins")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pins["pins"].as_array().unwrap().len(), 1, "{pins}");
    let p = b.post("/ui/actions/delete-tag", &f).await;
    assert_eq!(p.status, 409, "{}", p.body);
    p.assert_html();
    assert_eq!(b.post("/ui/actions/unpin", &f).await.status, 303);
    let pins: serde_json::Value = As::user(&w, "alice", "alice-pw")
        .req(reqwest::Method::GET, "/_wharf/v1/pins")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pins["pins"].as_array().unwrap().len(), 0);

    // gc and sync now.
    let p = b.post("/ui/actions/gc", &[("csrf", &csrf)]).await;
    assert_eq!((p.status, p.location()), (303, "../"));
    let dash = b.get("/ui/").await;
    assert!(
        dash.body.contains("Garbage collection removed"),
        "{}",
        dash.body
    );
    let p = b.post("/ui/actions/sync", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    let dash = b.get("/ui/").await;
    assert!(dash.body.contains("Sync ran 0 rules"), "{}", dash.body);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_gets_an_html_error_never_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    common::push_image(&w, "team/app", "1", &[b"x".to_vec()]).await;
    let mut b = Browser::new(&w);
    let huge = "a".repeat(10_000);
    for (path, want) in [
        (format!("/ui/repos?q={huge}"), 400),
        ("/ui/repos?page=-1".to_owned(), 400),
        ("/ui/repos?page=0".to_owned(), 400),
        ("/ui/repos?page=99999999999999999999999".to_owned(), 400),
        ("/ui/repos?q=%00".to_owned(), 400),
        ("/ui/repos/..%2F..%2Fetc".to_owned(), 400),
        ("/ui/repos/team%2F..%2Fapp".to_owned(), 400),
        ("/ui/repos/team%252Fapp".to_owned(), 400),
        ("/ui/repos/Team%2FApp".to_owned(), 400),
        ("/ui/repos/a%00b".to_owned(), 400),
        ("/ui/repos/%ff%fe".to_owned(), 400),
        ("/ui/repos/team/app/-/%3Cscript%3E".to_owned(), 400),
        ("/ui/repos/team/app/-/sha256%3Azz".to_owned(), 400),
        ("/ui/repos/team/app/-/nope".to_owned(), 404),
        ("/ui/repos/no%2Fsuch".to_owned(), 404),
        ("/ui/repos/team/app/-/1/extra".to_owned(), 404),
        ("/ui/repos/team//app".to_owned(), 400),
        ("/ui/repos/team/app/".to_owned(), 400),
        ("/ui/repos/-/1".to_owned(), 400),
        ("/ui/repos/team/app/-".to_owned(), 404),
        ("/ui/whatever".to_owned(), 404),
        ("/ui/actions/gc".to_owned(), 405),
    ] {
        let p = b.get(&path).await;
        assert_eq!(p.status, want, "{}", &path[..path.len().min(80)]);
        p.assert_html();
        assert_eq!(p.count("error"), 1, "{path}");
    }
    // Dot segments, sent as written (an HTTP client library would resolve them).
    for path in [
        "/ui/repos/..",
        "/ui/repos/%2e%2e",
        "/ui/repos/%2E%2E/latest",
        "/ui/repos/./x",
    ] {
        let addr = w.addr;
        let raw = tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut s = common::raw_http::connect(addr);
            s.write_all(common::raw_http::get_request(path, None).as_bytes())
                .unwrap();
            common::raw_http::read_response(&mut s, &mut Vec::new(), false)
        })
        .await
        .unwrap();
        assert!(matches!(raw.status, 400 | 404), "{path}: {}", raw.status);
        assert!(
            raw.header("content-type").unwrap().starts_with("text/html"),
            "{path}"
        );
    }
    // Markup in the search box comes back as text.
    let p = b
        .get("/ui/repos?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("&#60;script&#62;alert(1)"), "{}", p.body);
    // /ui goes to /ui/; an odd page number past the end is an empty page.
    let p = b.get("/ui").await;
    assert_eq!((p.status, p.location()), (303, "ui/"));
    assert_eq!(b.get("/ui/repos?page=7").await.status, 200);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_page_is_404() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_with(dir.path(), "[ui]\nenabled = false\n").await;
    for path in ["/ui/", "/ui/login", "/ui/static/wharf.css", "/ui/repos"] {
        let r = http().get(w.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_users_a_loopback_visitor_is_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    common::push_image(&w, "bun", "latest", &[b"bun".to_vec()]).await;
    let mut b = Browser::new(&w);
    let page = b.get("/ui/repos/bun").await;
    assert_eq!(page.count("delete-tag"), 1, "{}", page.body);
    assert_eq!(page.count("login-link"), 0, "no users: nothing to log into");
    let csrf = page.csrf();
    let p = b
        .post(
            "/ui/actions/delete-tag",
            &[("csrf", &csrf), ("repo", "bun"), ("reference", "latest")],
        )
        .await;
    assert_eq!(p.status, 303);
    // A POST with no session at all (a fresh browser) is refused.
    let mut fresh = Browser::new(&w);
    let p = fresh.post("/ui/actions/gc", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 403);
    w.stop().await;
}
