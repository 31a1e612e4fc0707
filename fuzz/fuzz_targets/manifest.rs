//! Manifests and indexes as clients push them and upstreams serve them.
//! The first byte picks the Content-Type (one of the known ones, empty, or junk);
//! the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::oci::manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, OCI_INDEX, OCI_MANIFEST,
    is_manifest_media_type,
};
use wharf::oci::{ManifestKind, ManifestView};

const TYPES: [&str; 8] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    "",
    "application/json",
    "application/octet-stream",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ct = TYPES[sel as usize % TYPES.len()];
    if let Ok(v) = ManifestView::parse(body, ct) {
        assert!(is_manifest_media_type(&v.media_type), "{:?}", v.media_type);
        match v.kind {
            ManifestKind::Image => assert!(!v.blobs.is_empty() && v.children.is_empty()),
            ManifestKind::Index => assert!(v.blobs.is_empty()),
        }
    }
});
