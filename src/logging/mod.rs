//! The daemon's logging: tracing-subscriber with the configured filter and
//! format, writing through a bounded, non-blocking sink ([`sink`]), with the
//! access log's text line formatted by hand ([`access_line`]). One line per
//! request stays on and stays cheap.

pub mod access_line;
pub mod sink;

pub use sink::{SinkGuard, dropped_lines};

/// How the daemon logs (`[log]`, or `WHARF_LOG` for the filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber: `WHARF_LOG`, else `level`, else `info`;
/// colours only on a terminal. Keep the guard for the life of the process:
/// dropping it writes the lines still buffered. `None` when a subscriber was
/// installed already or the writer thread could not start (then logging
/// goes straight to stderr).
pub fn init(level: &str, format: Format) -> Option<SinkGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let Ok((sink, guard)) = sink::start(std::io::stderr()) else {
        let builder = builder.with_writer(std::io::stderr);
        let _ = match format {
            Format::Json => builder.json().try_init(),
            Format::Text => builder.try_init(),
        };
        return None;
    };
    let direct = sink.clone();
    let builder = builder.with_writer(sink);
    let installed = match format {
        Format::Json => builder.json().try_init(),
        Format::Text => builder.try_init(),
    };
    installed.ok()?;
    if format == Format::Text && !ansi {
        access_line::install(direct);
    }
    Some(guard)
}
