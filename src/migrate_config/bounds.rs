//! Bounds on the input: the YAML loader expands every alias by copying the
//! anchored node, so a few hundred bytes of nested aliases ("billion laughs")
//! would become gigabytes. The event stream is walked first, counting the
//! nodes the loaded document would have, and a document past
//! [`MAX_NODES`] is refused before anything is expanded.

use std::collections::HashMap;

use yaml_rust2::Event;
use yaml_rust2::parser::{EventReceiver, Parser};

/// Largest `config.yml` read, in bytes (real ones are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Most nodes the loaded document may have, aliases expanded.
const MAX_NODES: u64 = 100_000;

/// Counts nodes as the loader would build them.
#[derive(Default)]
struct Count {
    total: u64,
    /// Anchor id → nodes under it (itself included).
    sizes: HashMap<usize, u64>,
    /// Open collections: (anchor id, `total` when it opened).
    open: Vec<(usize, u64)>,
}

impl EventReceiver for Count {
    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Alias(id) => {
                let n = self.sizes.get(&id).copied().unwrap_or(1);
                self.total = self.total.saturating_add(n);
            }
            Event::Scalar(_, _, anchor, _) => {
                self.total = self.total.saturating_add(1);
                if anchor > 0 {
                    self.sizes.insert(anchor, 1);
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.open.push((anchor, self.total));
                self.total = self.total.saturating_add(1);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, start)) = self.open.pop() {
                    if anchor > 0 {
                        self.sizes.insert(anchor, self.total.saturating_sub(start));
                    }
                }
            }
            _ => {}
        }
    }
}

/// `Err` with the reason when `yaml` would load into more than [`MAX_NODES`]
/// nodes; parse errors are left to the loader, which reports them with a line.
pub(super) fn check(yaml: &str) -> Result<(), String> {
    let mut count = Count::default();
    let _ = Parser::new_from_str(yaml).load(&mut count, true);
    if count.total > MAX_NODES {
        return Err(format!(
            "its aliases expand to more than {MAX_NODES} nodes (an alias bomb?); a registry \
             configuration has a few dozen"
        ));
    }
    Ok(())
}
