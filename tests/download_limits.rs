//! Downloads go on after their client leaves, so starting one costs until it
//! ends: a client may have only `[server] downloads_per_client` running, all
//! clients together `max_downloads`; joining a running download is free.

mod common;

use common::{Wharf, error_code, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that answers every request with the headers of a 1000-byte
/// body and then sends nothing: every download it starts stays in flight.
async fn stalling_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            held.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                    .await;
                std::future::pending::<()>().await;
            }));
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_started_are_capped_per_client_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let (url, upstream) = stalling_upstream().await;
    let extra = format!(
        "[server]\ndownloads_per_client = 2\nmax_downloads = 3\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
         [[upstream]]\nname = \"docker.io\"\nurl = \"{url}\"\ndefault = true\n"
    );
    let w = Wharf::start_with(dir.path(), &extra).await;
    let get = |client: &'static str, seed: u8| {
        let d = common::digest(&[seed]);
        http()
            .get(w.url(&format!("/v2/library/x/blobs/{d}")))
            .header("x-forwarded-for", client)
            .send()
    };
    // Client A starts two downloads; each answers as soon as the size is known.
    let a1 = get("192.168.1.10", 1).await.unwrap();
    let a2 = get("192.168.1.10", 2).await.unwrap();
    assert_eq!((a1.status().as_u16(), a2.status().as_u16()), (200, 200));
    // A third is refused, and A leaving does not free its slots: the
    // downloads go on without it.
    drop((a1, a2));
    let r = get("192.168.1.10", 3).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("downloads_per_client"),
        "{body}"
    );
    // Joining a running download costs nothing.
    let again = get("192.168.1.10", 1).await.unwrap();
    assert_eq!(again.status(), 200);
    drop(again);
    // Client B gets the last slot of the total, then is refused too.
    let b1 = get("192.168.1.20", 4).await.unwrap();
    assert_eq!(b1.status(), 200);
    let r = get("192.168.1.20", 5).await.unwrap();
    assert_eq!(r.status(), 429);
    let msg = error_code(r).await;
    assert_eq!(msg, "TOOMANYREQUESTS");
    assert_eq!(
        common::upstreams::metric(&w, "wharf_downloads_in_flight").await,
        3.0
    );
    upstream.abort();
    drop(b1);
    w.stop().await;
}
