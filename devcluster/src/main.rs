//! `kube-devcluster`: serves the dev cluster on 127.0.0.1 until Ctrl-C or SIGTERM.

use clap::Parser;

#[derive(Parser)]
#[command(name = "kube-devcluster", version, about)]
struct Cli {
    #[command(flatten)]
    options: kube_devcluster::cli::Options,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour for people at a terminal; plain text for files and log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.options.start().await {
        Ok(_cluster) => {
            kube_devcluster::cli::shutdown_signal().await;
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
