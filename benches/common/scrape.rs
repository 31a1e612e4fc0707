//! A server's `/metrics` (wharf's, Distribution's), read by the benches: sums of a metric's series, and
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
        let mut out = self.counts("wharf_http_requests_total", &["method", "route", "status"]);
        out.retain(|k, _| k.split(' ').nth(1) != Some("metrics"));
        out
    }

    /// The series of `name` summed by the values of `labels`, joined by
    /// spaces (`?` for a label a series lacks).
    pub fn counts(&self, name: &str, labels: &[&str]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (series, v) in self.series(name) {
            let get = |k: &str| {
                series
                    .split(&format!("{k}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("?")
                    .to_owned()
            };
            let key: Vec<String> = labels.iter().map(|l| get(l)).collect();
            *out.entry(key.join(" ")).or_insert(0.0) += v;
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
