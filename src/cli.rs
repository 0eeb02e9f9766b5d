//! The command line: `serve`, `check`, `doctor`, `probe`, `health`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError};

/// Switchyard: an OpenAI-compatible LLM relay.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay.
    Serve {
        /// Config file; without one, the embedded default (the offline `mock` model) is served.
        #[arg(long, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, overriding `server.listen`.
        #[arg(long, env = "SWITCHYARD_LISTEN")]
        listen: Option<SocketAddr>,
        /// Log format.
        #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum, default_value = "pretty")]
        log_format: LogFormat,
        /// Allow a non-loopback listen address without client keys.
        #[arg(long, env = "SWITCHYARD_ALLOW_UNAUTHENTICATED")]
        allow_unauthenticated: bool,
    },
    /// Validate a config and print what it would serve.
    Check {
        /// Config file.
        #[arg(long, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
    /// Find legacy and stale values in a config; with --fix, rewrite them in place (backup first).
    Doctor {
        /// Rewrite the file: comments and formatting are kept, FILE.bak is written first.
        #[arg(long)]
        fix: bool,
        /// Config file.
        #[arg(long, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
    /// Exit 0 when a relay's health endpoint answers 200 (for container health checks).
    Health {
        /// The URL to check.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Diagnose connectivity to upstreams: DNS, TCP, proxy, TLS, model listing, chat, stream.
    Probe {
        /// Config file; without one, the embedded default.
        #[arg(long, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Upstreams to probe (default: every configured one).
        upstreams: Vec<String>,
    },
}

/// Prints a config's problems and what it serves; the exit code says whether it is clean.
pub fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Err(error) => {
            for diagnostic in &error.diagnostics {
                eprintln!("{diagnostic}");
            }
            eprintln!("\n{}", error.summary());
            ExitCode::FAILURE
        }
        Ok(config) => {
            for problem in &config.warnings {
                eprintln!("{problem}");
            }
            println!("listen: {}", config.server.listen);
            println!("upstreams:");
            for upstream in config.upstreams.values() {
                let url = upstream.base_url.as_ref().map(ToString::to_string).unwrap_or_else(|| "(built in)".into());
                let key = if upstream.api_key.is_some() { "key set" } else { "no key" };
                println!("  {:<20} {:<26} {url} ({key})", upstream.name, upstream.dialect.as_str());
            }
            for (name, problem) in &config.disabled {
                println!("  {name:<20} DISABLED: {}", problem.message);
            }
            println!("models:");
            for model in &config.models {
                let targets: Vec<String> = model
                    .targets
                    .iter()
                    .map(|t| match &t.model {
                        Some(m) => format!("{}:{m}", t.upstream),
                        None => t.upstream.clone(),
                    })
                    .collect();
                println!("  {:<28} -> {}", model.pattern.as_written(), targets.join(", "));
            }
            if config.auth_required {
                let names: Vec<&str> = config.keys.iter().map(|k| k.name.as_str()).collect();
                let usable = if names.is_empty() {
                    "(none usable: every request is refused)".to_owned()
                } else {
                    names.join(", ")
                };
                let skipped = if config.skipped_keys.is_empty() {
                    String::new()
                } else {
                    format!("; SKIPPED: {}", config.skipped_keys.join(", "))
                };
                println!("keys: {usable}{skipped}");
            } else {
                println!("keys: none (auth off)");
            }
            match config.problems_summary() {
                Some(summary) => {
                    eprintln!("\n{summary}");
                    ExitCode::FAILURE
                }
                None => {
                    println!("\nok");
                    ExitCode::SUCCESS
                }
            }
        }
    }
}

/// Lists legacy values and likely typos in a config, then what validation still reports; with
/// `fix`, rewrites the file in place after a backup. Exit 0 only when nothing is left to do.
pub fn doctor(path: &std::path::Path, fix: bool) -> ExitCode {
    use crate::config::migrate;

    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("{}: cannot read config: {error}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let Ok(report) = migrate::check(&source) else {
        // Not TOML at all: validation says where.
        validation_report(Config::load(path));
        return ExitCode::FAILURE;
    };
    for finding in &report.findings {
        println!("{}", finding.render(path, fix));
    }
    let applied = report.findings.iter().filter(|f| f.applies()).count();
    let undecided = report.findings.len() - applied;
    let clean = if report.findings.is_empty() {
        println!("{}: no legacy or stale values found", path.display());
        validation_report(Config::load(path))
    } else if !fix {
        let left = if undecided > 0 { format!("; {undecided} left for you to decide") } else { String::new() };
        println!(
            "\n{} finding(s); `switchyard doctor --fix --config {}` applies {applied}{left}",
            report.findings.len(),
            path.display()
        );
        if report.changes_anything() {
            println!("validating with those changes applied:");
        }
        validation_report(Config::from_source(&report.migrated, Some(path), &|name| std::env::var(name).ok()))
    } else {
        if report.changes_anything() {
            match migrate::write_in_place(path, &source, &report.migrated) {
                Ok(backup) => {
                    println!("\nrewrote {} ({applied} change(s)); backup: {}", path.display(), backup.display())
                }
                Err(error) => {
                    eprintln!("\n{error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if undecided > 0 {
            println!("{undecided} finding(s) left for you to decide; see \"could not decide\" above");
        }
        println!("validating {}:", path.display());
        validation_report(Config::load(path))
    };
    let done = if fix { undecided == 0 } else { report.findings.is_empty() };
    if done && clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints validation problems as `check` does, but on stdout so that they stay in order with the
/// findings above them; true when validation has nothing to report.
fn validation_report(loaded: Result<Config, ConfigError>) -> bool {
    match loaded {
        Err(error) => {
            for diagnostic in &error.diagnostics {
                println!("{diagnostic}");
            }
            println!("{}", error.summary());
            false
        }
        Ok(config) => {
            for problem in &config.warnings {
                println!("{problem}");
            }
            match config.problems_summary() {
                Some(summary) => {
                    println!("{summary}");
                    false
                }
                None => {
                    println!("validation: ok");
                    true
                }
            }
        }
    }
}

/// GETs `url`; success on 200.
pub async fn health(url: &str) -> ExitCode {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let Ok(uri) = url.parse::<http::Uri>() else {
        eprintln!("not a URL: {url}");
        return ExitCode::FAILURE;
    };
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = client.get(uri);
    match tokio::time::timeout(std::time::Duration::from_secs(5), request).await {
        Ok(Ok(response)) if response.status() == http::StatusCode::OK => {
            let _ = response.into_body().collect().await;
            ExitCode::SUCCESS
        }
        Ok(Ok(response)) => {
            eprintln!("{url}: {}", response.status());
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("{url}: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("{url}: timed out");
            ExitCode::FAILURE
        }
    }
}
