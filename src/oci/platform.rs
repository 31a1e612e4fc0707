//! Which platforms a manifest serves (`linux/amd64`, `linux/arm64/v8`), for the
//! admin API's tag listing: an index lists them in `manifests[].platform`; an
//! image manifest's platform is in its config blob, which the caller reads.

use serde::Deserialize;

use super::digest::Digest;

/// Media types of image configs that carry `os` and `architecture`.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Largest config blob read for its platform; real configs are a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`; `None` for the placeholders attestation manifests
    /// carry (`unknown/unknown`) and for empty fields.
    fn label(&self) -> Option<String> {
        if self.os.is_empty() || self.architecture.is_empty() || self.os == "unknown" {
            return None;
        }
        Some(match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        })
    }
}

#[derive(Deserialize)]
struct Entry {
    platform: Option<Platform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigRef {
    media_type: String,
    digest: Digest,
    size: u64,
}

#[derive(Deserialize)]
struct Manifest {
    manifests: Option<Vec<Entry>>,
    config: Option<ConfigRef>,
}

/// What a manifest says about its platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// An index: the platforms of its entries, in order, without repeats.
    Listed(Vec<String>),
    /// An image manifest whose config blob (this digest, this many bytes) holds
    /// its platform.
    InConfig(Digest, u64),
    /// Neither (an artifact, or bytes that do not parse).
    Unknown,
}

/// Reads the platforms of a manifest's bytes.
pub fn of_manifest(bytes: &[u8]) -> Platforms {
    let Ok(m) = serde_json::from_slice::<Manifest>(bytes) else {
        return Platforms::Unknown;
    };
    if let Some(entries) = m.manifests {
        // A set beside the list: an index may hold tens of thousands of
        // entries, and a scan of the list per entry is quadratic.
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<String> = Vec::new();
        for label in entries.iter().filter_map(|e| e.platform.as_ref()?.label()) {
            if seen.insert(label.clone()) {
                out.push(label);
            }
        }
        return Platforms::Listed(out);
    }
    match m.config {
        Some(c) if IMAGE_CONFIGS.contains(&c.media_type.as_str()) && c.size <= MAX_CONFIG_BYTES => {
            Platforms::InConfig(c.digest, c.size)
        }
        _ => Platforms::Unknown,
    }
}

/// The platform an image config blob names.
pub fn of_config(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Platform>(bytes).ok()?.label()
}

/// A platform as configuration writes it (`linux/amd64`, `linux/arm/v7`): what
/// a `[[sync]]` rule's `platforms` keeps of an index. Without a variant it
/// matches every variant of the architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl std::str::FromStr for PlatformSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if ok(os) && ok(arch) => {
                let variant = parts.get(2).map(|v| (*v).to_owned());
                if variant.as_deref().is_some_and(|v| !ok(v)) {
                    return Err(format!("{s:?} is not os/arch[/variant]"));
                }
                Ok(PlatformSpec {
                    os: (*os).to_owned(),
                    architecture: (*arch).to_owned(),
                    variant,
                })
            }
            _ => Err(format!(
                "{s:?} is not os/arch[/variant] (lowercase, like linux/amd64 or linux/arm/v7)"
            )),
        }
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl PlatformSpec {
    /// Whether an index entry's `platform` object is this platform.
    pub fn matches(&self, platform: &serde_json::Value) -> bool {
        let Ok(p) = serde_json::from_value::<Platform>(platform.clone()) else {
            return false;
        };
        p.os == self.os
            && p.architecture == self.architecture
            && match &self.variant {
                None => true,
                Some(v) => {
                    p.variant
                        .as_deref()
                        .filter(|x| !x.is_empty())
                        .or_else(|| default_variant(&p.architecture))
                        == Some(v.as_str())
                }
            }
    }
}

/// The variant an architecture means when an index entry names none, as
/// containerd normalises it: `arm64` is `v8` (`linux/arm64/v8` and a plain
/// `linux/arm64` entry are the same platform).
fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_platforms_skip_attestations_and_repeats() {
        let idx = br#"{"schemaVersion":2,"manifests":[
            {"platform":{"os":"linux","architecture":"amd64"}},
            {"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"platform":{"os":"unknown","architecture":"unknown"}},
            {"platform":{"os":"linux","architecture":"amd64"}},
            {}
        ]}"#;
        assert_eq!(
            of_manifest(idx),
            Platforms::Listed(vec!["linux/amd64".into(), "linux/arm64/v8".into()])
        );
    }

    #[test]
    fn image_platforms_come_from_the_config() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":120}},"layers":[]}}"#
        );
        assert_eq!(
            of_manifest(m.as_bytes()),
            Platforms::InConfig(d.parse().unwrap(), 120)
        );
        let artifact = m.replace("image.config.v1+json", "empty.v1+json");
        assert_eq!(of_manifest(artifact.as_bytes()), Platforms::Unknown);
        assert_eq!(of_manifest(b"not json"), Platforms::Unknown);
        assert_eq!(
            of_config(br#"{"os":"linux","architecture":"arm","variant":"v7","rootfs":{}}"#),
            Some("linux/arm/v7".into())
        );
        assert_eq!(of_config(b"{}"), None);
    }

    #[test]
    fn platform_specs_parse_and_match() {
        let amd: PlatformSpec = "linux/amd64".parse().unwrap();
        let v7: PlatformSpec = "linux/arm/v7".parse().unwrap();
        assert_eq!(v7.to_string(), "linux/arm/v7");
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v1/x",
            "Linux/amd64",
            "",
        ] {
            assert!(bad.parse::<PlatformSpec>().is_err(), "{bad}");
        }
        let p = |j: &str| serde_json::from_str::<serde_json::Value>(j).unwrap();
        assert!(amd.matches(&p(r#"{"os":"linux","architecture":"amd64"}"#)));
        assert!(amd.matches(&p(
            r#"{"os":"linux","architecture":"amd64","variant":"v3"}"#
        )));
        assert!(!amd.matches(&p(r#"{"os":"linux","architecture":"arm64"}"#)));
        assert!(v7.matches(&p(r#"{"os":"linux","architecture":"arm","variant":"v7"}"#)));
        assert!(!v7.matches(&p(r#"{"os":"linux","architecture":"arm","variant":"v6"}"#)));
        assert!(!amd.matches(&p("null")));
        // linux/arm64/v8 is what a plain arm64 entry means.
        let v8: PlatformSpec = "linux/arm64/v8".parse().unwrap();
        assert!(v8.matches(&p(r#"{"os":"linux","architecture":"arm64"}"#)));
        assert!(v8.matches(&p(
            r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#
        )));
        assert!(!v8.matches(&p(
            r#"{"os":"linux","architecture":"arm64","variant":"v9"}"#
        )));
        // A plain arm entry names no variant: v7 does not claim it.
        assert!(!v7.matches(&p(r#"{"os":"linux","architecture":"arm"}"#)));
    }
}
