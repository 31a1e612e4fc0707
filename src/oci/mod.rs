//! OCI types only, no I/O: digests, names, references, manifest views and the
//! wire error codes. Every other layer depends on these; they depend on nothing.

pub mod digest;
pub mod error_code;
pub mod image_ref;
pub mod manifest;
pub mod name;
pub mod platform;
pub mod routing;

pub use digest::{Digest, DigestError, DigestHasher};
pub use error_code::ErrorCode;
pub use image_ref::{ImageRef, ImageRefError};
pub use manifest::{Descriptor, ManifestError, ManifestKind, ManifestView};
pub use name::{NameError, Reference, RepoName, Tag};
