//! The registry every series is registered in, plus the list of what was
//! registered (name and type). prometheus-client prints a family only once it
//! has a series, so the exposition alone cannot say what exists; this list
//! can, and is what README's metrics table is checked against.

use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::{Metric, Registry};

/// The prefix of every metric name.
pub const PREFIX: &str = "wharf";

/// The registry and the families registered in it.
pub struct Catalog {
    registry: Registry,
    families: Vec<(String, &'static str)>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            registry: Registry::with_prefix(PREFIX),
            families: Vec::new(),
        }
    }
}

impl Catalog {
    /// Registers `metric` as `wharf_<name>` and records its type.
    pub fn register<M: Metric + TypedMetric>(&mut self, name: &str, help: &str, metric: M) {
        let ty = match M::TYPE {
            prometheus_client::metrics::MetricType::Counter => "counter",
            prometheus_client::metrics::MetricType::Gauge => "gauge",
            prometheus_client::metrics::MetricType::Histogram => "histogram",
            prometheus_client::metrics::MetricType::Info => "info",
            prometheus_client::metrics::MetricType::Unknown => "unknown",
        };
        self.families.push((format!("{PREFIX}_{name}"), ty));
        self.registry.register(name, help, metric);
    }

    /// The registry, for encoding.
    pub(super) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every family: full name (`wharf_...`, without the `_total` a
    /// counter's samples add) and type (`counter`, `gauge`, `histogram`).
    pub fn families(&self) -> &[(String, &'static str)] {
        &self.families
    }
}
