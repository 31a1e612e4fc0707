//! HTTPS with rustls: HTTP/1.1 and h2 by ALPN, and a certificate swapped on
//! SIGHUP while a pull is in flight (the pull completes; new connections get the
//! new certificate).

mod common;

use std::io::Read;

use common::certs::pki;
use common::{Wharf, WharfProcess, bytes, digest};

#[tokio::test(flavor = "multi_thread")]
async fn https_serves_http1_and_h2() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki("wharf test CA");
    let (cert, key) = p.write(dir.path());
    let extra = format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let w = Wharf::launch(common::config(&dir.path().join("data"), &extra)).await;
    assert!(w.base.starts_with("https://"));
    let c = p.client();
    let r = c.get(w.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN picks h2");
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let r = h1
        .post(w.url("/v2/tls/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with("/v2/"), "Location stays relative: {loc}");
    let data = bytes(1 << 20, 4);
    let r = c
        .put(w.url(&format!("{loc}?digest={}", digest(&data))))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A client that does not trust the CA is refused at the handshake.
    assert!(common::http().get(w.url("/v2/")).send().await.is_err());
    // Plain HTTP to the TLS port fails fast instead of hanging.
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        common::http().get(format!("http://{}/v2/", w.addr)).send(),
    )
    .await
    .expect("plain HTTP on the TLS port must not hang");
    assert!(r.is_err() || r.unwrap().status() == 400);
    w.stop().await;
}

#[test]
fn sighup_swaps_the_certificate_without_dropping_a_pull() {
    let dir = tempfile::tempdir().unwrap();
    let old = pki("old CA");
    let (cert, key) = old.write(dir.path());
    let server = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let w = WharfProcess::spawn_with(dir.path(), &dir.path().join("data"), &server, "");
    assert!(w.base.starts_with("https://"));
    let c = old.blocking_client();
    let data = bytes(32 << 20, 8);
    let d = digest(&data);
    let r = c.post(w.url("/v2/big/blobs/uploads/")).send().unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .put(w.url(&format!("{loc}?digest={d}")))
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);

    // Start a pull and read only the beginning.
    let mut pull = c.get(w.url(&format!("/v2/big/blobs/{d}"))).send().unwrap();
    assert_eq!(pull.status(), 200);
    let mut got = vec![0u8; 1 << 20];
    pull.read_exact(&mut got).unwrap();

    // New certificate from a new CA, then SIGHUP.
    let new = pki("new CA");
    new.write(dir.path());
    w.signal("-HUP");
    w.wait_log("reloaded TLS certificate");

    // The pull in flight completes, byte for byte.
    let mut rest = Vec::new();
    pull.read_to_end(&mut rest).unwrap();
    got.extend_from_slice(&rest);
    assert_eq!(got.len(), data.len());
    assert_eq!(digest(&got), d);

    // New connections get the new certificate.
    assert_eq!(
        new.blocking_client()
            .get(w.url("/v2/"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert!(old.blocking_client().get(w.url("/v2/")).send().is_err());

    // A broken certificate on the next SIGHUP keeps the running one.
    std::fs::write(&cert, "not a certificate").unwrap();
    w.signal("-HUP");
    w.wait_log("TLS reload refused");
    assert_eq!(
        new.blocking_client()
            .get(w.url("/v2/"))
            .send()
            .unwrap()
            .status(),
        200
    );
}
