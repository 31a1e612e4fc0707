//! Upstream registries for mirror tests: a Docker-Hub-like wharf (token auth,
//! anonymous pulls, one pushing user) and Debian's Distribution 2.8.2.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::Method;

use super::image::{Image, OCI_MANIFEST};
use super::{As, Wharf, http};

/// A Docker-Hub-like upstream: token auth, anonymous pulls, user `pusher`.
pub async fn hub(dir: &Path) -> Wharf {
    Wharf::start_config_unchecked(hub_config(dir)).await
}

/// The hub of `dir` back on `addr` after a stop, with the content it had.
pub async fn restart_hub(dir: &Path, addr: std::net::SocketAddr) -> Wharf {
    Wharf::restart_at(hub_config(dir), addr).await
}

fn hub_config(dir: &Path) -> wharf::config::Config {
    let pw = dir.join("hub-htpasswd");
    super::htpasswd(&pw, &[("pusher", "pusher-pw")]);
    let extra = format!(
        "[auth]\nhtpasswd = {:?}\nscheme = \"token\"\nanonymous_pull = true\n",
        pw.display().to_string()
    );
    // The hub stands for Docker Hub: its blobs stay in files whatever
    // backend the wharf under test runs on (tests corrupt them on disk).
    super::config_on_files(&dir.join("hub"), &extra)
}

/// Pushes `img`'s blobs to `repo` on the hub.
pub async fn publish_blobs(hub: &Wharf, repo: &str, img: &Image) {
    let pusher = As::user(hub, "pusher", "pusher-pw");
    for (_, b) in img.blobs() {
        assert_eq!(pusher.push_blob(repo, b).await, 201);
    }
}

/// Puts a manifest on the hub under `reference`.
pub async fn put_manifest(hub: &Wharf, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
    let r = As::user(hub, "pusher", "pusher-pw")
        .req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Pushes an image to the hub under `tag`.
pub async fn publish(hub: &Wharf, repo: &str, tag: &str, img: &Image) {
    publish_blobs(hub, repo, img).await;
    put_manifest(hub, repo, tag, OCI_MANIFEST, &img.manifest).await;
}

/// Distribution 2.8.2, stopped on drop.
pub struct Distribution(Child);

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Distribution with `auth_yaml` (an `auth:` section, or nothing);
/// returns it and its base URL once it answers.
pub fn start_distribution(dir: &Path, auth_yaml: &str) -> (Distribution, String) {
    for _ in 0..5 {
        let port = super::nginx::free_port();
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("start docker-registry");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break; // exited, probably a taken port: try another
            }
            if reqwest::blocking::get(format!("{base}/v2/")).is_ok() {
                return (Distribution(child), base);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    panic!(
        "docker-registry could not start; see {}",
        dir.join("registry.log").display()
    );
}

/// Pushes an image to Distribution (absolute, stateful Location URLs), with
/// `auth` adding credentials to every request.
pub async fn push_to_distribution(
    base: &str,
    auth: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    repo: &str,
    tag: &str,
    img: &Image,
) {
    let c = http();
    for (d, b) in img.blobs() {
        let r = auth(c.post(format!("{base}/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let loc = if loc.starts_with('/') {
            format!("{base}{loc}")
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = auth(c.put(format!("{loc}{sep}digest={d}")))
            .body(b.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = auth(c.put(format!("{base}/v2/{repo}/manifests/{tag}")))
        .header("content-type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Publishes each platform image by digest and an index of them under `tag`;
/// returns the index bytes.
pub async fn publish_index(
    hub: &Wharf,
    repo: &str,
    tag: &str,
    images: &[(&Image, &str)],
) -> Vec<u8> {
    for (img, _) in images {
        publish_blobs(hub, repo, img).await;
        put_manifest(
            hub,
            repo,
            &super::digest(&img.manifest),
            OCI_MANIFEST,
            &img.manifest,
        )
        .await;
    }
    let idx = super::image::index(images);
    put_manifest(hub, repo, tag, super::image::OCI_INDEX, &idx).await;
    idx
}

/// Config for a mirror whose default `docker.io` upstream is `url`, plus `extra`
/// TOML (more `[[upstream]]` keys such as `manifest_ttl`, or other sections).
pub fn mirror_config(url: &str, upstream_keys: &str, extra: &str) -> String {
    format!(
        "[[upstream]]\nname = \"docker.io\"\nurl = \"{url}\"\ndefault = true\n{upstream_keys}{extra}"
    )
}

/// A counter or gauge from a wharf's /metrics (0 when absent).
pub async fn metric(w: &Wharf, series: &str) -> f64 {
    let text = super::metrics_text(w).await;
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Blob bytes the hub has sent, whatever the status.
pub async fn hub_blob_bytes(hub: &Wharf) -> f64 {
    metric(hub, "wharf_http_response_bytes_total{route=\"blob\"}").await
}

/// A hand-made upstream on 127.0.0.1:0, for misbehaviour no real registry
/// shows on demand: `answer` makes the response to every request (HEADs get
/// the same headers without the body). Counts the requests; stops on drop.
pub struct Fake {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a [`Fake`] upstream.
pub async fn fake<F>(answer: F) -> Fake
where
    F: Fn(&http::request::Parts) -> http::Response<http_body_util::Full<bytes::Bytes>>
        + Send
        + Sync
        + 'static,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (answer, counted) = (answer.clone(), counted.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _: &hyper::body::Incoming = req.body();
                    let resp = answer(&req.into_parts().0);
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Fake {
        url,
        requests,
        task,
    }
}

/// A response of `status` with `headers` and `body`, for a [`Fake`].
pub fn answer(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let mut r = http::Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(http_body_util::Full::new(body.into())).unwrap()
}

/// An upstream that accepts connections and never answers (a hung registry
/// or a black-holing load balancer); it holds every connection open until
/// dropped.
pub struct Silent {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a [`Silent`] upstream.
pub async fn silent() -> Silent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Silent { url, task }
}
