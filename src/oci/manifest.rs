//! Read-only views of manifests: which blobs and child manifests they reference,
//! their subject and artifact type. wharf never rewrites a manifest; it stores the
//! exact bytes a client pushed, so these views only parse.

use serde::Deserialize;

use super::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 (deprecated, refused: its signed form cannot be stored byte-exact safely).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Largest manifest body accepted (distribution's `maxManifestBodySize`).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Whether a manifest points at blobs or at other manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// Config + layers, all blobs.
    Image,
    /// A list of child manifests (multi-arch).
    Index,
}

/// Why bytes are not an acceptable manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("manifest is not valid JSON of a known shape: {0}")]
    Json(#[from] serde_json::Error),
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is larger than 4 MiB")]
    TooLarge,
    /// Content-Type and the `mediaType` field disagree, or neither names a known type.
    #[error("{0}")]
    MediaType(String),
    /// A required field is missing or the schema version is wrong.
    #[error("{0}")]
    Shape(String),
}

/// A content descriptor as it appears in manifests and the referrers response.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// OCI 1.1 artifact type, when the descriptor names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations, carried through to the referrers response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    /// Platform of an index entry (kept only so it round-trips).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    /// External URLs of foreign layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// Foreign and non-distributable layers live elsewhere; registries do not require them.
    pub fn is_foreign(&self) -> bool {
        self.media_type.contains("foreign") || self.media_type.contains("nondistributable")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What the registry needs to know about a manifest to validate and index it.
#[derive(Debug, Clone)]
pub struct ManifestView {
    /// The media type it is served with.
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// Blobs it needs (config and layers) for an image.
    pub blobs: Vec<Descriptor>,
    /// Child manifests for an index.
    pub children: Vec<Descriptor>,
    /// OCI 1.1 subject, when this manifest refers to another.
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest without one, the config media type
    /// (the spec's rule for the referrers response).
    pub artifact_type: Option<String>,
    /// Top-level annotations, shown in the referrers response.
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

fn kind_of_media_type(mt: &str) -> Option<ManifestKind> {
    match mt {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// True for the media types wharf stores and serves as manifests.
pub fn is_manifest_media_type(mt: &str) -> bool {
    kind_of_media_type(mt).is_some()
}

impl ManifestView {
    /// Parses manifest bytes pushed with `content_type` (the request's Content-Type,
    /// without parameters; may be empty).
    pub fn parse(bytes: &[u8], content_type: &str) -> Result<ManifestView, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let raw: RawManifest = serde_json::from_slice(bytes)?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::Shape(
                "manifest schemaVersion must be 2 (schema 1 manifests are not supported)".into(),
            ));
        }
        let ct = content_type.trim();
        let media_type = match (&raw.media_type, ct) {
            (Some(field), ct) if !ct.is_empty() && field != ct && is_manifest_media_type(ct) => {
                return Err(ManifestError::MediaType(format!(
                    "manifest mediaType {field:?} does not match Content-Type {ct:?}"
                )));
            }
            (Some(field), _) => field.clone(),
            (None, ct) if is_manifest_media_type(ct) => ct.to_owned(),
            // No mediaType field and no usable Content-Type: OCI allows omitting the
            // field, so infer it from the shape.
            (None, _) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, _) if raw.config.is_some() => OCI_MANIFEST.to_owned(),
            (None, ct) => {
                return Err(ManifestError::MediaType(format!(
                    "unknown manifest media type {ct:?}"
                )));
            }
        };
        if media_type == DOCKER_SCHEMA1 {
            return Err(ManifestError::MediaType(
                "Docker schema 1 manifests are not supported".into(),
            ));
        }
        let kind = kind_of_media_type(&media_type).ok_or_else(|| {
            ManifestError::MediaType(format!("unknown manifest media type {media_type:?}"))
        })?;
        let (blobs, children) = match kind {
            ManifestKind::Image => {
                if raw.manifests.is_some() {
                    return Err(ManifestError::Shape(
                        "an image manifest must not have \"manifests\"".into(),
                    ));
                }
                let config = raw.config.clone().ok_or_else(|| {
                    ManifestError::Shape("image manifest has no \"config\"".into())
                })?;
                let mut blobs = vec![config];
                blobs.extend(raw.layers.unwrap_or_default());
                (blobs, Vec::new())
            }
            ManifestKind::Index => {
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(ManifestError::Shape(
                        "an index must not have \"config\" or \"layers\"".into(),
                    ));
                }
                let children = raw
                    .manifests
                    .ok_or_else(|| ManifestError::Shape("index has no \"manifests\"".into()))?;
                (Vec::new(), children)
            }
        };
        let artifact_type = raw.artifact_type.or_else(|| match kind {
            ManifestKind::Image => raw.config.as_ref().map(|c| c.media_type.clone()),
            ManifestKind::Index => None,
        });
        Ok(ManifestView {
            media_type,
            kind,
            blobs,
            children,
            subject: raw.subject,
            artifact_type,
            annotations: raw.annotations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn parses_oci_manifest_with_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x-sig",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{CFG}","size":2}},
            "layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{CFG}","size":2}}}}"#
        );
        let v = ManifestView::parse(body.as_bytes(), OCI_MANIFEST).unwrap();
        assert_eq!(v.kind, ManifestKind::Image);
        assert_eq!(v.blobs.len(), 1);
        assert_eq!(v.artifact_type.as_deref(), Some("application/x-sig"));
        assert!(v.subject.is_some());
    }

    #[test]
    fn rejects_mismatch_and_garbage() {
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(ManifestView::parse(body.as_bytes(), OCI_MANIFEST).is_err());
        assert!(ManifestView::parse(body.as_bytes(), OCI_INDEX).is_ok());
        assert!(ManifestView::parse(b"{", OCI_MANIFEST).is_err());
        assert!(ManifestView::parse(br#"{"schemaVersion":1}"#, OCI_MANIFEST).is_err());
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            ManifestView::parse(&big, OCI_MANIFEST),
            Err(ManifestError::TooLarge)
        ));
        let no_config =
            format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","layers":[]}}"#);
        assert!(ManifestView::parse(no_config.as_bytes(), "").is_err());
    }

    #[test]
    fn infers_type_without_field_and_config_is_artifact_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/x-cfg","digest":"{CFG}","size":2}},"layers":[]}}"#
        );
        let v = ManifestView::parse(body.as_bytes(), "application/octet-stream").unwrap();
        assert_eq!(v.media_type, OCI_MANIFEST);
        assert_eq!(v.artifact_type.as_deref(), Some("application/x-cfg"));
    }
}
