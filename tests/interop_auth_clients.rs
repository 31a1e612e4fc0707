//! The setup this product exists for: a mirror with users (for pushes) and
//! `anonymous_pull = true`, on the default auth scheme (`auto`, which is the
//! token scheme here because users exist and anonymous pulls are allowed).
//!
//! Every real client, in both directions, against one such wharf whose default
//! `docker.io` upstream is a Docker-Hub-like wharf: an anonymous pull of a Docker
//! Hub name through the client's own mirror configuration (no credentials
//! configured anywhere, and wharf ran no password check), then a login and a push
//! under `team/`, and a pull back whose digest is the pushed one. Each client has
//! its own test, so a failure names the client that broke.

mod common;

use std::path::{Path, PathBuf};

use common::containerd::Containerd;
use common::containers::Containers;
use common::dockerd::Dockerd;
use common::image::{Image, OCI_MANIFEST, docker_archive, tar_with_file, write_layout};
use common::upstreams::{hub, hub_blob_bytes, metric, mirror_config, publish};
use common::{Wharf, bytes, digest, have_tool, http};
use tokio::task::block_in_place;

const USER: &str = "ci";
const PASSWORD: &str = "ci-pw";

/// Every manifest type a client may have pushed.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

struct Setup {
    /// The Docker-Hub-like upstream.
    hub: Wharf,
    /// The wharf under test.
    mirror: Wharf,
    /// `library/<name>:1.0` on the hub.
    base: Image,
    /// `127.0.0.1:PORT` of the mirror.
    host: String,
}

/// A hub holding `library/<name>:1.0`, and a wharf with that hub as its
/// default `docker.io` upstream, one user, and nothing else configured: no
/// `scheme`, `anonymous_pull` on its default (true).
async fn setup(dir: &Path, name: &str, seed: u64) -> Setup {
    let hub = hub(dir).await;
    let base = Image::new(vec![
        tar_with_file("bin/tool", &bytes(1 << 20, seed)),
        tar_with_file("etc/os-release", name.as_bytes()),
    ]);
    publish(&hub, &format!("library/{name}"), "1.0", &base).await;
    let pw = dir.join("htpasswd");
    common::htpasswd(&pw, &[(USER, PASSWORD)]);
    let extra = format!("[auth]\nhtpasswd = {:?}\n", pw.display().to_string());
    let mirror = Wharf::start_config_unchecked(common::config(
        &dir.join("mirror"),
        &mirror_config(&hub.base, "", &extra),
    ))
    .await;
    // `auto` chose tokens: the only challenge every client answers anonymously.
    let r = http().get(mirror.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    let host = mirror.addr.to_string();
    Setup {
        hub,
        mirror,
        base,
        host,
    }
}

/// What the client pulled so far came through the mirror and presented no
/// credentials: wharf verified no password at all. `challenged`: the client
/// asks `GET /v2/` first (all but containerd), met the Bearer challenge, and
/// went on with an anonymous token; containerd reads without asking, and
/// anonymous reads need no token.
async fn assert_pulled_anonymously_through_the_mirror(s: &Setup, challenged: bool) {
    assert_eq!(
        metric(&s.mirror, "wharf_password_checks_total").await,
        0.0,
        "an anonymous pull presented credentials"
    );
    if challenged {
        assert!(
            metric(&s.mirror, "wharf_tokens_issued_total").await > 0.0,
            "the client answered the challenge with an anonymous token"
        );
    }
    assert!(
        hub_blob_bytes(&s.hub).await > 0.0,
        "the mirror fetched from its upstream"
    );
}

/// The digest wharf serves for `repo:reference` to a caller with no
/// credentials (anonymous reads need no token: `anonymous_pull = true`).
async fn anonymous_digest(m: &Wharf, repo: &str, reference: &str) -> String {
    let r = http()
        .head(m.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{repo}:{reference}");
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Cross-repository mounts wharf performed (`POST ?mount=` answered 201).
async fn mounts(m: &Wharf) -> f64 {
    metric(
        m,
        "wharf_http_requests_total{method=\"POST\",route=\"upload_start\",status=\"201\"}",
    )
    .await
}

fn subdir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerd_pulls_anonymously_through_the_mirror_and_pushes_after_login() {
    if !have_tool("dockerd") || !have_tool("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "dockbase", 21).await;
    let host = s.host.clone();
    let app = Image::new(vec![tar_with_file("app/run", &bytes(512 << 10, 22))]);
    let archive = dir.path().join("app.tar");
    std::fs::write(&archive, docker_archive(&app, "local/app:v1")).unwrap();
    let ddir = subdir(dir.path(), "docker");
    let d = block_in_place(|| {
        Dockerd::start_with(&ddir, &[format!("--registry-mirror={}", s.mirror.base)])
    });

    // Anonymous: the CLI has no login at all (and dockerd never sends a mirror
    // the credentials of the registry it stands in for).
    assert!(!ddir.join("cli/config.json").exists());
    let (repo_digest, id) = block_in_place(|| {
        d.ok(&["pull", "dockbase:1.0"]);
        let rd = d.ok(&[
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            "dockbase:1.0",
        ]);
        let id = d.ok(&["inspect", "--format", "{{.Id}}", "dockbase:1.0"]);
        (rd.trim().to_owned(), id.trim().to_owned())
    });
    assert_eq!(
        repo_digest,
        format!("dockbase@{}", digest(&s.base.manifest))
    );
    assert_eq!(id, digest(&s.base.config));
    assert_pulled_anonymously_through_the_mirror(&s, true).await;

    // A push without a login is refused; after `docker login` it goes through.
    let target = format!("{host}/team/app:v1");
    let (pushed, by_digest_id) = block_in_place(|| {
        d.ok(&["load", "-i", archive.to_str().unwrap()]);
        d.ok(&["tag", "local/app:v1", &target]);
        let out = d.docker(&["push", &target]);
        assert!(!out.status.success(), "an anonymous push must be refused");
        let out = d.login(&host, USER, PASSWORD);
        assert!(out.status.success(), "docker login: {}", stderr(&out));
        let pushed = d.load_tag_push(&archive, &target);
        // Pull back by tag, then by digest, each time from nothing.
        d.pull_and_check(&host, "team/app", &target, &pushed);
        d.ok(&["rmi", &target]);
        let by_digest = format!("{host}/team/app@{pushed}");
        d.ok(&["pull", &by_digest]);
        let id = d.ok(&["inspect", "--format", "{{.Id}}", &by_digest]);
        // The base pulled through the mirror, pushed under a team name.
        d.ok(&["tag", "dockbase:1.0", &format!("{host}/team/base:1.0")]);
        d.ok(&["push", &format!("{host}/team/base:1.0")]);
        (pushed, id.trim().to_owned())
    });
    assert_eq!(by_digest_id, digest(&app.config));
    assert_eq!(anonymous_digest(&s.mirror, "team/app", "v1").await, pushed);
    // Anonymous pulls of pushed content are allowed too (anonymous_pull = true).
    block_in_place(|| {
        d.ok(&["logout", &host]);
        d.ok(&["rmi", &format!("{host}/team/base:1.0")]);
        d.ok(&["pull", &format!("{host}/team/base:1.0")]);
    });
    drop(d);
    s.mirror.stop().await;
    s.hub.stop().await;
}

/// `ctr images ls` digest of `reference`.
fn ctr_digest(c: &Containerd, reference: &str) -> String {
    let ls = c.ok(&["images", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reference))
        .unwrap_or_else(|| panic!("{reference} in {ls}"));
    line.split_whitespace().nth(2).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_pulls_anonymously_by_ns_and_pushes_with_user() {
    if !have_tool("containerd") || !have_tool("ctr") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "ctrbase", 31).await;
    let host = s.host.clone();
    // The node's mirror configuration: docker.io through wharf (`?ns=docker.io`).
    let hosts = subdir(dir.path(), "hosts");
    std::fs::create_dir_all(hosts.join("docker.io")).unwrap();
    std::fs::write(
        hosts.join("docker.io/hosts.toml"),
        format!(
            "server = \"https://registry-1.docker.io\"\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            s.mirror.base
        ),
    )
    .unwrap();
    let hosts_dir = hosts.display().to_string();
    let app = Image::new(vec![tar_with_file("app/run", &bytes(512 << 10, 32))]);
    let archive = dir.path().join("app.tar");
    std::fs::write(&archive, docker_archive(&app, "local/app:v1")).unwrap();
    let cdir = subdir(dir.path(), "containerd");
    let c = block_in_place(|| Containerd::start(&cdir));

    // Anonymous: no --user.
    let base = "docker.io/library/ctrbase:1.0";
    block_in_place(|| {
        c.ok(&[
            "images",
            "pull",
            "--hosts-dir",
            &hosts_dir,
            "--snapshotter",
            "native",
            base,
        ])
    });
    assert_eq!(
        block_in_place(|| ctr_digest(&c, base)),
        digest(&s.base.manifest)
    );
    assert_pulled_anonymously_through_the_mirror(&s, false).await;

    let target = format!("{host}/team/ctr:v1");
    let pushed = block_in_place(|| {
        c.ok(&["images", "import", "--no-unpack", archive.to_str().unwrap()]);
        c.ok(&["images", "tag", "docker.io/local/app:v1", &target]);
        let out = c.ctr(&["images", "push", "--plain-http", &target]);
        assert!(!out.status.success(), "an anonymous push must be refused");
        let user = format!("{USER}:{PASSWORD}");
        c.ok(&["images", "push", "--plain-http", "--user", &user, &target]);
        ctr_digest(&c, &target)
    });
    assert_eq!(anonymous_digest(&s.mirror, "team/ctr", "v1").await, pushed);
    // containerd logs in with the OAuth form POST to /token.
    assert!(
        metric(
            &s.mirror,
            "wharf_http_requests_total{method=\"POST\",route=\"token\",status=\"200\"}"
        )
        .await
            > 0.0
    );
    assert!(metric(&s.mirror, "wharf_password_checks_total").await > 0.0);

    // Pull back, anonymously (pushed content is pullable by anyone here), after
    // removing every local reference and the content with it.
    let config = digest(&app.config);
    block_in_place(|| {
        c.ok(&["images", "rm", "--sync", &target, "docker.io/local/app:v1"]);
        let content = c.ok(&["content", "ls", "-q"]);
        assert!(!content.contains(&config), "the pushed image is gone");
        c.ok(&[
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "native",
            &target,
        ]);
        assert_eq!(ctr_digest(&c, &target), pushed);
        let by_digest = format!("{host}/team/ctr@{pushed}");
        c.ok(&["images", "rm", "--sync", &target]);
        c.ok(&[
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "native",
            &by_digest,
        ]);
        assert_eq!(ctr_digest(&c, &by_digest), pushed);
        assert!(c.ok(&["content", "ls", "-q"]).contains(&config));
    });
    drop(c);
    s.mirror.stop().await;
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_pulls_anonymously_through_registries_conf_and_pushes_after_login() {
    if !have_tool("podman") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "podbase", 41).await;
    let host = s.host.clone();
    let app = Image::new(vec![tar_with_file("app/run", &bytes(512 << 10, 42))]);
    let archive = dir.path().join("app.tar");
    std::fs::write(&archive, docker_archive(&app, "local/app:v1")).unwrap();
    let ce = Containers::new(&subdir(dir.path(), "podman"));
    ce.mirror_docker_io(&host);

    let base = "docker.io/library/podbase:1.0";
    let pulled = block_in_place(|| {
        ce.ok("podman", &["pull", base]);
        ce.ok(
            "podman",
            &["image", "inspect", "--format", "{{.Digest}}", base],
        )
    });
    assert_eq!(pulled.trim(), digest(&s.base.manifest));
    assert!(ce.logins().is_empty(), "no credentials configured");
    assert_pulled_anonymously_through_the_mirror(&s, true).await;

    let target = format!("{host}/team/podman:v1");
    let app_id = &digest(&app.config)[7..];
    let digestfile = dir.path().join("podman.digest");
    block_in_place(|| {
        ce.ok("podman", &["load", "-i", archive.to_str().unwrap()]);
        ce.ok("podman", &["tag", app_id, &target]);
        let err = ce.fails("podman", &["push", "--tls-verify=false", &target]);
        assert!(
            err.contains("unauthorized") || err.contains("denied"),
            "{err}"
        );
        ce.ok_with_stdin(
            "podman",
            &[
                "login",
                "--tls-verify=false",
                "-u",
                USER,
                "--password-stdin",
                &host,
            ],
            PASSWORD,
        );
        assert_eq!(ce.logins(), vec![host.clone()]);
        ce.ok(
            "podman",
            &[
                "push",
                "--tls-verify=false",
                "--digestfile",
                digestfile.to_str().unwrap(),
                &target,
            ],
        );
    });
    let pushed = std::fs::read_to_string(&digestfile).unwrap();
    assert_eq!(
        anonymous_digest(&s.mirror, "team/podman", "v1").await,
        pushed
    );

    block_in_place(|| {
        // Pull back by tag and by digest, each time from nothing.
        for reference in [target.clone(), format!("{host}/team/podman@{pushed}")] {
            ce.ok("podman", &["rmi", "--force", app_id]);
            ce.ok("podman", &["pull", "--tls-verify=false", &reference]);
            let got = ce.ok(
                "podman",
                &[
                    "image",
                    "inspect",
                    "--format",
                    "{{.Id}} {{.Digest}}",
                    &reference,
                ],
            );
            assert_eq!(got.trim(), format!("{app_id} {pushed}"), "{reference}");
        }
        // The base pulled through the mirror, pushed under a team name:
        // containers/image first tries to mount it from where it came from.
        ce.ok(
            "podman",
            &[
                "push",
                "--tls-verify=false",
                base,
                &format!("{host}/team/podbase:1.0"),
            ],
        );
    });
    assert!(
        mounts(&s.mirror).await > 0.0,
        "the mirrored base was mounted into team/podbase, not uploaded again"
    );
    s.mirror.stop().await;
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn buildah_builds_on_a_base_pulled_anonymously_and_pushes_with_creds() {
    if !have_tool("buildah") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "buildbase", 51).await;
    let host = s.host.clone();
    let ce = Containers::new(&subdir(dir.path(), "buildah"));
    ce.mirror_docker_io(&host);

    // FROM docker.io/library/buildbase:1.0, anonymously through the mirror.
    let base = "docker.io/library/buildbase:1.0";
    let added = dir.path().join("added.txt");
    std::fs::write(&added, b"built with buildah on a mirrored base").unwrap();
    let built = block_in_place(|| {
        let ctr = ce.ok("buildah", &["from", base]);
        let ctr = ctr.trim();
        ce.ok(
            "buildah",
            &["copy", ctr, added.to_str().unwrap(), "/added.txt"],
        );
        ce.ok("buildah", &["commit", ctr, "local/built:v1"]);
        ce.ok("buildah", &["rm", ctr]);
        ce.ok(
            "buildah",
            &[
                "inspect",
                "--type",
                "image",
                "--format",
                "{{.FromImageDigest}}",
                base,
            ],
        )
    });
    assert_eq!(built.trim(), digest(&s.base.manifest));
    assert!(ce.logins().is_empty(), "no credentials configured");
    assert_pulled_anonymously_through_the_mirror(&s, true).await;

    let dest = format!("docker://{host}/team/buildah:v1");
    let digestfile = dir.path().join("buildah.digest");
    block_in_place(|| {
        let err = ce.fails(
            "buildah",
            &["push", "--tls-verify=false", "local/built:v1", &dest],
        );
        assert!(
            err.contains("unauthorized") || err.contains("denied"),
            "{err}"
        );
        ce.fails(
            "buildah",
            &[
                "push",
                "--tls-verify=false",
                "--creds",
                &format!("{USER}:wrong"),
                "local/built:v1",
                &dest,
            ],
        );
        ce.ok(
            "buildah",
            &[
                "push",
                "--tls-verify=false",
                "--creds",
                &format!("{USER}:{PASSWORD}"),
                "--digestfile",
                digestfile.to_str().unwrap(),
                "local/built:v1",
                &dest,
            ],
        );
    });
    assert!(
        mounts(&s.mirror).await > 0.0,
        "the mirrored base layers were mounted into team/buildah, not uploaded again"
    );
    let pushed = std::fs::read_to_string(&digestfile).unwrap();
    assert_eq!(
        anonymous_digest(&s.mirror, "team/buildah", "v1").await,
        pushed
    );

    // Pull back anonymously, by tag and by digest, each time from nothing.
    let target = format!("{host}/team/buildah:v1");
    block_in_place(|| {
        for reference in [target.clone(), format!("{host}/team/buildah@{pushed}")] {
            ce.ok("buildah", &["rmi", "--all", "--force"]);
            ce.ok("buildah", &["pull", "--tls-verify=false", &reference]);
            let got = ce.ok(
                "buildah",
                &[
                    "inspect",
                    "--type",
                    "image",
                    "--format",
                    "{{.FromImageDigest}}",
                    &reference,
                ],
            );
            assert_eq!(got.trim(), pushed, "{reference}");
        }
    });
    assert!(ce.logins().is_empty(), "buildah never stored a login");
    s.mirror.stop().await;
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copies_anonymously_through_registries_conf_and_pushes_with_creds() {
    if !have_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "skobase", 61).await;
    let host = s.host.clone();
    let ce = Containers::new(&subdir(dir.path(), "skopeo"));
    ce.mirror_docker_io(&host);

    let out = dir.path().join("pulled");
    block_in_place(|| {
        ce.ok(
            "skopeo",
            &[
                "copy",
                "--preserve-digests",
                "docker://docker.io/library/skobase:1.0",
                &format!("oci:{}:1.0", out.display()),
            ],
        )
    });
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        layout["manifests"][0]["digest"],
        digest(&s.base.manifest).as_str()
    );
    assert!(ce.logins().is_empty(), "no credentials configured");
    assert_pulled_anonymously_through_the_mirror(&s, true).await;

    let app = Image::new(vec![
        tar_with_file("app/run", &bytes(512 << 10, 62)),
        tar_with_file("app/conf", b"skopeo"),
    ]);
    let src = dir.path().join("src");
    let top = write_layout(&src, "v1", &[&app], &app.manifest, OCI_MANIFEST);
    let from = format!("oci:{}:v1", src.display());
    let dest = format!("docker://{host}/team/skopeo:v1");
    block_in_place(|| {
        let err = ce.fails("skopeo", &["copy", "--dest-tls-verify=false", &from, &dest]);
        assert!(
            err.contains("unauthorized") || err.contains("denied"),
            "{err}"
        );
        ce.ok(
            "skopeo",
            &[
                "copy",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--dest-creds",
                &format!("{USER}:{PASSWORD}"),
                &from,
                &dest,
            ],
        );
    });
    assert_eq!(anonymous_digest(&s.mirror, "team/skopeo", "v1").await, top);

    // Pull back anonymously, by digest.
    let back = dir.path().join("back");
    block_in_place(|| {
        ce.ok(
            "skopeo",
            &[
                "copy",
                "--preserve-digests",
                "--src-tls-verify=false",
                &format!("docker://{host}/team/skopeo@{top}"),
                &format!("oci:{}:v1", back.display()),
            ],
        )
    });
    for (d, b) in app.blobs() {
        assert_eq!(
            std::fs::read(back.join("blobs/sha256").join(&d[7..])).unwrap(),
            b,
            "{d}"
        );
    }
    assert!(ce.logins().is_empty(), "skopeo never stored a login");
    s.mirror.stop().await;
    s.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oras_py_pushes_an_artifact_after_login_and_pulls_it_anonymously() {
    if !common::oras::have_oras() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "orasbase", 71).await;
    let host = s.host.clone();
    let work = subdir(dir.path(), "oras");
    let payload = bytes(200 << 10, 72);
    std::fs::write(work.join("artifact.bin"), &payload).unwrap();
    let config = work.join("docker-config.json");
    std::fs::write(&config, r#"{"auths":{}}"#).unwrap();
    let push = |user: Option<(&str, &str)>| {
        let mut req = serde_json::json!({
            "op": "push", "host": host, "target": format!("{host}/team/artifact:v1"),
            "files": [work.join("artifact.bin").display().to_string()],
            "config": config.display().to_string(),
            // Several PATCHes, each with oras' `Content-Range: a-b`.
            "chunk": 64 << 10,
        });
        if let Some((u, p)) = user {
            req["user"] = u.into();
            req["password"] = p.into();
        }
        block_in_place(|| common::oras::run(&work, &req))
    };
    let (ok, _, log) = push(None);
    assert!(
        !ok && log.contains("UNAUTHORIZED"),
        "an anonymous push must be refused: {log}"
    );
    let (ok, _, log) = push(Some((USER, "wrong")));
    // /token refuses the credential, so oras-py gets no token at all.
    assert!(
        !ok && log.contains("requires a token"),
        "a wrong password must be refused: {log}"
    );
    let (ok, res, log) = push(Some((USER, PASSWORD)));
    assert!(ok, "oras push: {log}");
    assert_eq!(res["status"], 201, "{log}");
    let pushed = res["digest"]
        .as_str()
        .expect("the manifest digest")
        .to_owned();
    assert_eq!(
        anonymous_digest(&s.mirror, "team/artifact", "v1").await,
        pushed
    );

    // Anonymously, from a fresh directory and an empty docker config.
    let fresh = subdir(dir.path(), "oras-pull");
    let empty = fresh.join("docker-config.json");
    std::fs::write(&empty, r#"{"auths":{}}"#).unwrap();
    let out = fresh.join("out");
    let req = serde_json::json!({
        "op": "pull", "host": host, "target": format!("{host}/team/artifact@{pushed}"),
        "outdir": out.display().to_string(), "config": empty.display().to_string(),
    });
    let (ok, res, log) = block_in_place(|| common::oras::run(&fresh, &req));
    assert!(ok, "oras pull: {log}");
    let files = res["files"].as_array().expect("pulled files");
    assert_eq!(files.len(), 1, "{log}");
    assert_eq!(
        std::fs::read(files[0].as_str().unwrap()).unwrap(),
        payload,
        "the artifact round-trips"
    );
    s.mirror.stop().await;
    s.hub.stop().await;
}
