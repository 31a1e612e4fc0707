//! `[[sync]]` rules checked at load: the image routes to an upstream, the
//! tags are globs, the platforms are `os/arch[/variant]`, the interval is not
//! zero and no rule appears twice. The worker builds on what passes here, so
//! a configuration that loads is one it can run.

use std::collections::HashSet;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{Config, SyncConfig, UpstreamConfig};
use crate::oci::RepoName;
use crate::oci::platform::PlatformSpec;
use crate::oci::routing::{Intent, Mirror, NoFacts, Target};

/// Pulls left in Docker Hub's window under which a rule pauses its fetches.
pub const DEFAULT_RATELIMIT_FLOOR: u64 = 10;

impl SyncConfig {
    /// The rule's stable key (image and tags): what its persisted state is
    /// filed under, so a restart finds it and an edited rule starts afresh.
    pub fn key(&self) -> String {
        format!("{} {}", self.image, self.tags.join(","))
    }

    /// The tag globs as one matcher (`1.2*` matches `1.2` and `1.20`).
    pub fn tag_matcher(&self) -> Result<GlobSet, String> {
        let mut b = GlobSetBuilder::new();
        for t in &self.tags {
            b.add(Glob::new(t).map_err(|e| format!("sync.tags {t:?} is not a glob: {e}"))?);
        }
        b.build().map_err(|e| format!("sync.tags: {e}"))
    }

    /// The platforms to keep of an index (empty: all of them).
    pub fn platform_specs(&self) -> Result<Vec<PlatformSpec>, String> {
        self.platforms
            .iter()
            .map(|p| p.parse().map_err(|e| format!("sync.platforms: {e}")))
            .collect()
    }
}

impl Config {
    /// Where `[[sync]]` rule `rule`'s image is mirrored from: its upstream,
    /// remote and local names; an error naming the image when it is not a
    /// name or is hosted here.
    pub fn sync_mirror(&self, rule: &SyncConfig) -> Result<Mirror, String> {
        let mut rules = self.route_rules();
        if self.upstream.is_empty() && !self.hosted.only {
            // Validation runs before the Docker Hub preset is added.
            let hub = UpstreamConfig::docker_hub();
            rules.upstreams.push((hub.name, hub.default));
        }
        // `nginx:1.27` is what `docker pull` takes; here the tag has a key of
        // its own. (A colon before the last '/' is a registry's port.)
        let last = rule.image.rsplit('/').next().unwrap_or_default();
        if let Some(at) = last.find([':', '@']) {
            let repo = &rule.image[..rule.image.len() - last.len() + at];
            let tags = match last[at..].strip_prefix(':') {
                Some(tag) => format!("tags = [{tag:?}]"),
                None => "tags = [\"latest\"]: sync keeps tags, not digests".into(),
            };
            return Err(format!(
                "sync.image {:?} names a tag or digest: write the repository alone and the \
                 tags in sync.tags (image = {repo:?}, {tags})",
                rule.image
            ));
        }
        let name: RepoName = rule
            .image
            .parse()
            .map_err(|e| format!("sync.image {:?} is not a repository name: {e}", rule.image))?;
        match rules.route(&name, None, Intent::Read, &NoFacts) {
            Ok(Target::Proxied(m)) => Ok(m),
            Ok(Target::Hosted { .. }) => Err(format!(
                "sync.image {:?} is a hosted name here (pushed content, a [hosted] prefix or \
                 hosted.only), and a [[sync]] rule keeps upstream images warm; name an \
                 upstream image, like docker.io/library/nginx",
                rule.image
            )),
            Err(e) => Err(format!("sync.image {:?}: {e}", rule.image)),
        }
    }
}

/// Checks every `[[sync]]` rule; `at` turns a needle into "line N: ".
pub(super) fn validate(cfg: &Config, at: &dyn Fn(&str) -> String) -> Result<(), String> {
    let mut keys = HashSet::new();
    for rule in &cfg.sync {
        let image = format!("{:?}", rule.image);
        let mirror = cfg
            .sync_mirror(rule)
            .map_err(|e| format!("{}{e}", at(&image)))?;
        if rule.tags.is_empty() {
            return Err(format!(
                "{}sync.tags is empty: list tags or globs (\"latest\", \"1.27*\")",
                at(&image)
            ));
        }
        if let Err(e) = rule.tag_matcher() {
            let bad = rule
                .tags
                .iter()
                .find(|t| Glob::new(t).is_err())
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|| "tags".into());
            return Err(format!("{}{e}", at(&bad)));
        }
        if let Err(e) = rule.platform_specs() {
            return Err(format!("{}{e}", at("platforms")));
        }
        if rule.every.0.is_zero() {
            return Err(format!("{}sync.every must be longer than 0s", at("every")));
        }
        // Keyed by the repository the image routes to, so `nginx` and
        // `docker.io/library/nginx` are one rule, not two syncing it twice.
        let mut tags = rule.tags.clone();
        tags.sort();
        if !keys.insert((mirror.local.to_string(), tags)) {
            return Err(format!(
                "{}[[sync]] for {image} ({}) with these tags appears twice",
                at(&image),
                mirror.local
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn parse(text: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    const UP: &str = "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = true\n[hosted]\nprefixes = [\"team/\"]\n";

    #[test]
    fn a_rule_routes_to_its_upstream() {
        let c = parse(&format!(
            "{UP}[[sync]]\nimage = \"docker.io/library/nginx\"\ntags = [\"1.2*\"]\nevery = \"1m\"\nplatforms = [\"linux/amd64\"]\n"
        ))
        .unwrap();
        let m = c.sync_mirror(&c.sync[0]).unwrap();
        assert_eq!(m.local.as_str(), "docker.io/library/nginx");
        assert_eq!(m.remote.as_str(), "library/nginx");
        assert_eq!(c.sync[0].ratelimit_floor, super::DEFAULT_RATELIMIT_FLOOR);
        let g = c.sync[0].tag_matcher().unwrap();
        assert!(g.is_match("1.2") && g.is_match("1.20") && g.is_match("1.2.3"));
        assert!(!g.is_match("1.3") && !g.is_match("v1.2"));
        // Unqualified names go to the default upstream, Docker Hub's preset included.
        let c = parse("[[sync]]\nimage = \"nginx\"\ntags = [\"latest\"]\n").unwrap();
        assert_eq!(
            c.sync_mirror(&c.sync[0]).unwrap().local.as_str(),
            "docker.io/library/nginx"
        );
    }

    #[test]
    fn bad_rules_are_refused_by_key_and_line() {
        for (rule, needle, line) in [
            ("image = \"team/app\"\ntags = [\"1\"]\n", "hosted", 8),
            (
                "image = \"docker.io/library/nginx\"\ntags = [\"1.[2\"]\n",
                "not a glob",
                9,
            ),
            (
                "image = \"docker.io/library/nginx\"\ntags = []\n",
                "sync.tags is empty",
                8,
            ),
            (
                "image = \"docker.io/library/nginx\"\ntags = [\"1\"]\nplatforms = [\"linux\"]\n",
                "sync.platforms",
                10,
            ),
            (
                "image = \"docker.io/library/nginx\"\ntags = [\"1\"]\nevery = \"0s\"\n",
                "sync.every",
                10,
            ),
            ("image = \"Not A Name\"\ntags = [\"1\"]\n", "sync.image", 8),
        ] {
            let e = parse(&format!("{UP}[[sync]]\n{rule}")).unwrap_err();
            assert!(e.contains(needle), "{rule}: {e}");
            assert!(e.contains(&format!("line {line}:")), "{rule}: {e}");
        }
        let twice = format!(
            "{UP}[[sync]]\nimage = \"docker.io/x/y\"\ntags = [\"1\"]\n[[sync]]\nimage = \"docker.io/x/y\"\ntags = [\"1\"]\n"
        );
        assert!(parse(&twice).unwrap_err().contains("twice"));
    }
}
