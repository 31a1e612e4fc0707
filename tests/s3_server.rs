//! The S3 server the S3-backend tests run on (moto, `tests/common/s3.rs`)
//! honours each semantic wharf relies on, driven through `object_store` the way
//! wharf calls it: conditional create, ranged reads, multipart, bulk delete,
//! delimited listing, HEAD, copy, presigned GETs and `If-Match` updates. A
//! server (or a client setting) that lost one of them fails here first, not as
//! a puzzling failure deep in a multi-node test.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::s3::{S3Server, have_s3_server};
use common::{bytes, digest};
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3;
use object_store::path::Path as Key;
use object_store::signer::{Method, Signer as _};
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};

/// A fresh server with bucket `wharf` and a client on it; None when the server
/// is not installed (skipped loudly, or a failure under WHARF_REQUIRE_INTEROP=1).
fn server() -> Option<(tempfile::TempDir, S3Server, AmazonS3)> {
    if !have_s3_server() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let s3 = S3Server::start(dir.path());
    eprintln!("S3 server answered after {:?}", t.elapsed());
    s3.bucket("wharf");
    let store = s3.store("wharf");
    Some((dir, s3, store))
}

fn create() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    }
}

#[tokio::test]
async fn conditional_create_refuses_a_second_writer() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    let key = Key::from("blobs/sha256/ab/abcd");
    store
        .put_opts(&key, PutPayload::from_static(b"first"), create())
        .await
        .expect("first create");
    let second = store
        .put_opts(&key, PutPayload::from_static(b"second"), create())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "a second If-None-Match: * PUT must be refused, got {second:?}"
    );
    let got = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"first", "the first writer's bytes stay");
}

#[tokio::test]
async fn ranged_get_returns_exactly_the_range() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    let data = bytes(1 << 20, 7);
    let key = Key::from("blob");
    store
        .put(&key, PutPayload::from(data.clone()))
        .await
        .unwrap();
    let mid = store.get_range(&key, 1000..5000).await.unwrap();
    assert_eq!(&mid[..], &data[1000..5000]);
    // `Range: bytes=N-` (a resumed download).
    let tail = store
        .get_opts(
            &key,
            GetOptions {
                range: Some(GetRange::Offset(1_000_000)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.range, 1_000_000..data.len() as u64);
    assert_eq!(&tail.bytes().await.unwrap()[..], &data[1_000_000..]);
}

#[tokio::test]
async fn multipart_upload_of_12_mib_streams_in_parts() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    const PART: usize = 5 << 20;
    let total = 12 << 20;
    let data = bytes(total, 12);
    let key = Key::from("big");
    let mut up = store.put_multipart(&key).await.unwrap();
    // Parts are produced one at a time (never the whole blob in one buffer on the
    // writing side): 5 MiB, 5 MiB, 2 MiB.
    for chunk in data.chunks(PART) {
        up.put_part(PutPayload::from(Bytes::copy_from_slice(chunk)))
            .await
            .expect("upload part");
    }
    up.complete().await.expect("complete the multipart upload");
    let meta = store.head(&key).await.unwrap();
    assert_eq!(meta.size, total as u64);
    // Read back as a stream of chunks, hashed as they come.
    let mut stream = store.get(&key).await.unwrap().into_stream();
    let mut back = Vec::with_capacity(total);
    let mut chunks = 0;
    while let Some(c) = stream.next().await {
        back.extend_from_slice(&c.unwrap());
        chunks += 1;
    }
    assert!(chunks > 0);
    assert_eq!(
        digest(&back),
        digest(&data),
        "multipart object equals its parts"
    );
}

#[tokio::test]
async fn multipart_parts_under_5_mib_are_refused() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    // Real S3 refuses a non-final part under 5 MiB; a server that did not would
    // hide a backend that cuts parts too small.
    let key = Key::from("small-parts");
    let mut up = store.put_multipart(&key).await.unwrap();
    up.put_part(PutPayload::from(vec![1u8; 1024]))
        .await
        .unwrap();
    up.put_part(PutPayload::from(vec![2u8; 1024]))
        .await
        .unwrap();
    let r = up.complete().await;
    assert!(r.is_err(), "parts under 5 MiB must be refused, got {r:?}");
    assert!(
        matches!(
            store.head(&key).await,
            Err(object_store::Error::NotFound { .. })
        ),
        "a refused multipart upload leaves no object"
    );
}

#[tokio::test]
async fn bulk_delete_of_1000_keys() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    let keys: Vec<Key> = (0..1000).map(|i| Key::from(format!("gc/{i:04}"))).collect();
    futures_util::stream::iter(keys.clone())
        .map(|k| {
            let store = store.clone();
            async move { store.put(&k, PutPayload::from_static(b"x")).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    store
        .put(&Key::from("keep/one"), PutPayload::from_static(b"k"))
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list(Some(&Key::from("gc")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1000, "all 1,000 keys listed (paged)");
    let input = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
    let deleted: Vec<Key> = store.delete_stream(input).try_collect().await.unwrap();
    assert_eq!(deleted.len(), 1000);
    let left: Vec<_> = store
        .list(Some(&Key::from("gc")))
        .try_collect()
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "{} keys survived the bulk delete",
        left.len()
    );
    store
        .head(&Key::from("keep/one"))
        .await
        .expect("others stay");
}

#[tokio::test]
async fn list_with_prefix_and_delimiter() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    for k in [
        "repos/team/app/tags/1",
        "repos/team/app/tags/2",
        "repos/team/lib/tags/1",
        "repos/team/README",
        "repos2/other",
    ] {
        store
            .put(&Key::from(k), PutPayload::from_static(b"d"))
            .await
            .unwrap();
    }
    let r = store
        .list_with_delimiter(Some(&Key::from("repos/team")))
        .await
        .unwrap();
    let dirs: Vec<String> = r.common_prefixes.iter().map(|p| p.to_string()).collect();
    let files: Vec<String> = r.objects.iter().map(|o| o.location.to_string()).collect();
    assert_eq!(dirs, ["repos/team/app", "repos/team/lib"]);
    assert_eq!(files, ["repos/team/README"]);
}

#[tokio::test]
async fn head_and_server_side_copy() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    let data = bytes(70_000, 3);
    let from = Key::from("tmp/upload-1");
    let to = Key::from("blobs/sha256/cd/cdef");
    let put = store
        .put(&from, PutPayload::from(data.clone()))
        .await
        .unwrap();
    let meta = store.head(&from).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.e_tag, put.e_tag, "HEAD reports the PUT's ETag");
    assert!(matches!(
        store.head(&to).await,
        Err(object_store::Error::NotFound { .. })
    ));
    store.copy(&from, &to).await.unwrap();
    let got = store.get(&to).await.unwrap().bytes().await.unwrap();
    assert_eq!(digest(&got), digest(&data));
}

#[tokio::test]
async fn presigned_get_url_serves_the_bytes_to_a_plain_client() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    let data = bytes(300_000, 9);
    let key = Key::from("blobs/sha256/ef/ef01");
    store
        .put(&key, PutPayload::from(data.clone()))
        .await
        .unwrap();
    let url = store
        .signed_url(Method::GET, &key, Duration::from_secs(300))
        .await
        .unwrap();
    assert!(
        url.query().is_some_and(|q| q.contains("X-Amz-Signature=")),
        "a SigV4 presigned URL: {url}"
    );
    // What a docker client does after a 307: a plain GET, no credentials.
    let r = reqwest::get(url.as_str()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(digest(&r.bytes().await.unwrap()), digest(&data));
    // The same URL with a Range, as containerd resumes.
    let r = reqwest::Client::new()
        .get(url.as_str())
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &data[100..200]);
}

#[tokio::test]
async fn update_with_a_stale_etag_is_a_precondition_failure() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    // The lease object: whoever holds its current ETag may renew it.
    let key = Key::from("_wharf/gc-lease");
    let first = store
        .put_opts(&key, PutPayload::from_static(b"node-1"), create())
        .await
        .unwrap();
    let v1 = UpdateVersion::from(first);
    let renewed = store
        .put_opts(
            &key,
            PutPayload::from_static(b"node-1 renewed"),
            PutOptions {
                mode: PutMode::Update(v1.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("update with the current ETag");
    assert_ne!(renewed.e_tag, v1.e_tag);
    let stale = store
        .put_opts(
            &key,
            PutPayload::from_static(b"node-2 steals"),
            PutOptions {
                mode: PutMode::Update(v1),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(stale, Err(object_store::Error::Precondition { .. })),
        "If-Match with a stale ETag must be refused, got {stale:?}"
    );
    let got = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"node-1 renewed");
}

#[tokio::test]
async fn copy_if_not_exists_lands_a_staged_object_once() {
    let Some((_d, _s3, store)) = server() else {
        return;
    };
    // A large blob: multipart to a staging key (unconditional), then a
    // conditional copy to its final key, so two nodes filling the same digest
    // cannot both "create" it.
    let data = bytes(6 << 20, 5);
    let staged = Key::from("tmp/node-1/upload");
    let other = Key::from("tmp/node-2/upload");
    let dest = Key::from("blobs/sha256/12/1234");
    let mut up = store.put_multipart(&staged).await.unwrap();
    up.put_part(PutPayload::from(data.clone())).await.unwrap();
    up.complete().await.unwrap();
    store
        .put(&other, PutPayload::from_static(b"node-2's bytes"))
        .await
        .unwrap();
    store
        .copy_if_not_exists(&staged, &dest)
        .await
        .expect("the first copy lands");
    let second = store.copy_if_not_exists(&other, &dest).await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "a second conditional copy must be refused, got {second:?}"
    );
    let got = store.get(&dest).await.unwrap().bytes().await.unwrap();
    assert_eq!(digest(&got), digest(&data), "the first copy's bytes stay");
}
