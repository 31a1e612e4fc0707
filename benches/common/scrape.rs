//! A wharf's `/metrics`, read by the benches: sums of a metric's series, and
//! its requests by method and route (the request log of a run, in numbers).

use std::collections::BTreeMap;

/// One read of a wharf's `/metrics`.
pub struct Scrape(String);

impl Scrape {
    /// Reads `base`'s `/metrics`.
    pub fn of(base: &str) -> Scrape {
        Scrape(
            reqwest::blocking::get(format!("{base}/metrics"))
                .unwrap()
                .text()
                .unwrap(),
        )
    }

    /// Each series of `name` (`name{labels} value`) with its labels.
    fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.0.lines().filter_map(move |l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            if !(labels.is_empty() || labels.starts_with('{')) {
                return None;
            }
            Some((labels, value.parse().ok()?))
        })
    }

    /// The sum of every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.series(name).map(|(_, v)| v).sum()
    }

    /// `wharf_http_requests_total` by `METHOD route status`, without the
    /// bench's own reads of `/metrics`.
    pub fn requests(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (labels, v) in self.series("wharf_http_requests_total") {
            let get = |k: &str| {
                labels
                    .split(&format!("{k}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("?")
                    .to_owned()
            };
            if get("route") == "metrics" {
                continue;
            }
            *out.entry(format!(
                "{} {} {}",
                get("method"),
                get("route"),
                get("status")
            ))
            .or_insert(0.0) += v;
        }
        out
    }
}

/// What changed between two reads: `after - before` per key, zeros left out.
pub fn delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}
