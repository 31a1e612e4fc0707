//! The OCI Distribution API of a hosted repository, endpoint by endpoint and error
//! by error, over real HTTP against a wharf on 127.0.0.1:0.

mod common;

use common::image::{Image, OCI_INDEX, OCI_MANIFEST, index, tar_with_file};
use common::{
    Wharf, bytes, digest, error_code, get_json, http, push_blob, push_image, put_manifest, status,
};
use reqwest::Method;
use std::sync::Arc;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[tokio::test(flavor = "multi_thread")]
async fn version_check_carries_api_header() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let r = http().get(w.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let r = http().get(w.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(
        http().get(w.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http().get(w.url("/readyz")).send().await.unwrap().status(),
        200
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn monolithic_upload_then_get_head_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let data = bytes(3 * 1024 * 1024 + 17, 1);
    let d = push_blob(&w, "team/app", &data).await;
    let c = http();
    let r = c
        .head(w.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let r = c
        .get(w.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

    let r = c
        .get(w.url(&format!("/v2/team/app/blobs/{d}")))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-19/{}", data.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
    let r = c
        .get(w.url(&format!("/v2/team/app/blobs/{d}")))
        .header("range", "bytes=1048570-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[1_048_570..]);
    let r = c
        .get(w.url(&format!("/v2/team/app/blobs/{d}")))
        .header("range", format!("bytes={}-", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", data.len()).as_str()
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_is_not_readable_through_another_repository() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let d = push_blob(&w, "private/secret", b"top secret layer").await;
    for m in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = http()
            .request(m.clone(), w.url(&format!("/v2/other/repo/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{m}");
    }
    let r = http()
        .get(w.url(&format!("/v2/other/repo/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    // A mount from a repo that does not hold the blob falls back to an upload.
    let r = http()
        .post(w.url(&format!(
            "/v2/other/repo/blobs/uploads/?mount={d}&from=nothing/here"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http()
        .head(w.url(&format!("/v2/other/repo/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_repository_mount() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let d = push_blob(&w, "src/repo", b"shared layer").await;
    let r = http()
        .post(w.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={d}&from=src%2Frepo"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/dst/repo/blobs/{d}").as_str()
    );
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let r = http()
        .get(w.url(&format!("/v2/dst/repo/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"shared layer");
    let r = http()
        .post(w.url("/v2/dst/repo/blobs/uploads/?mount=sha256:bad&from=src/repo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_post_upload_and_digest_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let data = b"posted in one go".to_vec();
    let d = digest(&data);
    let r = http()
        .post(w.url(&format!("/v2/a/blobs/uploads/?digest={d}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], format!("/v2/a/blobs/{d}").as_str());

    let wrong = digest(b"something else");
    let r = http()
        .post(w.url(&format!("/v2/a/blobs/uploads/?digest={wrong}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = http()
        .head(w.url(&format!("/v2/a/blobs/{wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Nothing half-written stays behind in tmp/.
    assert_eq!(std::fs::read_dir(w.root.join("tmp")).unwrap().count(), 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_with_content_range_status_and_416() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let c = http();
    let data = bytes(200_000, 7);
    let r = c
        .post(w.url("/v2/team/chunky/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-0");
    assert!(r.headers().contains_key("docker-upload-uuid"));
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with("/v2/team/chunky/blobs/uploads/"),
        "relative Location: {loc}"
    );

    let (a, b) = data.split_at(65_536);
    // oras style: no "bytes=" prefix.
    let r = c
        .patch(w.url(&loc))
        .header("content-range", "0-65535")
        .header("content-type", "application/octet-stream")
        .body(a.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-65535");
    let loc = r.headers()["location"].to_str().unwrap().to_owned();

    // A chunk that does not continue the upload is refused with where it stands.
    let r = c
        .patch(w.url(&loc))
        .header("content-range", "100-199")
        .body(vec![0u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["range"], "0-65535");
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");

    // A chunk whose Content-Length disagrees with its Content-Range.
    let r = c
        .patch(w.url(&loc))
        .header("content-range", "65536-65635")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "SIZE_INVALID");

    let r = c.get(w.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-65535");

    // docker style: PATCH with no Content-Range, then PUT with an empty body.
    let r = c.patch(w.url(&loc)).body(b.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", data.len() - 1).as_str()
    );
    let d = digest(&data);
    let r = c
        .put(w.url(&format!("{loc}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .get(w.url(&format!("/v2/team/chunky/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    // The session is gone once completed.
    let r = c.get(w.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_cancel_wrong_repo_and_missing_digest() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let c = http();
    let r = c.post(w.url("/v2/a/blobs/uploads/")).send().await.unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let id = loc.rsplit('/').next().unwrap().to_owned();
    // The id is no key to another repository.
    let r = c
        .get(w.url(&format!("/v2/b/blobs/uploads/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c.put(w.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = c.delete(w.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(w.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.patch(w.url(&loc)).body("x").send().await.unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(std::fs::read_dir(w.root.join("tmp")).unwrap().count(), 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_put_get_head_by_tag_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let (manifest, d) = push_image(
        &w,
        "team/app",
        "v1",
        &[tar_with_file("a", b"one"), tar_with_file("b", b"two")],
    )
    .await;
    let c = http();
    for reference in ["v1", d.as_str()] {
        let r = c
            .get(w.url(&format!("/v2/team/app/manifests/{reference}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
        let r = c
            .head(w.url(&format!("/v2/team/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-length"],
            manifest.len().to_string().as_str()
        );
    }
    let r = c
        .get(w.url("/v2/team/app/manifests/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    // PUT by digest must match the bytes.
    let r = put_manifest(&w, "team/app", &d, OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), 201);
    let wrong = digest(b"x");
    let r = put_manifest(&w, "team/app", &wrong, OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let img = Image::new(vec![tar_with_file("a", b"layer")]);
    // Nothing pushed yet: every reference is unknown.
    let r = put_manifest(&w, "r", "t", OCI_MANIFEST, &img.manifest).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    // Blob pushed to a different repository does not count.
    for (_, b) in img.blobs() {
        push_blob(&w, "elsewhere", b).await;
    }
    let r = put_manifest(&w, "r", "t", OCI_MANIFEST, &img.manifest).await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");

    let r = put_manifest(&w, "r", "t", OCI_MANIFEST, b"{not json").await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = put_manifest(
        &w,
        "r",
        "t",
        OCI_MANIFEST,
        br#"{"schemaVersion":1,"name":"x"}"#,
    )
    .await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    // Content-Type and mediaType disagree.
    for (_, b) in img.blobs() {
        push_blob(&w, "r", b).await;
    }
    let r = put_manifest(&w, "r", "t", DOCKER_MANIFEST, &img.manifest).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    // Descriptor size that disagrees with the stored blob.
    let mut v: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    v["layers"][0]["size"] = serde_json::json!(1);
    let r = put_manifest(&w, "r", "t", OCI_MANIFEST, &serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    // Oversized body: refused from its Content-Length, before a byte is read.
    let raw = raw_request(
        &w,
        &format!("PUT /v2/r/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: 5000000\r\n\r\n"),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("MANIFEST_INVALID"), "{raw}");
    // And the valid one still goes in; nothing above left a tag behind.
    let r = http().get(w.url("/v2/r/tags/list")).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!([]));
    assert_eq!(
        put_manifest(&w, "r", "t", OCI_MANIFEST, &img.manifest)
            .await
            .status(),
        201
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema2_and_multi_arch_index() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let amd = Image::for_platform(vec![tar_with_file("a", b"amd64")], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("a", b"arm64")], "arm64");
    let idx = index(&[(&amd, "amd64"), (&arm, "arm64")]);
    for img in [&amd, &arm] {
        for (_, b) in img.blobs() {
            push_blob(&w, "multi", b).await;
        }
    }
    // The index cannot go in before its children.
    let r = put_manifest(&w, "multi", "latest", OCI_INDEX, &idx).await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    for img in [&amd, &arm] {
        let r = put_manifest(
            &w,
            "multi",
            &digest(&img.manifest),
            OCI_MANIFEST,
            &img.manifest,
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    let r = put_manifest(&w, "multi", "latest", OCI_INDEX, &idx).await;
    assert_eq!(r.status(), 201);
    // Content negotiation never rewrites: a client that only takes Docker schema 2
    // is told the index exists in another type, not handed different bytes.
    let r = http()
        .get(w.url("/v2/multi/manifests/latest"))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // dockerd sends Accept as several header lines; they are merged.
    let r = http()
        .get(w.url("/v2/multi/manifests/latest"))
        .header("accept", DOCKER_MANIFEST)
        .header("accept", OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    assert_eq!(r.bytes().await.unwrap().as_ref(), idx.as_slice());

    // A Docker schema 2 manifest keeps its media type.
    let mut v: serde_json::Value = serde_json::from_slice(&amd.manifest).unwrap();
    v["mediaType"] = serde_json::json!(DOCKER_MANIFEST);
    v["config"]["mediaType"] = serde_json::json!("application/vnd.docker.container.image.v1+json");
    v["layers"][0]["mediaType"] = serde_json::json!("application/vnd.docker.image.rootfs.diff.tar");
    let body = serde_json::to_vec(&v).unwrap();
    let r = put_manifest(&w, "multi", "docker", DOCKER_MANIFEST, &body).await;
    assert_eq!(r.status(), 201);
    let r = http()
        .get(w.url("/v2/multi/manifests/docker"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], DOCKER_MANIFEST);
    assert_eq!(r.headers()["docker-content-digest"], digest(&body).as_str());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_and_catalog_paginate_with_link() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let img = Image::new(vec![tar_with_file("a", b"x")]);
    for repo in ["b/one", "a/two", "c/three"] {
        for (_, b) in img.blobs() {
            push_blob(&w, repo, b).await;
        }
    }
    for t in ["v3", "v1", "latest", "v2"] {
        assert_eq!(
            put_manifest(&w, "a/two", t, OCI_MANIFEST, &img.manifest)
                .await
                .status(),
            201
        );
    }
    let c = http();
    let v = get_json(&w, "/v2/a/two/tags/list").await;
    assert_eq!(
        v,
        serde_json::json!({"name": "a/two", "tags": ["latest", "v1", "v2", "v3"]})
    );
    let r = c
        .get(w.url("/v2/a/two/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["link"],
        "</v2/a/two/tags/list?n=2&last=v1>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["latest", "v1"]));
    let r = c
        .get(w.url("/v2/a/two/tags/list?n=2&last=v1"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v2", "v3"]));
    let v = get_json(&w, "/v2/a/two/tags/list?n=0").await;
    assert_eq!(v["tags"], serde_json::json!([]));
    let r = c.get(w.url("/v2/no/such/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    let r = c
        .get(w.url("/v2/a/two/tags/list?n=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = c.get(w.url("/v2/_catalog?n=2")).send().await.unwrap();
    assert_eq!(
        r.headers()["link"],
        "</v2/_catalog?n=2&last=b/one>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["a/two", "b/one"]));
    let v = get_json(&w, "/v2/_catalog?n=2&last=b/one").await;
    assert_eq!(v["repositories"], serde_json::json!(["c/three"]));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_api_with_subject_and_artifact_type_filter() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let (subject_bytes, subject) = push_image(&w, "app", "v1", &[tar_with_file("a", b"x")]).await;
    let empty = b"{}".to_vec();
    let empty_d = push_blob(&w, "app", &empty).await;
    let mut pushed = Vec::new();
    for (i, at) in [
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    ]
    .iter()
    .enumerate()
    {
        let layer = format!("artifact {i}").into_bytes();
        let ld = push_blob(&w, "app", &layer).await;
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_d, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": ld, "size": layer.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()},
            "annotations": {"n": i.to_string()}
        }))
        .unwrap();
        let d = digest(&m);
        let r = put_manifest(&w, "app", &d, OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["oci-subject"], subject.as_str());
        pushed.push(d);
    }
    let c = http();
    let r = c
        .get(w.url(&format!("/v2/app/referrers/{subject}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    let v: serde_json::Value = r.json().await.unwrap();
    let mut got: Vec<String> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    pushed.sort();
    assert_eq!(got, pushed);
    assert!(v["manifests"][0]["artifactType"].is_string());
    assert!(v["manifests"][0]["annotations"]["n"].is_string());

    let r = c
        .get(w.url(&format!(
            "/v2/app/referrers/{subject}?artifactType=application%2Fvnd.example.sbom"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );

    // No referrers: an empty index, not 404.
    let r = c
        .get(w.url(&format!("/v2/app/referrers/{}", digest(b"none"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    // Deleting a referrer removes it from the list.
    let r = c
        .delete(w.url(&format!("/v2/app/manifests/{}", pushed[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v = get_json(&w, &format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    let r = c
        .get(w.url("/v2/app/referrers/sha256:short"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_of_manifests_tags_and_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let layer = tar_with_file("a", b"x");
    let (_, d) = push_image(&w, "app", "v1", std::slice::from_ref(&layer)).await;
    assert_eq!(
        put_manifest(
            &w,
            "app",
            "v2",
            OCI_MANIFEST,
            &Image::new(vec![layer.clone()]).manifest
        )
        .await
        .status(),
        201
    );
    let c = http();
    // Deleting a tag leaves the manifest and other tags.
    assert_eq!(
        status(&w, Method::DELETE, "/v2/app/manifests/v2").await,
        202
    );
    assert_eq!(status(&w, Method::GET, "/v2/app/manifests/v2").await, 404);
    assert_eq!(
        status(&w, Method::GET, &format!("/v2/app/manifests/{d}")).await,
        200
    );
    assert_eq!(
        status(&w, Method::DELETE, "/v2/app/manifests/v2").await,
        404
    );
    // Deleting by digest removes the manifest and every tag on it.
    assert_eq!(
        status(&w, Method::DELETE, &format!("/v2/app/manifests/{d}")).await,
        202
    );
    let r = c.get(w.url("/v2/app/manifests/v1")).send().await.unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let v = get_json(&w, "/v2/app/tags/list").await;
    assert_eq!(v["tags"], serde_json::json!([]));
    // Blob delete unlinks it from the repository.
    let ld = digest(&layer);
    assert_eq!(
        status(&w, Method::DELETE, &format!("/v2/app/blobs/{ld}")).await,
        202
    );
    let r = c
        .get(w.url(&format!("/v2/app/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    let r = c
        .delete(w.url(&format!("/v2/app/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_digests_and_methods() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let c = http();
    let long = "a".repeat(256);
    for (path, code) in [
        ("/v2/..%2Fx/manifests/latest".to_owned(), "NAME_INVALID"),
        ("/v2/UPPER/manifests/latest".to_owned(), "NAME_INVALID"),
        (format!("/v2/{long}/manifests/latest"), "NAME_INVALID"),
        ("/v2/a..b/tags/list".to_owned(), "NAME_INVALID"),
        ("/v2/a/blobs/sha256:1234".to_owned(), "DIGEST_INVALID"),
        (
            format!("/v2/a/blobs/sha256:{}", "G".repeat(64)),
            "DIGEST_INVALID",
        ),
        (
            format!("/v2/a/blobs/md5:{}", "0".repeat(32)),
            "DIGEST_INVALID",
        ),
    ] {
        let r = c.get(w.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(error_code(r).await, code, "{path}");
    }
    // Literal ../ never reaches a handler (clients normalise it; raw requests too).
    let raw = raw_request(&w, "GET /v2/../../etc/passwd/manifests/latest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(
        raw.starts_with("HTTP/1.1 400") || raw.starts_with("HTTP/1.1 404"),
        "{raw}"
    );
    let r = c
        .post(w.url("/v2/a/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
    let r = c
        .put(w.url("/v2/a/blobs/uploads/not..an-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    w.stop().await;
}

async fn raw_request(w: &Wharf, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_upload_body_keeps_nothing_and_can_be_redone() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let data = bytes(100_000, 3);
    let d = digest(&data);
    // Promise 100000 bytes, send 10000, hang up.
    let mut s = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    let head = format!(
        "POST /v2/t/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&data[..10_000]).await.unwrap();
    drop(s);
    // The same blob pushed properly afterwards goes in, and only then is it there.
    let r = http()
        .head(w.url(&format!("/v2/t/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(push_blob(&w, "t", &data).await, d);
    let r = http()
        .get(w.url(&format!("/v2/t/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), data.len());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_hello_on_plain_port_fails_fast() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let mut s = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    // The start of a TLS 1.2 ClientHello record.
    s.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ])
    .await
    .unwrap();
    let mut buf = Vec::new();
    // The guard is far above what a fast failure takes; a stall would hit it.
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        r.is_ok(),
        "server stalled on a TLS ClientHello instead of closing"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let (manifest, d) = push_image(&w, "keep/me", "v1", &[tar_with_file("a", b"persist")]).await;
    w.stop().await;
    let w = Wharf::start(dir.path()).await;
    let r = http()
        .get(w.url("/v2/keep/me/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
    let v = get_json(&w, "/v2/_catalog").await;
    assert_eq!(v["repositories"], serde_json::json!(["keep/me"]));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    http()
        .get(w.url("/v2/x/manifests/nope"))
        .send()
        .await
        .unwrap();
    let text = http()
        .get(w.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "wharf_http_requests_total{method=\"GET\",route=\"manifest\",status=\"404\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("wharf_start_time_seconds"), "{text}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let w = Arc::new(Wharf::start(dir.path()).await);
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let layer = tar_with_file("f", &bytes(10_000 + i as usize, i));
            push_image(&w, "busy/repo", &format!("t{i}"), &[layer])
                .await
                .1
        }));
    }
    let mut digests = Vec::new();
    for t in tasks {
        digests.push(t.await.unwrap());
    }
    let v = get_json(&w, "/v2/busy/repo/tags/list").await;
    assert_eq!(v["tags"].as_array().unwrap().len(), 32);
    for (i, d) in digests.iter().enumerate() {
        let r = http()
            .head(w.url(&format!("/v2/busy/repo/manifests/t{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    }
    Arc::try_unwrap(w).ok().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn public_url_makes_locations_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_with(
        dir.path(),
        "[server]\npublic_url = \"https://registry.example.test/\"\n",
    )
    .await;
    let r = http()
        .post(w.url("/v2/abs/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with("https://registry.example.test/v2/abs/blobs/uploads/"),
        "{loc}"
    );
    let d = digest(b"abs");
    let r = http()
        .post(w.url(&format!("/v2/abs/blobs/uploads/?digest={d}")))
        .body("abs")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        format!("https://registry.example.test/v2/abs/blobs/{d}").as_str()
    );
    w.stop().await;
}
