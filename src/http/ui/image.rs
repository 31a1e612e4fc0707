//! `GET /ui/repos/<name>/-/<reference>`: one image (or index, or artifact):
//! its layers, its config (entrypoint, cmd, env, created, platform; the
//! config blob read through the store, at most 1 MiB), an index's platforms,
//! what refers to it (signatures, SBOMs), and lines to pull it with. Looking
//! is not pulling: nothing here touches last-read times.

use askama::Template;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use super::format::{bytes, repo_path, segment, short_digest};
use super::page::{Page, html};
use super::{UiError, Visit, visible_repo};
use crate::http::State;
use crate::http::body::Body;
use crate::oci::manifest::{ManifestKind, ManifestView};
use crate::oci::platform::MAX_CONFIG_BYTES;
use crate::oci::{Reference, RepoName};

/// A descriptor as a table row.
struct DescRow {
    digest: String,
    short_digest: String,
    size: String,
    media_type: String,
}

/// An index entry.
struct PlatformRow {
    platform: String,
    href: String,
    digest: String,
    short_digest: String,
    size: String,
}

/// A referrer.
struct ReferrerRow {
    artifact_type: String,
    href: String,
    digest: String,
    short_digest: String,
    size: String,
}

/// The subject of an artifact.
struct SubjectLink {
    digest: String,
    href: String,
}

/// What the config blob says.
struct ConfigView {
    platform: String,
    created: String,
    entrypoint: String,
    cmd: String,
    working_dir: String,
    user: String,
    ports: String,
    env: Vec<String>,
}

#[derive(Template)]
#[template(path = "ui/image.html")]
struct ImagePage<'a> {
    page: &'a Page,
    name: String,
    repo_href: String,
    /// `:tag` or `@digest`, after the name.
    shown_ref: String,
    /// The reference as written (tag or digest), for the forms.
    reference: String,
    is_tag: bool,
    digest: String,
    media_type: String,
    artifact_type: Option<String>,
    size: String,
    subject: Option<SubjectLink>,
    pinned: bool,
    pull_lines: Vec<String>,
    platforms: Vec<PlatformRow>,
    config: Option<ConfigView>,
    config_note: Option<String>,
    layers: Vec<DescRow>,
    annotations: Vec<(String, String)>,
    referrers: Vec<ReferrerRow>,
    /// How many refer to it in all (only [`MAX_REFERRERS`] are listed).
    referrer_total: usize,
}

/// Referrers listed on one image page; the rest are counted (`oras discover`
/// or the referrers API list them all).
const MAX_REFERRERS: usize = 100;

#[derive(Deserialize, Default)]
struct ImageConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `os/arch[/variant]` of an index entry's platform object.
fn platform_label(p: Option<&serde_json::Value>) -> String {
    let get = |k: &str| {
        p.and_then(|p| p.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (os, arch, variant) = (get("os"), get("architecture"), get("variant"));
    match (os.is_empty() && arch.is_empty(), variant.is_empty()) {
        (true, _) => "unknown".into(),
        (false, true) => format!("{os}/{arch}"),
        (false, false) => format!("{os}/{arch}/{variant}"),
    }
}

/// A JSON array of strings as a shell-ish line.
fn words(v: &Option<Vec<String>>) -> String {
    match v {
        Some(w) if !w.is_empty() => serde_json::to_string(w).unwrap_or_default(),
        _ => "—".into(),
    }
}

/// The page.
pub async fn show(
    state: &State,
    visit: &Visit,
    name: &RepoName,
    reference: &Reference,
    host: &ClientHost,
) -> Result<Response<Body>, UiError> {
    let local = visible_repo(state, visit, name).await?;
    let unknown = || UiError::NotFound(format!("{local} has no {reference} here"));
    let info = state
        .store
        .peek_manifest(&local, reference)
        .await?
        .ok_or_else(unknown)?;
    let raw = state.store.manifest_bytes(&info).await?;
    let media_type = info.media_type.clone();
    let view = tokio::task::spawn_blocking(move || ManifestView::parse(&raw, &media_type))
        .await
        .map_err(|e| UiError::Internal(e.to_string()))?
        .map_err(|e| UiError::Internal(format!("stored manifest does not parse: {e}")))?;
    let digest = info.digest.to_string();
    let repo_href = format!("{}repos/{}", visit.page.root, repo_path(local.as_str()));

    let mut platforms = Vec::new();
    let mut layers = Vec::new();
    let mut config = None;
    let mut config_note = None;
    match view.kind {
        ManifestKind::Index => {
            for c in &view.children {
                let d = c.digest.to_string();
                platforms.push(PlatformRow {
                    platform: platform_label(c.platform.as_ref()),
                    href: segment(&d),
                    short_digest: short_digest(&d),
                    size: bytes(c.size),
                    digest: d,
                });
            }
        }
        ManifestKind::Image => {
            let mut blobs = view.blobs.iter();
            if let Some(cfg) = blobs.next() {
                match read_config(state, &local, cfg).await? {
                    Ok(c) => config = Some(c),
                    Err(note) => config_note = Some(note),
                }
            }
            layers = blobs
                .map(|l| {
                    let d = l.digest.to_string();
                    DescRow {
                        short_digest: short_digest(&d),
                        size: bytes(l.size),
                        media_type: l.media_type.clone(),
                        digest: d,
                    }
                })
                .collect();
        }
    }
    let total: u64 = info.size + view.blobs.iter().map(|b| b.size).sum::<u64>();
    let all_referrers = state.store.referrers(&local, &info.digest, None).await?;
    let referrer_total = all_referrers.len();
    let referrers = all_referrers
        .into_iter()
        .take(MAX_REFERRERS)
        .map(|r| {
            let d = r.digest.to_string();
            ReferrerRow {
                artifact_type: r.artifact_type.unwrap_or(r.media_type),
                href: segment(&d),
                short_digest: short_digest(&d),
                size: bytes(r.size),
                digest: d,
            }
        })
        .collect();
    let pinned = state.store.pins().await?.iter().any(|p| {
        p.repo == local.as_str()
            && match reference {
                Reference::Tag(t) => p.tag.as_deref() == Some(t.as_str()) || p.digest == digest,
                Reference::Digest(_) => p.digest == digest,
            }
    });
    let annotations = view
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (k.clone(), v)
        })
        .collect();
    let (shown_ref, is_tag) = match reference {
        Reference::Tag(t) => (format!(":{t}"), true),
        Reference::Digest(d) => (format!("@{d}"), false),
    };
    let body = ImagePage {
        page: &visit.page,
        repo_href,
        pull_lines: pull_lines(host, &local, reference, &digest),
        shown_ref,
        reference: reference.to_string(),
        is_tag,
        media_type: info.media_type.clone(),
        artifact_type: view.artifact_type.clone(),
        size: match view.kind {
            ManifestKind::Image => format!("{} (manifest, config and layers)", bytes(total)),
            ManifestKind::Index => format!("{} (the index itself)", bytes(info.size)),
        },
        subject: view.subject.as_ref().map(|s| SubjectLink {
            href: segment(&s.digest.to_string()),
            digest: s.digest.to_string(),
        }),
        digest,
        pinned,
        platforms,
        config,
        config_note,
        layers,
        annotations,
        referrers,
        referrer_total,
        name: local.to_string(),
    }
    .render()
    .map_err(|e| UiError::Internal(e.to_string()))?;
    Ok(html(StatusCode::OK, body))
}

/// The config blob's facts, or why they are not shown.
async fn read_config(
    state: &State,
    repo: &RepoName,
    cfg: &crate::oci::Descriptor,
) -> Result<Result<ConfigView, String>, UiError> {
    if !cfg.media_type.contains("image.config") && !cfg.media_type.contains("container.image") {
        return Ok(Err(format!(
            "an artifact; its config is {}",
            cfg.media_type
        )));
    }
    if cfg.size > MAX_CONFIG_BYTES {
        return Ok(Err("the config is too large to show".into()));
    }
    let Some(raw) = state
        .store
        .peek_small_blob(repo, &cfg.digest, MAX_CONFIG_BYTES)
        .await?
    else {
        return Ok(Err(
            "the config is not stored here yet (it is fetched with the first pull)".into(),
        ));
    };
    let parsed = tokio::task::spawn_blocking(move || serde_json::from_slice::<ImageConfig>(&raw))
        .await
        .map_err(|e| UiError::Internal(e.to_string()))?;
    let Ok(c) = parsed else {
        return Ok(Err("the config does not parse".into()));
    };
    let run = c.config.unwrap_or_default();
    let platform = platform_label(Some(&serde_json::json!({
        "os": c.os.unwrap_or_default(),
        "architecture": c.architecture.unwrap_or_default(),
        "variant": c.variant.unwrap_or_default(),
    })));
    let mut ports: Vec<String> = run
        .exposed_ports
        .unwrap_or_default()
        .keys()
        .cloned()
        .collect();
    ports.sort();
    Ok(Ok(ConfigView {
        platform,
        created: c.created.unwrap_or_else(|| "—".into()),
        entrypoint: words(&run.entrypoint),
        cmd: words(&run.cmd),
        working_dir: run.working_dir.unwrap_or_default(),
        user: run.user.unwrap_or_default(),
        ports: ports.join(", "),
        env: run.env.unwrap_or_default(),
    }))
}

/// The registry as clients reach it: host (and port), and whether it is
/// plain HTTP (then the lines carry each tool's insecure flag).
pub struct ClientHost {
    host: String,
    plain: bool,
}

/// Where clients reach this registry: `public_url`, else the request's
/// `Host` (or HTTP/2 `:authority`), with the scheme the browser used.
pub fn client_host(state: &State, req: &Request<Incoming>) -> ClientHost {
    if let Some(base) = &state.public_url {
        let (scheme, host) = base.split_once("://").unwrap_or(("https", base));
        return ClientHost {
            host: host.trim_end_matches('/').to_owned(),
            plain: scheme == "http",
        };
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .filter(|h| is_authority(h))
        .unwrap_or("localhost")
        .to_owned();
    let forwarded_https = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    ClientHost {
        host,
        plain: state.tls.is_none() && !forwarded_https,
    }
}

/// Whether `h` looks like a host name with an optional port (or a bracketed
/// IPv6 address): the copy-paste lines are pasted into a shell, so a `Host`
/// carrying anything else (`$(…)`, `;`, `|`) never reaches them.
fn is_authority(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// Copy-paste lines for docker, skopeo and crane on the host clients use.
fn pull_lines(
    host: &ClientHost,
    repo: &RepoName,
    reference: &Reference,
    digest: &str,
) -> Vec<String> {
    let h = &host.host;
    let by_ref = match reference {
        Reference::Tag(t) => format!("{h}/{repo}:{t}"),
        Reference::Digest(d) => format!("{h}/{repo}@{d}"),
    };
    let by_digest = format!("{h}/{repo}@{digest}");
    let dir = repo.as_str().rsplit('/').next().unwrap_or("image");
    let (skopeo_tls, crane_tls) = if host.plain {
        (" --src-tls-verify=false", " --insecure")
    } else {
        ("", "")
    };
    vec![
        format!("docker pull {by_ref}"),
        format!("skopeo copy --all{skopeo_tls} docker://{by_digest} oci:{dir}"),
        format!("crane pull{crane_tls} {by_ref} {dir}.tar"),
    ]
}
