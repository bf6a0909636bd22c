//! What the operator tells its operators: logs (text or JSON lines), Prometheus metrics,
//! and the health endpoints.

pub mod metrics;
pub mod server;

use std::io::IsTerminal;

pub use metrics::{KeyFacts, Leadership, Metrics, RotationResult};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line; a line logged while reconciling an ApiKey carries its
    /// `namespace`, `apikey`, `rotation` and `step` under `span`: what collectors index.
    Json,
}

/// Installs the global logger. `level` is a `tracing` filter (`info`,
/// `apikey_operator=debug,kube=warn`); `RUST_LOG` wins when set.
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => tracing_subscriber::EnvFilter::try_new(env),
        _ => tracing_subscriber::EnvFilter::try_new(level),
    }
    .map_err(|e| format!("invalid log level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}
