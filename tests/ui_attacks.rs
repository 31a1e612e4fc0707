//! The web page attacked as a hostile visitor would: a session replayed
//! after its logout, a forged `Host` reaching the copy-paste lines, a
//! repository with very many tags. Each test failed before its fix.

mod common;

use common::{As, Wharf, htpasswd, http};

/// A wharf with users alice (admin) and bob (pull only on team/*).
async fn with_users(dir: &std::path::Path, extra_auth: &str) -> Wharf {
    let pw = dir.join("htpasswd");
    htpasswd(&pw, &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let cfg = format!(
        "[auth]\nhtpasswd = {:?}\nadmins = [\"alice\"]\n{extra_auth}\n\
         [[auth.rule]]\nusers = [\"alice\"]\nrepos = [\"*\"]\nactions = [\"pull\", \"push\", \"delete\"]\n\
         [[auth.rule]]\nusers = [\"bob\"]\nrepos = [\"team/*\"]\nactions = [\"pull\"]\n",
        pw.display().to_string()
    );
    Wharf::start_config_unchecked(common::config(&dir.join("data"), &cfg)).await
}

/// A GET with an optional cookie: (status, body, Set-Cookie values).
async fn get(w: &Wharf, path: &str, cookie: Option<&str>) -> (u16, String, Vec<String>) {
    let mut req = http().get(w.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("wharf_session={c}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let sc = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (status, r.text().await.unwrap(), sc)
}

/// A form POST with the session cookie: (status, body, Set-Cookie values).
async fn post(
    w: &Wharf,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> (u16, String, Vec<String>) {
    let r = http()
        .post(w.url(path))
        .header("cookie", format!("wharf_session={cookie}"))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let sc = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (status, r.text().await.unwrap(), sc)
}

fn csrf_of(body: &str) -> String {
    let key = "name=\"csrf\" value=\"";
    let start = body.find(key).expect("a CSRF field") + key.len();
    let end = body[start..].find('"').unwrap();
    body[start..start + end].to_owned()
}

fn session_of(set_cookies: &[String]) -> String {
    set_cookies
        .iter()
        .find_map(|c| c.strip_prefix("wharf_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// Logs in through the form; returns the new session cookie.
async fn login(w: &Wharf, user: &str, pw: &str) -> String {
    let (status, body, sc) = get(w, "/ui/login", None).await;
    assert_eq!(status, 200);
    let anon = session_of(&sc);
    let csrf = csrf_of(&body);
    let (status, _, sc) = post(
        w,
        "/ui/login",
        &anon,
        &[("csrf", &csrf), ("user", user), ("password", pw)],
    )
    .await;
    assert_eq!(status, 303);
    session_of(&sc)
}

/// A session cookie copied before its logout (a shared machine, a proxy
/// log, malware) must not keep working for the rest of its 8 hours: logout
/// has to end the session on the server, not only ask the browser to drop it.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_replayed_after_logout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_users(dir.path(), "anonymous_pull = false").await;
    let alice = login(&w, "alice", "alice-pw").await;
    let (status, body, _) = get(&w, "/ui/", Some(&alice)).await;
    assert_eq!(status, 200);
    assert!(body.contains("data-test=\"user\">alice<"), "{body}");
    let csrf = csrf_of(&body);
    let (status, _, _) = post(&w, "/ui/logout", &alice, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    // The copied cookie, replayed.
    let (status, body, _) = get(&w, "/ui/", Some(&alice)).await;
    assert!(
        !body.contains("data-test=\"user\">alice<"),
        "a logged-out session still shows alice's page ({status})"
    );
    let (status, _, _) = post(&w, "/ui/actions/gc", &alice, &[("csrf", &csrf)]).await;
    assert_eq!(status, 403, "a logged-out session still runs admin actions");
    // Another session of the same user is not ended by that logout.
    let again = login(&w, "alice", "alice-pw").await;
    let (_, body, _) = get(&w, "/ui/", Some(&again)).await;
    assert!(body.contains("data-test=\"user\">alice<"), "{body}");
    w.stop().await;
}

/// A password change (the htpasswd file rewritten, picked up while serving)
/// ends the sessions logged in with the old password: whoever stole one
/// loses it with the password.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_ends_the_sessions_of_the_old_password() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_users(dir.path(), "anonymous_pull = false").await;
    let old = login(&w, "alice", "alice-pw").await;
    let bob = login(&w, "bob", "bob-pw").await;
    let (_, body, _) = get(&w, "/ui/", Some(&old)).await;
    assert!(body.contains("data-test=\"user\">alice<"), "{body}");
    // Only alice's line changes, as `wharf user passwd` or `htpasswd` would.
    let file = dir.path().join("htpasswd");
    let fresh = dir.path().join("fresh");
    htpasswd(&fresh, &[("alice", "alice-new-pw")]);
    let alice_line = std::fs::read_to_string(&fresh).unwrap();
    let kept: String = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("alice:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, format!("{}\n{kept}", alice_line.trim_end())).unwrap();
    common::wait_for(20, "the new password to be read", || async {
        As::user(&w, "alice", "alice-new-pw")
            .req(reqwest::Method::GET, "/v2/")
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let (_, body, _) = get(&w, "/ui/", Some(&old)).await;
    assert!(
        !body.contains("data-test=\"user\">alice<"),
        "a session of the old password still shows alice's page"
    );
    let (status, _, _) = post(&w, "/ui/actions/gc", &old, &[("csrf", "x")]).await;
    assert_eq!(status, 403);
    // Bob's password did not change: his session goes on.
    let (_, body, _) = get(&w, "/ui/", Some(&bob)).await;
    assert!(body.contains("data-test=\"user\">bob<"), "{body}");
    let new = login(&w, "alice", "alice-new-pw").await;
    let (_, body, _) = get(&w, "/ui/", Some(&new)).await;
    assert!(body.contains("data-test=\"user\">alice<"), "{body}");
    w.stop().await;
}

/// The copy-paste lines take the host from the request; a `Host` that is no
/// host name (shell metacharacters) must never reach them, whatever escaping
/// HTML does: those lines are pasted into a shell.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_host_never_reaches_the_copy_paste_lines() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_users(dir.path(), "anonymous_pull = true").await;
    let alice = As::user(&w, "alice", "alice-pw");
    assert_eq!(alice.push_image("team/app", "1", b"one").await, 201);
    for host in ["evil;id>x", "a$(id)b", "x`id`:5000", "h|sh", "h&&id"] {
        let r = http()
            .get(w.url("/ui/repos/team/app/-/1"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_ne!(status, 500, "{body}");
        let escaped = host.replace('&', "&amp;").replace('>', "&gt;");
        assert!(
            !body.contains(host) && !body.contains(&escaped),
            "Host {host:?} is echoed into the page ({status})"
        );
    }
    w.stop().await;
}
