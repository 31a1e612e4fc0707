//! Where a digest's file lives in a `blobs/sha256` tree: the layout the data
//! directory and a backup share (`ab/abcd…`), in one place both use.

use std::path::{Path, PathBuf};

use crate::oci::Digest;

/// Where the file of `digest` lives under `blobs` (`blobs/sha256`). Safe: a
/// `Digest` is 64 hex characters.
pub(super) fn layout_path(blobs: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    blobs.join(&hex[..2]).join(hex)
}
