//! The mirror in front of Distribution 2.8.2 in token-auth mode, the Docker Hub
//! arrangement: Distribution answers 401 with a Bearer challenge naming a token
//! issuer, and trusts JWTs signed by that issuer's certificate. The issuer here
//! is a small HTTP server of the test's own that mints ES256 JWTs carrying their
//! certificate in `x5c`, as Docker's token servers do.

mod common;

use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::{Wharf, bytes, have_tool, http};
use http_body_util::Full;
use hyper::service::service_fn;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

const ISSUER: &str = "wharf-test-issuer";
const SERVICE: &str = "dist";

struct Issuer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    rng: SystemRandom,
    requests: AtomicUsize,
}

impl Issuer {
    fn jwt(&self, scopes: &[String]) -> String {
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::json!({
            "typ": "JWT", "alg": "ES256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)],
        });
        let now = wharf::store::unix_now();
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
            "iat": now, "jti": format!("{now}-{}", self.requests.load(Ordering::Relaxed)), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64url.encode(serde_json::to_vec(&header).unwrap()),
            b64url.encode(serde_json::to_vec(&claims).unwrap())
        );
        let sig = self.key.sign(&self.rng, signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", b64url.encode(sig.as_ref()))
    }
}

/// Serves `GET /token`, granting whatever is asked (the test's own issuer).
async fn start_issuer(issuer: Arc<Issuer>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let issuer = issuer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let issuer = issuer.clone();
                    async move {
                        issuer.requests.fetch_add(1, Ordering::Relaxed);
                        let q = req.uri().query().unwrap_or("");
                        let scopes: Vec<String> = q
                            .split('&')
                            .filter_map(|kv| kv.strip_prefix("scope="))
                            .map(|v| {
                                let v = v.replace('+', " ");
                                let mut out = String::new();
                                let b = v.as_bytes();
                                let mut i = 0;
                                while i < b.len() {
                                    if b[i] == b'%' && i + 2 < b.len() {
                                        out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap()
                                            as char);
                                        i += 3;
                                    } else {
                                        out.push(b[i] as char);
                                        i += 1;
                                    }
                                }
                                out
                            })
                            .collect();
                        let token = issuer.jwt(&scopes);
                        let body = serde_json::to_vec(&serde_json::json!({"token": token, "access_token": token, "expires_in": 300})).unwrap();
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(bytes::Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

struct Distribution(Child);

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_distribution(
    dir: &std::path::Path,
    realm: &str,
    bundle: &std::path::Path,
) -> (Distribution, String) {
    for _ in 0..5 {
        let port = common::nginx::free_port();
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: {realm}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                dir.join("data").display(),
                bundle.display()
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
                break;
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

/// Pushes with a push token from the issuer.
async fn push(base: &str, issuer: &Issuer, repo: &str, tag: &str, img: &Image) {
    let token = issuer.jwt(&[format!("repository:{repo}:pull,push")]);
    let c = http();
    for (d, b) in img.blobs() {
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "Distribution accepted the issuer's token");
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let loc = if loc.starts_with('/') {
            format!("{base}{loc}")
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = c
            .put(format!("{loc}{sep}digest={d}"))
            .bearer_auth(&token)
            .body(b.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .bearer_auth(&token)
        .header("content-type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_in_front_of_distribution_with_token_auth() {
    if !have_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["issuer.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let bundle = dir.path().join("issuer.pem");
    std::fs::write(&bundle, cert.pem()).unwrap();
    let issuer = Arc::new(Issuer {
        key: EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap(),
        cert_der: cert.der().to_vec(),
        rng: SystemRandom::new(),
        requests: AtomicUsize::new(0),
    });
    let realm = start_issuer(issuer.clone()).await;
    let ddir = dir.path().join("dist");
    std::fs::create_dir_all(&ddir).unwrap();
    let (r2, b2) = (realm.clone(), bundle.clone());
    let (_dist, base) = tokio::task::spawn_blocking(move || start_distribution(&ddir, &r2, &b2))
        .await
        .unwrap();
    // Without a token Distribution challenges, naming the issuer.
    let r = http().get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=")
    );

    let img = Image::new(vec![
        tar_with_file("t", &bytes(2 << 20, 41)),
        tar_with_file("u", b"token"),
    ]);
    push(&base, &issuer, "library/tokened", "v1", &img).await;
    let issued_before = issuer.requests.load(Ordering::Relaxed);

    let extra = format!(
        "[[upstream]]\nname = \"docker.io\"\nurl = \"{base}\"\ndefault = true\nmanifest_ttl = \"0s\"\n"
    );
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;
    let get = |p: String| {
        let c = http();
        let url = m.url(&p);
        async move {
            c.get(url)
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get("/v2/tokened/manifests/v1".into()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let r = get("/v2/tokened/manifests/v1".into()).await;
    assert_eq!(
        r.headers()["x-cache"],
        "HIT",
        "revalidated against Distribution by HEAD"
    );
    for (d, b) in img.blobs() {
        let r = get(format!("/v2/tokened/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    // One token served all of that: the mirror caches tokens until they expire.
    assert_eq!(issuer.requests.load(Ordering::Relaxed) - issued_before, 1);
    m.stop().await;
}
