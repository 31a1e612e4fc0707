//! Checks of the `[[replicate]]` rules at load: a rule that could never act
//! (no repositories, a glob that does not compile, a target that is no URL,
//! half a credential) is refused with the line it is on.

use super::ReplicateConfig;

/// Every rule of `rules` is usable; `at` points an error at its line.
pub(super) fn validate(
    rules: &[ReplicateConfig],
    at: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    let mut targets = std::collections::HashSet::new();
    for r in rules {
        if !(r.to.starts_with("http://") || r.to.starts_with("https://")) {
            return Err(format!(
                "{}replicate.to {:?} must start with http:// or https://",
                at(&r.to),
                r.to
            ));
        }
        if super::has_userinfo(&r.to) {
            return Err(format!(
                "{}replicate.to must not hold credentials (user:password@host): use username and password_file",
                at("to")
            ));
        }
        if !targets.insert(r.target()) {
            return Err(format!(
                "{}two [[replicate]] rules copy to {:?}; merge their repos into one rule",
                at(&r.to),
                r.target()
            ));
        }
        if r.repos.is_empty() {
            return Err(format!(
                "{}replicate.repos is empty: list the repositories to copy (\"team/*\")",
                at("repos")
            ));
        }
        for g in &r.repos {
            if let Err(e) = globset::Glob::new(g) {
                return Err(format!("{}replicate.repos {g:?} is not a glob: {e}", at(g)));
            }
        }
        if r.username.is_some() != r.password_file.is_some() {
            return Err(format!(
                "{}replicate.username and replicate.password_file must be set together",
                at(if r.username.is_some() {
                    "username"
                } else {
                    "password_file"
                })
            ));
        }
        if r.every.0.is_zero() {
            return Err(format!(
                "{}replicate.every must be longer than 0s (it is how often both sides are compared)",
                at("every")
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

    #[test]
    fn a_complete_rule_is_accepted_with_its_defaults() {
        let c = parse("[[replicate]]\nrepos = [\"team/*\"]\nto = \"http://h:5000/\"\n").unwrap();
        let r = &c.replicate[0];
        assert_eq!(r.target(), "http://h:5000");
        assert_eq!(r.every.0.as_secs(), 600);
        assert!(!r.delete);
    }

    #[test]
    fn unusable_rules_are_refused_by_line() {
        for (text, needle) in [
            (
                "[[replicate]]\nrepos = [\"team/*\"]\nto = \"h:5000\"\n",
                "must start with http",
            ),
            (
                "[[replicate]]\nrepos = []\nto = \"http://h\"\n",
                "repos is empty",
            ),
            (
                "[[replicate]]\nrepos = [\"team/[\"]\nto = \"http://h\"\n",
                "is not a glob",
            ),
            (
                "[[replicate]]\nrepos = [\"a\"]\nto = \"http://h\"\nusername = \"u\"\n",
                "set together",
            ),
            (
                "[[replicate]]\nrepos = [\"a\"]\nto = \"http://h\"\nevery = \"0s\"\n",
                "longer than 0s",
            ),
            (
                "[[replicate]]\nrepos = [\"a\"]\nto = \"http://h\"\n[[replicate]]\nrepos = [\"b\"]\nto = \"http://h/\"\n",
                "merge their repos",
            ),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains("line "), "{text}: {e}");
        }
    }
}
