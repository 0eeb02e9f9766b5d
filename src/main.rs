//! The `switchyard` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::{self, Cli, Command, LogFormat};
use switchyard::config::Config;

mod allocator;

#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

/// One CPU (a 1-CPU container, or a pinned process): a current-thread runtime avoids the
/// work-stealing scheduler's cross-thread wake-ups; otherwise one worker per CPU.
fn async_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match async_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve { config, listen, log_format, allow_unauthenticated } => {
            init_tracing(log_format);
            let loaded = match &config {
                Some(path) => Config::load(path),
                None => Config::embedded(),
            };
            let config = match loaded {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::FAILURE;
                }
            };
            let served = runtime.block_on(switchyard::app::serve(config, listen, allow_unauthenticated));
            // Dropping a runtime waits for its blocking tasks, and a config read stuck on a hung
            // filesystem would never let the process exit. The drain is over by now.
            runtime.shutdown_background();
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error}");
                    eprintln!("switchyard: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => cli::check(&config),
        Command::Doctor { fix, config } => cli::doctor(&config, fix),
        Command::Health { url } => runtime.block_on(cli::health(&url)),
        Command::Probe { config, json, upstreams } => {
            runtime.block_on(switchyard::probe::run(config.as_deref(), json, &upstreams))
        }
    }
}
