//! `kubectl apikey …`: kubectl finds this binary on PATH by its name.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = apikey_operator::plugin::Cli::parse();
    match apikey_operator::plugin::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
