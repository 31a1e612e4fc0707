//! Keys whose features are not built yet. DESIGN.md names them, so they parse;
//! but a key that is accepted must act, so a configuration that sets one is
//! refused here with a message that says so, never silently ignored.

use super::Config;

/// The first key of `cfg` (as written in `text`) that names an unbuilt feature,
/// with the message to refuse it with.
pub(super) fn refusal(cfg: &Config, _text: &str) -> Option<(&'static str, String)> {
    let not_yet = |what: &str, remove: &str| {
        format!(
            "{what} is not built in this version of wharf, and a key that is accepted must act; remove {remove}"
        )
    };
    if cfg.storage.s3.as_ref().is_some_and(|s3| s3.redirect) {
        return Some((
            "redirect",
            not_yet(
                "storage.s3.redirect = true (blob GETs answered with presigned URLs)",
                "the key (blobs are then streamed through wharf)",
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn refused(text: &str) -> String {
        match crate::config::Config::parse(text, Path::new("t.toml")) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unbuilt_features_are_refused_by_name() {
        let text = "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"bkt\"\nredirect = true\n";
        let e = refused(text);
        assert!(
            e.contains("redirect") && e.contains("not built"),
            "{text}: {e}"
        );
        assert!(e.contains("line "), "names the line: {e}");
    }

    #[test]
    fn what_is_built_is_accepted() {
        let text = "[storage]\nmax_cache_size = \"0\"\nbackend = \"fs\"\n[gc]\nupload_expiry = \"1h\"\n[ui]\nenabled = false\n";
        assert!(crate::config::Config::parse(text, Path::new("t.toml")).is_ok());
        // Eviction and online gc are built: their keys act.
        let text = "[storage]\nmax_cache_size = \"200GiB\"\nlow_watermark = 0.8\n[gc]\ninterval = \"30m\"\ngrace = \"5m\"\n";
        assert!(crate::config::Config::parse(text, Path::new("t.toml")).is_ok());
    }
}
