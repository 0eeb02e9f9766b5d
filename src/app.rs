//! Assembly only: the runtime from a config, the middleware stack, the listeners.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Request, Response};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};

use crate::body::Body;
use crate::config::{Config, ModelParams};
use crate::error::BoxError;
use crate::layer::access_log::AccessLogLayer;
use crate::layer::auth::AuthLayer;
use crate::layer::recover::RecoverLayer;
use crate::layer::request_id::RequestIdLayer;
use crate::metrics::Metrics;
use crate::route::{Router, Runtime, SharedRuntime};
use crate::server::shutdown::Cutoff;

/// The whole middleware stack over the router. The order is the contract documented in
/// `layer/mod.rs`; each layer says why it sits where it does.
pub fn stack<B>(
    runtime: SharedRuntime,
    metrics: Arc<Metrics>,
    cutoff: Cutoff,
) -> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send + 'static> + Clone + Send + 'static
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    ServiceBuilder::new()
        // Outermost, so every log line, error body and response carries the id.
        .layer(RequestIdLayer)
        // Sees every response, including errors turned into responses below it.
        .layer(AccessLogLayer::new(metrics, cutoff))
        // The one place errors become OpenAI-shaped responses; nothing below may drop a connection.
        .layer(RecoverLayer)
        // Needs the live keys; rejections become 401 responses in Recover above.
        .layer(AuthLayer::new(runtime.clone()))
        .service(Router::new(runtime))
}

/// How often the config file is checked for changes.
pub const RELOAD_POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a changed file must stay unchanged before it is loaded.
pub const RELOAD_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(250);

/// Why the relay refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("refusing to listen on {0} without client keys: add [[keys]] to the config, or set server.allow_unauthenticated = true (or --allow-unauthenticated) if this is intended")]
    Unauthenticated(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("{0}")]
    Runtime(String),
}

/// What the relay is bound to, which a reload cannot change (a restart does), with the command
/// line's `--allow-unauthenticated`: the exposure rule applies to every config served on them.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub listen: SocketAddr,
    /// The admin listener, which serves the same endpoints.
    pub admin: Option<SocketAddr>,
    pub allow_unauthenticated: bool,
}

impl Bound {
    /// Where `config` would be served, with `listen` overriding its own address.
    pub fn of(config: &Config, listen: SocketAddr, allow_unauthenticated: bool) -> Self {
        Bound { listen, admin: config.server.admin_listen, allow_unauthenticated }
    }

    /// A non-loopback address that `config` would serve without client keys, unless allowed.
    fn exposed_without_keys(&self, config: &Config) -> Option<SocketAddr> {
        if config.auth_required || self.allow_unauthenticated || config.server.allow_unauthenticated {
            return None;
        }
        std::iter::once(self.listen).chain(self.admin).find(|address| !address.ip().is_loopback())
    }
}

/// Checks the bind policy: a non-loopback address needs client keys unless explicitly allowed.
pub fn check_exposure(config: &Config, bound: &Bound) -> Result<(), StartError> {
    match bound.exposed_without_keys(config) {
        Some(address) => Err(StartError::Unauthenticated(address)),
        None => Ok(()),
    }
}

/// Why a reloaded config must not replace the one serving, if it must not. Startup skips a bad
/// part and serves the rest; a reload has a last good version to keep, so it refuses a file that
/// would open the relay to anyone, take a serving upstream out, or serve nothing.
pub fn reload_refusal(current: &Config, next: &Config, bound: &Bound) -> Option<String> {
    if let Some(address) = bound.exposed_without_keys(next) {
        return Some(format!(
            "it has no client keys, and the relay listens on {address}: add [[keys]], or set \
             server.allow_unauthenticated = true if this is intended"
        ));
    }
    let taken_out: Vec<String> = next
        .disabled
        .iter()
        .filter(|(name, _)| current.upstreams.contains_key(*name))
        .map(|(name, problem)| format!("{name}: {problem}"))
        .collect();
    if !taken_out.is_empty() {
        return Some(format!("it disables upstreams that serve now:\n{}", taken_out.join("\n")));
    }
    // The same, through a rename: a model that serves now, sent only to upstreams the new file
    // disables (its upstream replaced by one with a typo, say).
    let servable = |config: &Config, model: &ModelParams| {
        model.targets.iter().any(|target| config.upstreams.contains_key(&target.upstream))
    };
    let stranded: Vec<String> = next
        .models
        .iter()
        .filter(|model| !servable(next, model))
        .filter(|model| current.models.iter().any(|now| now.pattern == model.pattern && servable(current, now)))
        .map(|model| {
            let problems = model.targets.iter().filter_map(|target| next.disabled.get(&target.upstream));
            let problems: Vec<String> = problems.map(ToString::to_string).collect();
            format!("{}: every upstream it names is disabled:\n{}", model.pattern.as_written(), problems.join("\n"))
        })
        .collect();
    if !stranded.is_empty() {
        return Some(format!("it leaves models that serve now without a usable upstream:\n{}", stranded.join("\n")));
    }
    if next.models.is_empty() && !current.models.is_empty() {
        return Some("it serves no models (an empty or truncated file?)".into());
    }
    None
}

/// A running relay: its address and the live runtime (for reloads and tests).
pub struct Running {
    pub addr: SocketAddr,
    pub runtime: SharedRuntime,
    pub metrics: Arc<Metrics>,
}

/// Builds the runtime for `config`.
pub fn runtime(config: Config, metrics: Arc<Metrics>) -> Result<SharedRuntime, StartError> {
    let runtime = Runtime::build(Arc::new(config), metrics, None).map_err(|e| StartError::Runtime(e.message))?;
    Ok(Arc::new(ArcSwap::from_pointee(runtime)))
}

/// Binds `listen` and serves until `shutdown` resolves; returns once the listener is bound,
/// with the server running in the background.
pub async fn start(
    config: Config,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Running, tokio::task::JoinHandle<()>), StartError> {
    let metrics = Arc::new(Metrics::new());
    let grace = config.server.shutdown_grace;
    let admin = config.server.admin_listen;
    let runtime = runtime(config, metrics.clone())?;
    let listener = TcpListener::bind(listen).await.map_err(|e| StartError::Bind(listen, e))?;
    let addr = listener.local_addr().map_err(|e| StartError::Bind(listen, e))?;
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let cutoff = Cutoff::default();
    if let Some(admin) = admin {
        let admin_listener = TcpListener::bind(admin).await.map_err(|e| StartError::Bind(admin, e))?;
        let mut stop = stop_tx.subscribe();
        let service = stack(runtime.clone(), metrics.clone(), cutoff.clone());
        tokio::spawn(crate::server::serve(
            admin_listener,
            service,
            async move {
                let _ = stop.recv().await;
            },
            grace,
            cutoff.clone(),
        ));
        tracing::info!(%admin, "admin listener (/metrics, /healthz, /readyz)");
    }
    let service = stack(runtime.clone(), metrics.clone(), cutoff.clone());
    let task = tokio::spawn(async move {
        let stop = async move {
            shutdown.await;
            let _ = stop_tx.send(());
        };
        crate::server::serve(listener, service, stop, grace, cutoff).await;
    });
    Ok((Running { addr, runtime, metrics }, task))
}

/// Logs what a config serves and what it skipped.
pub fn log_config(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let upstreams: Vec<String> =
        config.upstreams.values().map(|u| format!("{} ({})", u.name, u.dialect.as_str())).collect();
    let models: Vec<String> = config.models.iter().map(|m| m.pattern.as_written()).collect();
    tracing::info!(
        config = %config.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded default".into()),
        upstreams = %upstreams.join(", "),
        disabled = %config.disabled.keys().cloned().collect::<Vec<_>>().join(", "),
        models = %models.join(", "),
        keys = config.keys.len(),
        "config loaded"
    );
}

/// Serve-command entry point.
pub async fn serve(config: Config, listen: Option<SocketAddr>, allow_unauthenticated: bool) -> Result<(), BoxError> {
    let listen = listen.unwrap_or(config.server.listen);
    let bound = Bound::of(&config, listen, allow_unauthenticated);
    check_exposure(&config, &bound)?;
    log_config(&config);
    let source = config.source.clone();
    let (running, task) = start(config, listen, crate::server::shutdown::signal()).await?;
    match source {
        Some(path) => {
            let updates = crate::config::reload::watch(path, RELOAD_POLL, RELOAD_DEBOUNCE);
            let bound = Bound { listen: running.addr, ..bound };
            tokio::spawn(apply_reloads(running.runtime.clone(), running.metrics.clone(), bound, updates));
        }
        None => ignore_hangups(),
    }
    tracing::info!(addr = %running.addr, "switchyard listening; OpenAI base URL http://{}/v1", running.addr);
    task.await?;
    Ok(())
}

/// With no config file there is nothing to reload, but a SIGHUP's default action would still
/// kill the relay without a drain (a `kill -HUP` meant for every process, a terminal closing).
fn ignore_hangups() {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::warn!("SIGHUP ignored: serving the embedded default, there is no config file to reload");
                }
            });
        }
        Err(error) => tracing::warn!(%error, "cannot listen for SIGHUP"),
    }
}

/// One line saying what a new config changes.
pub fn describe_change(old: &Config, new: &Config) -> String {
    let names = |c: &Config| c.upstreams.keys().cloned().collect::<std::collections::BTreeSet<_>>();
    let (old_names, new_names) = (names(old), names(new));
    let mut parts = Vec::new();
    let added: Vec<_> = new_names.difference(&old_names).cloned().collect();
    let removed: Vec<_> = old_names.difference(&new_names).cloned().collect();
    let changed: Vec<_> = new_names
        .intersection(&old_names)
        .filter(|n| format!("{:?}", old.upstreams[*n]) != format!("{:?}", new.upstreams[*n]))
        .cloned()
        .collect();
    if !added.is_empty() {
        parts.push(format!("upstreams added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("upstreams removed: {}", removed.join(", ")));
    }
    if !changed.is_empty() {
        parts.push(format!("upstreams changed: {}", changed.join(", ")));
    }
    let models =
        |c: &Config| c.models.iter().map(|m| m.pattern.as_written()).collect::<std::collections::BTreeSet<_>>();
    let (old_models, new_models) = (models(old), models(new));
    let added: Vec<_> = new_models.difference(&old_models).cloned().collect();
    let removed: Vec<_> = old_models.difference(&new_models).cloned().collect();
    if !added.is_empty() {
        parts.push(format!("models added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("models removed: {}", removed.join(", ")));
    }
    if old.models != new.models && added.is_empty() && removed.is_empty() {
        parts.push("model routes changed".into());
    }
    let keys = |c: &Config| c.keys.iter().map(|k| (k.name.clone(), k.sha256)).collect::<Vec<_>>();
    if keys(old) != keys(new) {
        parts.push(format!("keys: {} -> {}", old.keys.len(), new.keys.len()));
    }
    if new.disabled.keys().ne(old.disabled.keys()) {
        parts.push(format!("disabled upstreams: {}", new.disabled.keys().cloned().collect::<Vec<_>>().join(", ")));
    }
    if parts.is_empty() {
        "no effective change".into()
    } else {
        parts.join("; ")
    }
}

/// Applies reloads from `updates` to the live runtime: a valid config is swapped in atomically
/// (in-flight requests finish on the one they started with; unchanged upstreams keep their
/// pools), an invalid one is rejected with its diagnostics and the last good config serves on.
pub async fn apply_reloads(
    runtime: SharedRuntime,
    metrics: Arc<Metrics>,
    bound: Bound,
    mut updates: tokio::sync::mpsc::Receiver<crate::config::reload::Reloaded>,
) {
    while let Some((trigger, loaded)) = updates.recv().await {
        match loaded {
            Err(error) => {
                metrics.config_reloads.with_label_values(&["failure"]).inc();
                tracing::error!(?trigger, "config reload rejected; the last good config keeps serving:\n{error}");
            }
            Ok(config) => {
                let current = runtime.load_full();
                if config.server.listen != current.config.server.listen {
                    tracing::warn!("server.listen changed; it takes effect on restart");
                }
                if let Some(why) = reload_refusal(&current.config, &config, &bound) {
                    metrics.config_reloads.with_label_values(&["failure"]).inc();
                    tracing::error!(?trigger, "config reload rejected; the last good config keeps serving: {why}");
                    continue;
                }
                let summary = describe_change(&current.config, &config);
                for warning in &config.warnings {
                    tracing::warn!("{warning}");
                }
                match Runtime::build(Arc::new(config), metrics.clone(), Some(&current)) {
                    Ok(next) => {
                        runtime.store(Arc::new(next));
                        metrics.config_reloads.with_label_values(&["success"]).inc();
                        tracing::info!(?trigger, "config reloaded: {summary}");
                    }
                    Err(error) => {
                        metrics.config_reloads.with_label_values(&["failure"]).inc();
                        tracing::error!(?trigger, "config reload rejected: {}", error.message);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(source: &str) -> Config {
        Config::from_source(source, None, &|_| None).unwrap()
    }

    const SERVED: &str =
        "[upstreams.m]\ndialect = \"mock\"\n\n[[models]]\nname = \"m\"\ntargets = [{ upstream = \"m\" }]\n";
    const KEYED: &str =
        "[[keys]]\nname = \"ops\"\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n";

    fn bound(listen: &str, admin: Option<&str>) -> Bound {
        Bound {
            listen: listen.parse().unwrap(),
            admin: admin.map(|a| a.parse().unwrap()),
            allow_unauthenticated: false,
        }
    }

    #[test]
    fn no_address_beyond_loopback_serves_without_keys_unless_allowed() {
        let open = config(SERVED);
        assert!(check_exposure(&open, &bound("127.0.0.1:8080", None)).is_ok());
        assert!(check_exposure(&open, &bound("0.0.0.0:8080", None)).is_err());
        let admin = check_exposure(&open, &bound("127.0.0.1:8080", Some("0.0.0.0:9090")));
        assert!(
            matches!(admin, Err(StartError::Unauthenticated(a)) if a.port() == 9090),
            "the admin listener serves the same endpoints"
        );
        assert!(check_exposure(&config(&format!("{KEYED}{SERVED}")), &bound("0.0.0.0:8080", None)).is_ok());
        let allowed = Bound { allow_unauthenticated: true, ..bound("0.0.0.0:8080", None) };
        assert!(check_exposure(&open, &allowed).is_ok());
    }

    #[test]
    fn a_reload_may_not_strand_a_serving_model_on_disabled_upstreams() {
        let serving = config(SERVED);
        let renamed_with_a_typo = config(
            "[upstreams.x]\ndialect = \"bogus\"\n\n[[models]]\nname = \"m\"\ntargets = [{ upstream = \"x\" }]\n",
        );
        let why = reload_refusal(&serving, &renamed_with_a_typo, &bound("127.0.0.1:8080", None)).expect("refused");
        assert!(why.contains("m: every upstream it names is disabled") && why.contains("bogus"), "{why}");
        let also_served = "[upstreams.y]\ndialect = \"mock\"\n";
        let with_a_usable_target = config(&format!(
            "{also_served}[upstreams.x]\ndialect = \"bogus\"\n\n[[models]]\nname = \"m\"\ntargets = [{{ upstream = \"x\" }}, {{ upstream = \"y\" }}]\n"
        ));
        assert_eq!(reload_refusal(&serving, &with_a_usable_target, &bound("127.0.0.1:8080", None)), None);
        let a_new_model_only =
            config(&format!("{SERVED}[upstreams.x]\ndialect = \"bogus\"\n\n[[models]]\nname = \"n\"\ntargets = [{{ upstream = \"x\" }}]\n"));
        assert_eq!(
            reload_refusal(&serving, &a_new_model_only, &bound("127.0.0.1:8080", None)),
            None,
            "a model that does not serve now is the new file's to break"
        );
    }

    #[test]
    fn a_reload_may_not_drop_the_keys_of_an_exposed_relay() {
        let keyed = config(&format!("{KEYED}{SERVED}"));
        let open = config(SERVED);
        let why = reload_refusal(&keyed, &open, &bound("0.0.0.0:8080", None)).expect("refused");
        assert!(why.contains("no client keys") && why.contains("0.0.0.0:8080"), "{why}");
        assert_eq!(reload_refusal(&keyed, &open, &bound("127.0.0.1:8080", None)), None, "loopback only");
        let allowing = config(&format!("[server]\nallow_unauthenticated = true\n{SERVED}"));
        assert_eq!(reload_refusal(&keyed, &allowing, &bound("0.0.0.0:8080", None)), None);
    }
}
