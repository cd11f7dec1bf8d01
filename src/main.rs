//! `order-service`: parse the command line and run it; everything else lives in the library.

use clap::Parser as _;

// glibc's malloc was a tenth of the service's CPU under load (docs/BENCHMARKS.md): many small,
// short-lived allocations of requests, rows and JSON values, freed on other threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = order_service::cli::Cli::parse();
    match order_service::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
