//! The mirror in front of Distribution 2.8.2 in token-auth mode, the Docker Hub
//! arrangement: Distribution answers 401 with a Bearer challenge naming a token
//! issuer, and trusts JWTs signed by that issuer's certificate. The issuer here
//! is a small HTTP server of the test's own that mints ES256 JWTs carrying their
//! certificate in `x5c`, as Docker's token servers do.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use common::image::{Image, tar_with_file};
use common::upstreams::{mirror_config, push_to_distribution, start_distribution};
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
    let auth = format!(
        "auth:\n  token:\n    realm: {r2}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        b2.display()
    );
    let (_dist, base) = tokio::task::spawn_blocking(move || start_distribution(&ddir, &auth))
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
    let token = issuer.jwt(&["repository:library/tokened:pull,push".to_string()]);
    push_to_distribution(
        &base,
        |r| r.bearer_auth(&token),
        "library/tokened",
        "v1",
        &img,
    )
    .await;
    let issued_before = issuer.requests.load(Ordering::Relaxed);

    let extra = mirror_config(&base, "manifest_ttl = \"0s\"\n", "");
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;
    let r = common::get_oci(&m, "/v2/tokened/manifests/v1").await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let r = common::get_oci(&m, "/v2/tokened/manifests/v1").await;
    assert_eq!(
        r.headers()["x-cache"],
        "HIT",
        "revalidated against Distribution by HEAD"
    );
    for (d, b) in img.blobs() {
        let r = common::get_oci(&m, &format!("/v2/tokened/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    // One token served all of that: the mirror caches tokens until they expire.
    assert_eq!(issuer.requests.load(Ordering::Relaxed) - issued_before, 1);
    m.stop().await;
}
