//! Who may do what, over real HTTP: htpasswd users with Basic auth and with
//! Docker-Hub-style tokens, `[[auth.rule]]` on every route family, anonymous
//! access, admin routes, and brute-force slowing.

mod common;

use common::{As, Wharf, error_code, htpasswd, http};
use reqwest::Method;

const RULES: &str = r#"
[[auth.rule]]
users = ["ci"]
repos = ["team/locked"]
actions = []
[[auth.rule]]
users = ["ci"]
repos = ["team/*"]
actions = ["pull", "push"]
[[auth.rule]]
users = ["alice"]
repos = ["*"]
actions = ["pull", "push", "delete"]
[[auth.rule]]
users = ["*"]
repos = ["public/*"]
actions = ["pull"]
"#;

async fn start(dir: &std::path::Path, scheme: &str, anonymous_pull: &str) -> Wharf {
    let pw = dir.join("htpasswd");
    htpasswd(
        &pw,
        &[("alice", "alice-pw"), ("ci", "ci-pw"), ("bob", "bob-pw")],
    );
    let extra = format!(
        "[auth]\nhtpasswd = {:?}\nscheme = \"{scheme}\"\nanonymous_pull = {anonymous_pull}\nadmins = [\"alice\"]\n{RULES}",
        pw.display().to_string()
    );
    let cfg = common::config(&dir.join("data"), &extra);
    Wharf::start_config_unchecked(cfg).await
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_rules_on_every_route_family() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(dir.path(), "basic", "false").await;
    let (anon, alice, ci, bob) = (
        As::anon(&w),
        As::user(&w, "alice", "alice-pw"),
        As::user(&w, "ci", "ci-pw"),
        As::user(&w, "bob", "bob-pw"),
    );
    // /v2/ tells clients to log in (docker login depends on this).
    let r = anon.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"wharf\"");
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    assert_eq!(alice.status(Method::GET, "/v2/").await, 200);
    assert_eq!(
        As::user(&w, "alice", "wrong")
            .status(Method::GET, "/v2/")
            .await,
        401
    );
    assert_eq!(
        As::user(&w, "nobody", "x")
            .status(Method::GET, "/v2/")
            .await,
        401
    );

    // Pushes: only where a rule grants push.
    assert_eq!(ci.push_image("team/app", "v1", b"team").await, 201);
    assert_eq!(ci.push_image("other/app", "v1", b"other").await, 403);
    assert_eq!(
        ci.push_image("team/locked", "v1", b"x").await,
        403,
        "[] denies"
    );
    assert_eq!(alice.push_image("public/tool", "v1", b"public").await, 201);
    assert_eq!(alice.push_image("secret/x", "v1", b"secret").await, 201);
    assert_eq!(bob.push_image("public/tool", "v2", b"no").await, 403);
    assert_eq!(anon.push_image("public/tool", "v3", b"no").await, 401);

    // Pulls: manifests, blobs, tags, referrers.
    for path in ["/v2/public/tool/manifests/v1", "/v2/public/tool/tags/list"] {
        assert_eq!(bob.status(Method::GET, path).await, 200, "{path}");
        assert_eq!(anon.status(Method::GET, path).await, 401, "{path}");
    }
    for path in [
        "/v2/team/app/manifests/v1",
        "/v2/team/app/tags/list",
        &format!("/v2/team/app/referrers/{}", common::digest(b"x")),
        &format!("/v2/team/app/blobs/{}", common::digest(b"x")),
    ] {
        assert_eq!(bob.status(Method::GET, path).await, 403, "{path}");
        assert_eq!(
            ci.status(Method::GET, path).await / 100,
            if path.contains("blobs") { 4 } else { 2 },
            "{path}"
        );
    }
    let r = bob
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DENIED");

    // Deletes: only alice.
    assert_eq!(
        ci.status(Method::DELETE, "/v2/team/app/manifests/v1").await,
        403
    );
    assert_eq!(
        alice
            .status(Method::DELETE, "/v2/public/tool/manifests/v1")
            .await,
        202
    );

    // Catalog shows only what the caller may pull.
    let list = |a: &As<'_>| {
        let r = a.req(Method::GET, "/v2/_catalog");
        async move {
            let v: serde_json::Value = r.send().await.unwrap().json().await.unwrap();
            v["repositories"].clone()
        }
    };
    assert_eq!(list(&bob).await, serde_json::json!(["public/tool"]));
    assert_eq!(
        list(&ci).await,
        serde_json::json!(["public/tool", "team/app"])
    );
    assert_eq!(
        list(&alice).await,
        serde_json::json!(["public/tool", "secret/x", "team/app"])
    );
    // Anonymous callers are challenged, so clients learn to log in to see their list.
    let r = anon.req(Method::GET, "/v2/_catalog").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"wharf\"");

    // Mount needs pull on the source: ci cannot lift a blob out of secret/x.
    let secret_layer = common::image::tar_with_file("f", b"secret");
    let d = common::digest(&secret_layer);
    let r = ci
        .req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?mount={d}&from=secret/x"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "falls back to an upload");
    assert_eq!(
        ci.status(Method::HEAD, &format!("/v2/team/app/blobs/{d}"))
            .await,
        404
    );
    let r = alice
        .req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?mount={d}&from=secret/x"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Admin API: admins only.
    assert_eq!(alice.status(Method::GET, "/_wharf/v1/usage").await, 200);
    assert_eq!(ci.status(Method::GET, "/_wharf/v1/usage").await, 403);
    assert_eq!(anon.status(Method::GET, "/_wharf/v1/usage").await, 401);
    let v: serde_json::Value = alice
        .req(Method::GET, "/_wharf/v1/repos")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "team/app")
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_pull_with_users() {
    let dir = tempfile::tempdir().unwrap();
    // The default scheme ("auto") is token mode here: users and anonymous pulls.
    let w = start(dir.path(), "auto", "true").await;
    let alice = As::user(&w, "alice", "alice-pw");
    assert_eq!(alice.push_image("team/app", "v1", b"x").await, 201);
    let anon = As::anon(&w);
    assert_eq!(
        anon.status(Method::GET, "/v2/team/app/manifests/v1").await,
        200
    );
    assert_eq!(anon.push_image("team/app", "v2", b"y").await, 401);
    // With users configured, loopback is not special.
    assert_eq!(
        anon.status(Method::DELETE, "/v2/team/app/manifests/v1")
            .await,
        401
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_flow_grants_only_what_rules_allow() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(dir.path(), "token", "false").await;
    let r = http().get(w.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"{}/token\",service=\"wharf\"", w.base)
    );
    // Behind a TLS-terminating proxy, the realm follows the client's scheme and host.
    let r = http()
        .get(w.url("/v2/"))
        .header("host", "registry.lan")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        c.starts_with("Bearer realm=\"https://registry.lan/token\""),
        "{c}"
    );

    // A push without a token is told exactly which scope to fetch.
    let r = http()
        .post(w.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"repository:team/app:pull,push\"")
    );

    let t = common::token(
        &w,
        Some(("ci", "ci-pw")),
        &["repository:team/app:pull,push"],
    )
    .await;
    let ci = As::bearer(&w, t.clone());
    assert_eq!(ci.status(Method::GET, "/v2/").await, 200);
    assert_eq!(ci.push_image("team/app", "v1", b"x").await, 201);
    assert_eq!(
        ci.status(Method::GET, "/v2/team/app/manifests/v1").await,
        200
    );
    // A token for team/app is no key to team/other, even though ci may push there.
    let r = ci
        .req(Method::GET, "/v2/team/other/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        c.contains("error=\"insufficient_scope\"") && c.contains("repository:team/other:pull"),
        "{c}"
    );
    // Nor does it grant delete.
    assert_eq!(
        ci.status(Method::DELETE, "/v2/team/app/manifests/v1").await,
        401
    );

    // Asking for more than the rules allow yields a token without it.
    let t = common::token(
        &w,
        Some(("bob", "bob-pw")),
        &["repository:team/app:pull,push"],
    )
    .await;
    let bob = As::bearer(&w, t);
    assert_eq!(
        bob.status(Method::GET, "/v2/team/app/manifests/v1").await,
        401
    );
    assert_eq!(bob.push_blob("team/app", b"z").await, 401);

    // Wrong password: no token at all.
    assert_eq!(
        common::token_response(&w, Some(("ci", "nope")), &["repository:team/app:pull"])
            .await
            .status(),
        401
    );
    // Anonymous token with anonymous_pull = false grants nothing.
    let t = common::token(&w, None, &["repository:team/app:pull"]).await;
    assert_eq!(
        As::bearer(&w, t)
            .status(Method::GET, "/v2/team/app/manifests/v1")
            .await,
        401
    );

    // Tampered and foreign tokens are refused.
    let (payload, sig) = ci.token.as_ref().unwrap().split_once('.').unwrap();
    let mut bytes = payload.as_bytes().to_vec();
    bytes[5] ^= 1;
    let tampered = format!("{}.{sig}", String::from_utf8(bytes).unwrap());
    assert_eq!(
        As::bearer(&w, tampered)
            .status(Method::GET, "/v2/team/app/manifests/v1")
            .await,
        401
    );
    let dir2 = tempfile::tempdir().unwrap();
    let other = start(dir2.path(), "token", "false").await;
    let foreign = common::token(&other, Some(("ci", "ci-pw")), &["repository:team/app:pull"]).await;
    assert_eq!(
        As::bearer(&w, foreign)
            .status(Method::GET, "/v2/team/app/manifests/v1")
            .await,
        401
    );
    other.stop().await;

    // containerd's form POST.
    let r = http()
        .post(w.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=ci&password=ci-pw&service=wharf&scope=repository%3Ateam%2Fapp%3Apull&client_id=containerd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let t = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        As::bearer(&w, t)
            .status(Method::GET, "/v2/team/app/manifests/v1")
            .await,
        200
    );

    // skopeo's mount: a pull-only token is challenged for the full scope, source included.
    let t = common::token(&w, Some(("ci", "ci-pw")), &["repository:team/app:pull"]).await;
    let d = common::digest(b"whatever");
    let r = As::bearer(&w, t)
        .req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?mount={d}&from=public/tool"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        c.contains("scope=\"repository:team/app:pull,push repository:public/tool:pull\""),
        "{c}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn brute_force_is_slowed_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(dir.path(), "basic", "false").await;
    let wrong = As::user(&w, "alice", "guess");
    let mut limited = None;
    for i in 0..40 {
        let r = wrong.req(Method::GET, "/v2/").send().await.unwrap();
        if r.status() == 429 {
            limited = Some((
                i,
                r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            ));
            assert_eq!(error_code(r).await, "TOOMANYREQUESTS");
            break;
        }
        assert_eq!(r.status(), 401);
    }
    let (after, retry) = limited.expect("failed logins were never limited");
    assert!(after >= 10, "limited after {after} failures: too eager");
    assert!(retry >= 1);
    // While limited, even the right password waits (no more bcrypt work for this address).
    assert_eq!(
        As::user(&w, "alice", "alice-pw")
            .status(Method::GET, "/v2/")
            .await,
        429
    );
    let m = http()
        .get(w.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("wharf_auth_refusals_total{reason=\"rate_limited\"} 2"),
        "{m}"
    );
    let unauth = format!("wharf_auth_refusals_total{{reason=\"unauthenticated\"}} {after}");
    assert!(m.contains(&unauth), "{m}");
    w.stop().await;
}
