//! `wharf config from-registry FILE`: a `registry:2` `config.yml` (plus the
//! `REGISTRY_*` environment overrides registry:2 honours) rewritten as an
//! equivalent, commented `wharf.toml`. Offline: it reads the file and the
//! environment, nothing else. Every key is either mapped or listed with the
//! reason it is not (mappers take keys out of the tree; `rest` lists what is left).

mod auth;
mod bounds;
mod draft;
mod duration;
mod env;
mod http;
mod log;
mod proxy;
mod rest;
mod storage;
mod tree;

use yaml_rust2::YamlLoader;

pub use bounds::MAX_CONFIG_BYTES;
use tree::Node;

/// Why a `config.yml` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file is not YAML.
    #[error("{source_name} is not valid YAML: {message}")]
    Yaml {
        /// The file, as named on the command line.
        source_name: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// YAML, but not a registry configuration (a mapping at the top).
    #[error(
        "{source_name} is not a registry:2 configuration: expected a mapping of keys such as \
         version, http, storage, auth at the top"
    )]
    NotAConfig {
        /// The file, as named on the command line.
        source_name: String,
    },
    /// Too big to be a registry configuration once its aliases are expanded.
    #[error("{source_name} is refused: {message}")]
    TooLarge {
        /// The file, as named on the command line.
        source_name: String,
        /// What is too large.
        message: String,
    },
}

/// The `wharf.toml` equivalent to `yaml` with `env`'s `REGISTRY_*` variables
/// applied; `source_name` names the file in the output and in errors.
pub fn from_registry(
    yaml: &str,
    source_name: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<String, MigrateError> {
    bounds::check(yaml).map_err(|message| MigrateError::TooLarge {
        source_name: source_name.to_owned(),
        message,
    })?;
    let docs = YamlLoader::load_from_str(yaml).map_err(|e| MigrateError::Yaml {
        source_name: source_name.to_owned(),
        message: e.to_string(),
    })?;
    let not_config = || MigrateError::NotAConfig {
        source_name: source_name.to_owned(),
    };
    let mut root = match docs.first().map(Node::from_yaml) {
        Some(Some(n @ Node::Map(_))) => n,
        _ => return Err(not_config()),
    };
    let mut d = draft::Draft {
        env: env::apply(&mut root, env),
        ..Default::default()
    };
    http::map(&mut root, &mut d);
    let users = auth::map(&mut root, &mut d);
    storage::map(&mut root, &mut d, users);
    proxy::map(&mut root, &mut d);
    log::map(&mut root, &mut d);
    rest::map(&mut root, &mut d);
    Ok(d.render(source_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn convert(yaml: &str, env: &[(&str, &str)]) -> String {
        let out = from_registry(
            yaml,
            "config.yml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        if let Err(e) = crate::config::Config::parse(&out, Path::new("out.toml")) {
            panic!("{e}\n{out}");
        }
        out
    }

    #[test]
    fn minimal_config_is_a_private_registry_on_all_interfaces() {
        let out = convert(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/reg\nhttp:\n  addr: :5000\n",
            &[],
        );
        let cfg = crate::config::Config::parse(&out, Path::new("o")).unwrap();
        assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:5000");
        assert!(cfg.hosted.only);
        assert!(cfg.upstream.is_empty());
        assert!(out.contains("wharf import /srv/reg"), "{out}");
        assert!(!out.contains("Not mapped"), "{out}");
    }

    #[test]
    fn htpasswd_without_delete_gives_basic_auth_and_a_rule_without_delete() {
        let out = convert(
            "auth:\n  htpasswd:\n    realm: r\n    path: /auth/htpasswd\n",
            &[],
        );
        let cfg = crate::config::Config::parse(&out, Path::new("o")).unwrap();
        assert_eq!(
            cfg.auth.htpasswd.as_deref(),
            Some(Path::new("/auth/htpasswd"))
        );
        assert_eq!(cfg.auth.anonymous_pull, crate::config::AnonymousPull::None);
        assert_eq!(cfg.auth.rule.len(), 1);
        assert!(
            !cfg.auth.rule[0]
                .actions
                .contains(&crate::config::Action::Delete)
        );
        assert!(out.contains("auth.htpasswd.realm"), "{out}");
        let out = convert(
            "auth:\n  htpasswd:\n    path: /h\n",
            &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")],
        );
        let cfg = crate::config::Config::parse(&out, Path::new("o")).unwrap();
        assert!(cfg.auth.rule.is_empty(), "{out}");
        assert!(out.contains("REGISTRY_STORAGE_DELETE_ENABLED"), "{out}");
    }

    #[test]
    fn proxy_becomes_an_upstream_and_the_password_never_appears() {
        let out = convert(
            "proxy:\n  remoteurl: https://registry-1.docker.io\n  username: bob\n  password: hunter2secret\n",
            &[],
        );
        assert!(!out.contains("hunter2secret"), "{out}");
        let cfg = crate::config::Config::parse(&out, Path::new("o")).unwrap();
        assert_eq!(cfg.upstream.len(), 1);
        assert_eq!(cfg.upstream[0].name, "docker.io");
        assert_eq!(cfg.upstream[0].username.as_deref(), Some("bob"));
        assert!(cfg.upstream[0].password_file.is_some());
        assert!(!cfg.hosted.only);
    }

    #[test]
    fn unknown_and_unmappable_keys_are_listed_with_reasons_and_no_secrets() {
        let out = convert(
            "http:\n  secret: s3cr3tvalue\n  headers:\n    X-Content-Type-Options: [nosniff]\n\
             redis:\n  addr: localhost:6379\n  password: redispw\n\
             storage:\n  s3:\n    accesskey: AKIAX\n    secretkey: SK\n    bucket: b\n\
             something: else\n",
            &[],
        );
        for secret in ["s3cr3tvalue", "redispw", "AKIAX"] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        for key in [
            "http.secret",
            "http.headers",
            "X-Content-Type-Options",
            "redis.addr",
            "storage.s3",
            "something",
        ] {
            assert!(out.contains(key), "{key} not listed:\n{out}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            from_registry("a: [unclosed", "c.yml", Vec::new()),
            Err(MigrateError::Yaml { .. })
        ));
        assert!(matches!(
            from_registry("just a string", "c.yml", Vec::new()),
            Err(MigrateError::NotAConfig { .. })
        ));
        assert!(matches!(
            from_registry("", "c.yml", Vec::new()),
            Err(MigrateError::NotAConfig { .. })
        ));
    }
}
