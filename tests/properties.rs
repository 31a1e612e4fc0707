//! Cheap invariants of the parsers that read client and upstream bytes, checked on
//! generated inputs in every `cargo test`. The targets in `fuzz/` explore the same
//! parsers for longer (see README).

use std::path::Path;

use http::Method;
use proptest::prelude::*;
use wharf::auth::htpasswd;
use wharf::config::Config;
use wharf::http::query::Query;
use wharf::http::router::Route;
use wharf::oci::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use wharf::oci::routing::{Intent, NameFacts, RouteRules, Target};
use wharf::oci::{Digest, ManifestKind, ManifestView, Reference, RepoName, Tag};
use wharf::upstream::token::Challenge;

/// What the store holds, for routing: every name alike.
struct Facts {
    hosted: bool,
    mirrored: bool,
}

impl NameFacts for Facts {
    fn is_hosted(&self, _: &str) -> bool {
        self.hosted
    }
    fn is_mirrored(&self, _: &str) -> bool {
        self.mirrored
    }
}

/// One path component by the spec's grammar: `[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*`.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,10}(([._]|__|-{1,3})[a-z0-9]{1,10}){0,3}"
}

/// A valid repository name: components joined by `/`, at most 255 characters.
fn repo_name() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..6)
        .prop_map(|c| c.join("/"))
        .prop_filter("at most 255 characters", |s| s.len() <= 255)
}

fn tag() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
}

fn digest() -> impl Strategy<Value = String> {
    "sha256:[0-9a-f]{64}"
}

/// Strings near the grammar (its alphabet plus a few hostile characters), which
/// reach deeper into the parsers than uniformly random text.
fn near_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._/:%@ -]{0,300}"
}

fn media_type() -> impl Strategy<Value = Option<&'static str>> {
    prop::option::of(prop::sample::select(vec![
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
        "",
    ]))
}

fn descriptor_json(d: &str) -> serde_json::Value {
    serde_json::json!({"mediaType": "application/octet-stream", "digest": d, "size": 1})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_repo_names_print_back(s in repo_name()) {
        let n: RepoName = s.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(n.to_string(), s.clone());
        prop_assert_eq!(n.as_str(), s.as_str());
    }

    #[test]
    fn names_longer_than_255_are_refused(name in repo_name(), long in "[a-z0-9]{200,260}") {
        // Lengths from about 200 to 500, on both sides of the limit.
        let s = format!("{long}/{name}");
        prop_assert_eq!(s.parse::<RepoName>().is_ok(), s.len() <= 255, "{}", s.len());
    }

    #[test]
    fn valid_tags_digests_and_references_print_back(t in tag(), d in digest()) {
        let parsed: Tag = t.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(parsed.to_string(), t.clone());
        let parsed: Digest = d.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(parsed.to_string(), d.clone());
        prop_assert!(matches!(t.parse::<Reference>(), Ok(Reference::Tag(ref x)) if x.as_str() == t));
        prop_assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(ref x)) if x.to_string() == d));
    }

    #[test]
    fn arbitrary_strings_never_panic_the_name_parsers(s in prop_oneof![any::<String>(), near_name()]) {
        // Whatever parses prints back exactly: nothing is normalised on the way in.
        if let Ok(n) = s.parse::<RepoName>() {
            prop_assert_eq!(n.to_string(), s.clone());
        }
        if let Ok(t) = s.parse::<Tag>() {
            prop_assert_eq!(t.to_string(), s.clone());
        }
        if let Ok(d) = s.parse::<Digest>() {
            prop_assert_eq!(d.to_string(), s.clone());
        }
        if let Ok(r) = s.parse::<Reference>() {
            prop_assert_eq!(r.to_string(), s.clone());
        }
    }

    #[test]
    fn routing_never_panics_and_proxied_names_keep_their_upstream(
        upstreams in prop::collection::vec((component(), any::<bool>()), 0..4),
        prefixes in prop::collection::vec(prop_oneof![near_name(), component().prop_map(|c| c + "/")], 0..3),
        name in repo_name(),
        ns in prop::option::of(prop_oneof![component(), near_name()]),
        pick_ns in any::<prop::sample::Index>(),
        pushed_here in any::<bool>(),
        mirrored in any::<bool>(),
        claim_on_push in any::<bool>(),
        push in any::<bool>(),
    ) {
        let rules = RouteRules { upstreams, hosted_prefixes: prefixes, claim_on_push, hosted_only: false };
        let facts = Facts { hosted: pushed_here, mirrored };
        let intent = if push { Intent::Push } else { Intent::Read };
        let name: RepoName = name.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        // Half the time the ns names a configured upstream, as containerd sends it.
        let ns = match (&ns, rules.upstreams.is_empty()) {
            (Some(_), false) if pick_ns.index(2) == 0 => {
                Some(rules.upstreams[pick_ns.index(rules.upstreams.len())].0.clone())
            }
            _ => ns,
        };
        match rules.route(&name, ns.as_deref(), intent, &facts) {
            Err(_) | Ok(Target::Hosted { .. }) => {}
            Ok(Target::Proxied(m)) => {
                let (uname, _) = &rules.upstreams[m.upstream];
                prop_assert!(m.local.as_str().starts_with(&format!("{uname}/")), "{:?} {uname:?}", m.local);
                prop_assert_eq!(m.local.as_str(), format!("{uname}/{}", m.remote));
            }
        }
    }

    #[test]
    fn router_never_panics(
        segs in prop::collection::vec(prop_oneof![
            component(), Just("manifests".to_owned()), Just("blobs".to_owned()),
            Just("uploads".to_owned()), Just("tags".to_owned()), Just("list".to_owned()),
            Just("referrers".to_owned()), Just("..".to_owned()), Just(String::new()), digest(), near_name(),
        ], 0..8),
        prefix in prop::sample::select(vec!["/v2/", "/_wharf/", "/_wharf/v1/", "/_wharf/v1/repos/", "/", ""]),
        method in prop::sample::select(vec![Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE]),
    ) {
        let path = format!("{prefix}{}", segs.join("/"));
        if let Ok(wharf::http::admin::AdminRoute::Repo { name }) =
            wharf::http::admin::AdminRoute::parse(&method, &path)
        {
            prop_assert!(path.ends_with(name.as_str()), "{path:?}");
        }
        if let Ok(route) = Route::parse(&method, &path) {
            if let Some(repo) = route.repo() {
                prop_assert!(path.starts_with(&format!("/v2/{repo}/")), "{path:?}");
            }
        }
    }

    #[test]
    fn query_parse_never_panics_and_decodes_what_was_encoded(
        raw in any::<String>(),
        key in "[a-z]{1,8}",
        value in any::<String>(),
    ) {
        let _ = Query::parse(Some(&raw));
        let _ = Query::parse_form(&raw);
        let encoded: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
        let q = Query::parse(Some(&format!("{raw}&{key}={encoded}")));
        prop_assert!(q.all(&key).any(|v| v == value));
    }

    #[test]
    fn manifest_parse_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        ct in media_type(),
    ) {
        let _ = ManifestView::parse(&bytes, ct.unwrap_or(""));
    }

    #[test]
    fn manifests_of_every_shape_parse_to_the_right_kind(
        schema in prop::sample::select(vec![1u32, 2, 3]),
        field in media_type(),
        ct in media_type(),
        config in any::<bool>(),
        layers in prop::option::of(prop::collection::vec(digest(), 0..3)),
        manifests in prop::option::of(prop::collection::vec(digest(), 0..3)),
        d in digest(),
    ) {
        let mut m = serde_json::json!({"schemaVersion": schema});
        if let Some(f) = field {
            m["mediaType"] = f.into();
        }
        if config {
            m["config"] = descriptor_json(&d);
        }
        if let Some(l) = &layers {
            m["layers"] = l.iter().map(|x| descriptor_json(x)).collect();
        }
        if let Some(c) = &manifests {
            m["manifests"] = c.iter().map(|x| descriptor_json(x)).collect();
        }
        let bytes = serde_json::to_vec(&m).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        if let Ok(v) = ManifestView::parse(&bytes, ct.unwrap_or("")) {
            prop_assert_eq!(schema, 2);
            match v.kind {
                ManifestKind::Image => {
                    prop_assert!(config && manifests.is_none());
                    prop_assert_eq!(v.blobs.len(), 1 + layers.map_or(0, |l| l.len()));
                }
                ManifestKind::Index => {
                    prop_assert!(!config && layers.is_none());
                    prop_assert_eq!(v.children.len(), manifests.map_or(0, |c| c.len()));
                }
            }
        }
    }

    #[test]
    fn challenges_and_htpasswd_never_panic(s in any::<String>()) {
        let _ = Challenge::parse(&s);
        let _ = Challenge::parse(&format!("Bearer {s}"));
        if let Ok(users) = htpasswd::parse(&s, "p") {
            prop_assert!(users.values().all(|h| htpasswd::is_bcrypt(h)));
        }
    }
}

/// TOML-ish fragments, so some generated files get past the syntax check into
/// the schema and validation.
fn config_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("[server]".to_owned()),
        Just("[storage]".to_owned()),
        Just("[auth]".to_owned()),
        Just("[[upstream]]".to_owned()),
        Just("[gc]".to_owned()),
        Just("[log]".to_owned()),
        ("[a-z_]{1,14}", "[a-zA-Z0-9 .:/\"_-]{0,20}").prop_map(|(k, v)| format!("{k} = \"{v}\"")),
        ("[a-z_]{1,14}", any::<i64>()).prop_map(|(k, v)| format!("{k} = {v}")),
        prop::sample::select(vec![
            "listen = \"127.0.0.1:0\"",
            "max_cache_size = \"18446744073709551615TiB\"",
            "max_cache_size = \"200GiB\"",
            "manifest_ttl = \"99999999999999999999d\"",
            "grace = \"5m\"",
            "low_watermark = nan",
            "name = \"docker.io\"",
            "url = \"https://registry-1.docker.io\"",
            "default = true",
            "level = \"info,wharf=debug\"",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn config_parse_never_panics(text in prop_oneof![any::<String>(), config_text()]) {
        if let Ok(cfg) = Config::parse(&text, Path::new("p.toml")) {
            prop_assert!(!cfg.upstream.is_empty());
        }
    }
}
