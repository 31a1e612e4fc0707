//! `[storage.s3]`: the bucket blobs live in when `[storage] backend = "s3"`.
//! Credentials come from `access_key_id` with the secret in the config
//! (`secret_access_key`, as registry:2's `secretkey`) or in a file
//! (`secret_access_key_file`, better: the config file then holds no secret
//! for backups of /etc and diffs to show), or from the usual `AWS_*`
//! environment. An inline secret is never shown: not in errors, not in
//! `Debug` output.

use std::path::PathBuf;

use serde::Deserialize;

use super::Config;

/// `[storage.s3]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket (it must exist; wharf never creates buckets).
    pub bucket: String,
    /// The S3 API's URL (`http://minio.lan:9000`); unset: AWS for `region`.
    pub endpoint: Option<String>,
    /// The region; unset: `AWS_REGION`, then `us-east-1`.
    pub region: Option<String>,
    /// A key prefix, so several registries (or other data) share a bucket.
    #[serde(default)]
    pub prefix: String,
    /// The access key id; unset: `AWS_ACCESS_KEY_ID` (or the instance role).
    pub access_key_id: Option<String>,
    /// The secret access key itself (or `secret_access_key_file`); unset:
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
    /// A file holding the secret access key (one line); unset:
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key_file: Option<PathBuf>,
    /// Blob GETs answer 307 to a presigned URL of the object.
    #[serde(default)]
    pub redirect: bool,
}

/// A secret written in the configuration: readable by the code that needs
/// it ([`Secret::expose`]), never printed (`Debug` shows a placeholder).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that hands it to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl S3Config {
    /// The prefix as keys use it: empty, or ending in one `/`.
    pub fn key_prefix(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }
}

/// Checks `backend` against `[storage.s3]`; `at` turns a needle into "line N: ".
pub(super) fn validate(cfg: &Config, at: &dyn Fn(&str) -> String) -> Result<(), String> {
    let storage = &cfg.storage;
    match (storage.backend.as_str(), &storage.s3) {
        ("fs", None) => Ok(()),
        ("fs", Some(_)) => Err(format!(
            "{}[storage.s3] is set but storage.backend is \"fs\": set backend = \"s3\" to \
             keep blobs in the bucket, or remove the section",
            at("[storage.s3]")
        )),
        ("s3", None) => Err(format!(
            "{}storage.backend = \"s3\" needs a [storage.s3] section with at least `bucket`",
            at("backend")
        )),
        ("s3", Some(s3)) => check(s3, at),
        (other, _) => Err(format!(
            "{}storage.backend = {other:?} is unknown: use \"fs\" (the default) or \"s3\"",
            at("backend")
        )),
    }
}

fn check(s3: &S3Config, at: &dyn Fn(&str) -> String) -> Result<(), String> {
    let valid_bucket = (3..=63).contains(&s3.bucket.len())
        && s3
            .bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(format!(
            "{}storage.s3.bucket {:?} is not a bucket name (3 to 63 lowercase letters, digits, \
             '-' and '.')",
            at("bucket"),
            s3.bucket
        ));
    }
    if let Some(e) = &s3.endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(format!(
                "{}storage.s3.endpoint must start with http:// or https://",
                at("endpoint")
            ));
        }
        if super::has_userinfo(e) {
            return Err(format!(
                "{}storage.s3.endpoint must not carry credentials (they would show in logs); \
                 use access_key_id and secret_access_key_file, or the AWS_* environment",
                at("endpoint")
            ));
        }
        if e.contains('?') || e.contains('#') {
            return Err(format!(
                "{}storage.s3.endpoint is the service's URL, without a query",
                at("endpoint")
            ));
        }
    }
    let prefix = s3.prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
        && !prefix.is_empty()
        || prefix.chars().any(char::is_control)
    {
        return Err(format!(
            "{}storage.s3.prefix {:?} must be path components separated by single '/' \
             (no '.', '..' or empty ones)",
            at("prefix"),
            s3.prefix
        ));
    }
    if s3.secret_access_key.is_some() && s3.secret_access_key_file.is_some() {
        return Err(format!(
            "{}storage.s3.secret_access_key and secret_access_key_file are both set: keep one \
             (the file is better: the config then holds no secret)",
            at("secret_access_key")
        ));
    }
    let has_secret = s3.secret_access_key.is_some() || s3.secret_access_key_file.is_some();
    if s3.access_key_id.is_some() != has_secret {
        return Err(format!(
            "{}storage.s3.access_key_id and secret_access_key_file (or secret_access_key) go \
             together (or leave both out and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            at(if s3.access_key_id.is_some() {
                "access_key_id"
            } else {
                "secret_access_key"
            })
        ));
    }
    if s3
        .secret_access_key
        .as_ref()
        .is_some_and(|k| k.expose().trim().is_empty())
    {
        return Err(format!(
            "{}storage.s3.secret_access_key is empty",
            at("secret_access_key")
        ));
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
    fn an_inline_secret_is_read_and_never_shown() {
        let c = parse(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\n\
             access_key_id = \"AK\"\nsecret_access_key = \"s3cret\"\n",
        )
        .unwrap();
        let s3 = c.storage.s3.clone().unwrap();
        assert_eq!(s3.secret_access_key.as_ref().unwrap().expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(format!("{s3:?}").contains("redacted"));
    }

    /// A TOML error need not start on the secret's line: inside a
    /// multi-line string or array, the line toml would quote is the
    /// secret's own text (which need not mention "secret" at all).
    #[test]
    fn a_toml_error_inside_a_multi_line_secret_never_shows_it() {
        let head = "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\n\
                    access_key_id = \"AK\"\n";
        for (tail, line) in [
            ("secret_access_key = \"\"\"\ns3cret\\q\"\"\"\n", "line 7"),
            // Unterminated: the error is at the end of the file.
            ("secret_access_key = \"\"\"\ns3cret\n", "line 8"),
            ("secret_access_key = '''\ns3cret\n", "line 8"),
            ("secret_access_key = \"\"\"\r\ns3cret\"\"\" x\r\n", "line 7"),
            ("secret_access_key = [\n\"s3cret\" x\n]\n", "line 7"),
            (
                "secret_access_key = \"\"\"\nmys3cret=secret\\q\"\"\"\n",
                "line 7",
            ),
            ("secret_access_key \"s3cret\"\n", "line 6"),
        ] {
            let text = format!("{head}{tail}");
            let e = parse(&text).unwrap_err();
            assert!(e.contains(line), "{text}: {e}");
            assert!(!e.contains("s3cret"), "a secret is echoed: {e}");
        }
        // Without a secret in the file, toml's own rendering stays.
        let e = parse("[storage]\nbackend = \"s3\"\nbogus = 1\n").unwrap_err();
        assert!(e.contains("bogus = 1"), "{e}");
    }

    #[test]
    fn a_bucket_section_is_read_and_checked() {
        let c = parse(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\n\
             endpoint = \"http://127.0.0.1:9000\"\nprefix = \"/site-a/\"\n",
        )
        .unwrap();
        let s3 = c.storage.s3.unwrap();
        assert_eq!(s3.bucket, "wharf");
        assert_eq!(s3.key_prefix(), "site-a/");
        for (text, needle) in [
            ("[storage]\nbackend = \"s3\"\n", "needs a [storage.s3]"),
            ("[storage.s3]\nbucket = \"wharf\"\n", "set backend = \"s3\""),
            ("[storage]\nbackend = \"gcs\"\n", "unknown"),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"Bad_Name\"\n",
                "not a bucket name",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\nendpoint = \"http://k:s3cret@h:9000\"\n",
                "must not carry credentials",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\nprefix = \"a/../b\"\n",
                "prefix",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\naccess_key_id = \"AK\"\n",
                "go together",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\nsecret_access_key = \"s3cret\"\n",
                "go together",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\naccess_key_id = \"AK\"\nsecret_access_key = \"s3cret\"\nsecret_access_key_file = \"/k\"\n",
                "both set",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\naccess_key_id = \"AK\"\nsecret_access_key = \" \"\n",
                "is empty",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\nsecret_access_key = [\"s3cret\"]\n",
                "secret_access_key",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\nsecret_access_key = \"s3cret\n",
                "secret_access_key",
            ),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\nsecret_access_key = s3cret\n",
                "secret_access_key",
            ),
            (
                "[storage]\nbackend = \"s3\"\ns3 = { bucket = \"wharf\", secret_access_key = [\"s3cret\"] }\n",
                "line 3",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(!e.contains("s3cret"), "a secret is echoed: {e}");
        }
    }
}
