//! `proxy.*` → one `[[upstream]]` (registry:2 as a pull-through cache);
//! without it, `[hosted] only = true`: a plain private registry.

use super::draft::{Draft, comment, kv};
use super::tree::Node;

/// Hosts of Docker Hub's API, which clients write as `docker.io`.
const DOCKER_HUB_HOSTS: &[&str] = &[
    "registry-1.docker.io",
    "index.docker.io",
    "registry.hub.docker.com",
    "docker.io",
];

/// Where the generated config tells the user to put the upstream password.
const PASSWORD_FILE: &str = "/etc/wharf/upstream.password";

/// Maps and removes the `proxy` keys of `root`.
pub(super) fn map(root: &mut Node, d: &mut Draft) {
    let url = root.take_str("proxy.remoteurl");
    let username = root.take_str("proxy.username");
    let password = root.take("proxy.password").is_some();
    if root.take("proxy.ttl").is_some() {
        d.unmapped(
            "proxy.ttl",
            "wharf keeps cached content until [storage] max_cache_size needs the room (least \
             recently read first) instead of expiring it by age; tags are revalidated after \
             manifest_ttl",
        );
    }
    let Some(url) = url else {
        if username.is_some() || password {
            d.unmapped(
                "proxy.username",
                "credentials without proxy.remoteurl configure nothing",
            );
        }
        d.hosted.extend(comment(
            "No proxy section: a plain private registry like registry:2; no upstream is\n\
             ever contacted.",
        ));
        d.hosted.push("only = true".into());
        return;
    };
    let url = url.trim_end_matches('/').to_owned();
    let Some(name) = upstream_name(&url) else {
        d.unmapped(
            "proxy.remoteurl",
            &format!("{url:?} is not an http:// or https:// URL with a host"),
        );
        d.hosted.push("only = true".into());
        return;
    };
    d.upstream.extend(comment(&format!(
        "proxy.remoteurl: registry:2 mirrored this registry; wharf does too. Clients pull\n\
         unqualified names (Docker's registry-mirrors) or {name}/<repo>."
    )));
    d.upstream.push("[[upstream]]".into());
    d.upstream.push(kv("name", &name));
    d.upstream.push(kv("url", &url));
    d.upstream.push("default = true".into());
    if let Some(user) = username {
        d.upstream.push(kv("username", &user));
        d.upstream.push(kv("password_file", PASSWORD_FILE));
        d.upstream.extend(comment(&format!(
            "proxy.password is not copied here: write it into {PASSWORD_FILE}\n\
             (mode 0600, no trailing newline needed) before starting wharf."
        )));
    } else if password {
        d.unmapped(
            "proxy.password",
            "a password without proxy.username is never sent",
        );
    }
    d.hosted.extend(comment(
        "registry:2 as a pull-through cache refused pushes; so does wharf here. Set\n\
         claim_on_push = true (or list prefixes) to push private images beside the mirror.",
    ));
    d.hosted.push("claim_on_push = false".into());
}

/// The upstream's name as clients write it: its host without port
/// (`docker.io` for Docker Hub's API hosts).
fn upstream_name(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host_port = rest.split('/').next()?;
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    }
    .to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
        return Some("docker.io".into());
    }
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::upstream_name;

    #[test]
    fn names_are_hosts_as_clients_write_them() {
        assert_eq!(
            upstream_name("https://registry-1.docker.io").as_deref(),
            Some("docker.io")
        );
        assert_eq!(
            upstream_name("https://Mirror.lan:5000/v2").as_deref(),
            Some("mirror.lan")
        );
        assert_eq!(upstream_name("ftp://x"), None);
    }
}
