//! The HTTP client toward one upstream: hyper-util's pooled client over rustls, HTTP/1.1 and
//! HTTP/2 chosen by ALPN, through the egress proxy when one applies, with the connect timeout
//! covering the proxy's CONNECT, TCP and the TLS handshake.

use std::error::Error as StdError;
use std::fs::File;
use std::future::Future;
use std::io::BufReader;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;
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

/// The clients toward an `https` upstream.
///
/// ALPN settles HTTP/2 or HTTP/1.1 only in a connection's handshake, so hyper-util's client,
/// not knowing which it will get, starts a connection for every request that finds none idle:
/// a cold burst of N requests to an HTTP/2 server opened N TLS connections and kept one. Its
/// HTTP/2-only client lets one request connect while the others wait for that connection. So
/// requests go to HTTP/2-only clients until the server chooses HTTP/1.1, and from then on to the
/// client that takes either.
///
/// An HTTP/2-only client keeps one connection, and a request over the server's limit of
/// concurrent streams on it waits, inside the client, for another's stream to end: with LLM
/// streams that last a minute, for a minute, or until its first-byte timeout. So there are
/// several, each with the requests it has in flight counted, and a request goes to the first
/// with fewer than [`STREAMS_PER_CONNECTION`].
#[derive(Clone)]
pub struct HttpsClient {
    lanes: Arc<Mutex<Vec<Lane>>>,
    lane: legacy::Builder,
    http2: Http2Connector,
    any: HttpClient,
    learned: Arc<Learned>,
}

/// Requests in flight on one HTTP/2 connection before another is opened: the least that
/// servers commonly allow at once (`SETTINGS_MAX_CONCURRENT_STREAMS`: 100 at Google, 128 for
/// nginx and AWS's load balancers, 250 in Go, 256 at Cloudflare).
pub const STREAMS_PER_CONNECTION: usize = 100;
/// HTTP/2 connections per upstream at most; past that, requests go to the least busy.
const MAX_HTTP2_CONNECTIONS: usize = 64;

/// One HTTP/2-only client, whose pool holds one connection at a time.
#[derive(Clone)]
struct Lane {
    client: Client<Http2Connector, Full<Bytes>>,
    in_flight: Arc<AtomicUsize>,
}

/// What the HTTP/2 clients' connections have shown.
#[derive(Default)]
struct Learned {
    /// The server chose HTTP/1.1 (or no protocol) by ALPN.
    chose_http1: AtomicBool,
    /// Why the latest connect failed, if it did: the requests that waited for it fail with it.
    failure: Mutex<Option<Arc<dyn StdError + Send + Sync>>>,
}

impl HttpsClient {
    /// Builds the clients, which pool their connections apart.
    pub fn new(tls: &TlsParams, connect_timeout: Duration, proxy: ProxyRules) -> Result<Self, BoxError> {
        let connector = connector(tls, connect_timeout, proxy)?;
        let learned = Arc::new(Learned::default());
        let mut lane = pooled();
        let any = lane.build(connector.clone());
        lane.http2_only(true);
        let http2 = Http2Connector { inner: connector, learned: learned.clone() };
        Ok(HttpsClient { lanes: Arc::default(), lane, http2, any, learned })
    }

    /// Sends `request` over HTTP/2 while the server may speak it, else over HTTP/1.1.
    pub async fn request(&self, request: Request<Bytes>) -> Result<Response<InFlight>, BoxError> {
        if self.learned.chose_http1.load(Ordering::Relaxed) {
            return Ok(self.any.request(request.map(Full::new)).await?.map(InFlight::uncounted));
        }
        // The client gives no request back from a failed connect; the body is shared, not
        // copied.
        let again = copy(&request);
        // Counted until the body is dropped, or here if the request fails (or is dropped) first.
        let (client, slot) = self.take_stream();
        match client.request(request.map(Full::new)).await {
            Ok(response) => Ok(response.map(|body| InFlight { body, _slot: Some(slot) })),
            // Not sent, and not for a failure of its own connect: the server chose HTTP/1.1, or
            // the connect this request waited for failed, which hyper-util reports only as
            // "canceled".
            Err(error) if error.is_connect() && !caused_by::<ConnectFailed>(&error) => {
                drop(slot);
                if !self.learned.chose_http1.load(Ordering::Relaxed) {
                    if let Some(failure) = self.learned.failure.lock().clone() {
                        return Err(Box::new(ConnectFailed(failure)));
                    }
                }
                Ok(self.any.request(again.map(Full::new)).await?.map(InFlight::uncounted))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A slot for a stream on the first lane with room for it, a new lane if none has, or the
    /// least busy one; under the lock, so that two requests cannot both take a lane's last place.
    fn take_stream(&self) -> (Client<Http2Connector, Full<Bytes>>, Slot) {
        let mut lanes = self.lanes.lock();
        let busy = |lane: &Lane| lane.in_flight.load(Ordering::Relaxed);
        let lane = match lanes.iter().find(|lane| busy(lane) < STREAMS_PER_CONNECTION) {
            Some(lane) => lane.clone(),
            None if lanes.len() < MAX_HTTP2_CONNECTIONS => {
                let lane = Lane { client: self.lane.build(self.http2.clone()), in_flight: Arc::default() };
                lanes.push(lane.clone());
                lane
            }
            None => lanes.iter().min_by_key(|lane| busy(lane)).cloned().expect("lanes were opened"),
        };
        lane.in_flight.fetch_add(1, Ordering::Relaxed);
        (lane.client, Slot(lane.in_flight))
    }
}

/// A stream counted on its HTTP/2 lane while this lives.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that holds, while it lives, the slot of its stream on an HTTP/2 lane.
pub struct InFlight {
    body: Incoming,
    _slot: Option<Slot>,
}

impl InFlight {
    fn uncounted(body: Incoming) -> Self {
        InFlight { body, _slot: None }
    }
}

impl http_body::Body for InFlight {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn caused_by<E: StdError + 'static>(error: &legacy::Error) -> bool {
    let mut cause = error.source();
    while let Some(current) = cause {
        if current.is::<E>() {
            return true;
        }
        cause = current.source();
    }
    false
}

fn copy(request: &Request<Bytes>) -> Request<Bytes> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// The server chose HTTP/1.1, or no protocol, on a connection made for the HTTP/2 client.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's server did not choose HTTP/2 by ALPN")]
struct ChoseHttp1;

/// A connect of the HTTP/2 client failed: it reads as its cause, which classifies it.
#[derive(Debug)]
struct ConnectFailed(Arc<dyn StdError + Send + Sync>);

impl std::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for ConnectFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// Connects for the HTTP/2 client: hands over a connection only if its server chose h2, and
/// once a server chose otherwise, does not connect at all, so that requests waiting for a
/// connection that turned out HTTP/1.1 fail at once and go to the other client.
#[derive(Clone)]
struct Http2Connector {
    inner: Connector,
    learned: Arc<Learned>,
}

impl tower::Service<Uri> for Http2Connector {
    type Response = <Connector as tower::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let learned = self.learned.clone();
        if learned.chose_http1.load(Ordering::Relaxed) {
            return Box::pin(std::future::ready(Err(Box::new(ChoseHttp1) as BoxError)));
        }
        // A failure stays only as long as it is the latest connect's: requests that waited for
        // a connect abandoned half-way (its request went away) must not get an older one.
        *learned.failure.lock() = None;
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let connection = match connecting.await {
                Ok(connection) => connection,
                Err(error) => {
                    let failure: Arc<dyn StdError + Send + Sync> = Arc::from(error);
                    *learned.failure.lock() = Some(failure.clone());
                    return Err(Box::new(ConnectFailed(failure)) as BoxError);
                }
            };
            if connection.connected().is_negotiated_h2() {
                Ok(connection)
            } else {
                learned.chose_http1.store(true, Ordering::Relaxed);
                Err(Box::new(ChoseHttp1) as BoxError)
            }
        })
    }
}

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
    Ok(pooled().build(connector(tls, connect_timeout, proxy)?))
}

fn pooled() -> legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    builder
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
