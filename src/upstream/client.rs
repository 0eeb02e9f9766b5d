//! The HTTP client toward one upstream: hyper-util's pooled client over rustls, HTTP/1.1 and
//! HTTP/2 chosen by ALPN, through the egress proxy when one applies, with the connect timeout
//! covering the proxy's CONNECT, TCP and the TLS handshake.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::{ClientConfig, RootCertStore};

use super::proxy::{ProxyConnector, ProxyRules};
use crate::config::TlsParams;
use crate::error::BoxError;

/// The connector: TCP (through a proxy's CONNECT tunnel when one applies, + TLS when https),
/// bounded by the connect timeout as a whole.
pub type Connector = TimeoutConnector<HttpsConnector<ProxyConnector>>;

/// Connecting (TCP and TLS together) took longer than the upstream's `connect` timeout.
#[derive(Debug, thiserror::Error)]
#[error("connect timeout after {0:?}")]
pub struct ConnectTimeout(pub Duration);

/// Bounds a connector's whole connect (TCP plus TLS handshake) by one timeout.
#[derive(Debug, Clone)]
pub struct TimeoutConnector<C> {
    inner: C,
    timeout: Duration,
}

impl<C> tower::Service<http::Uri> for TimeoutConnector<C>
where
    C: tower::Service<http::Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let timeout = self.timeout;
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimeout(timeout)) as BoxError),
            }
        })
    }
}

/// A pooled client for one upstream.
pub type HttpClient = Client<Connector, Full<Bytes>>;

/// The TLS roots and settings for an upstream.
pub fn tls_config(tls: &TlsParams) -> Result<ClientConfig, BoxError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if tls.native_roots {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // One unreadable system certificate should not stop the others from loading.
            let _ = roots.add(cert);
        }
    }
    if let Some(path) = &tls.ca_file {
        let file = File::open(path).map_err(|e| format!("tls.ca_file {}: {e}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
            roots.add(cert.map_err(|e| format!("tls.ca_file {}: {e}", path.display()))?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Builds the client; connections are pooled per upstream and kept alive.
pub fn build(tls: &TlsParams, connect_timeout: Duration, proxy: ProxyRules) -> Result<HttpClient, BoxError> {
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector(tls, connect_timeout, proxy)?))
}

/// The connector alone, for connections driven outside hyper-util's client.
pub fn connector(tls: &TlsParams, connect_timeout: Duration, proxy: ProxyRules) -> Result<Connector, BoxError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(tls)?)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(ProxyConnector::new(http, proxy));
    Ok(TimeoutConnector { inner: https, timeout: connect_timeout })
}
