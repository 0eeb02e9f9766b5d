//! Test support: a recording, fault-injecting mock upstream (a real hyper server on
//! 127.0.0.1:0) and an in-process relay with a small HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::net::TcpListener;

/// A request as the mock upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The relay's end of the connection the request came on.
    pub peer: SocketAddr,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("upstream received JSON")
    }
}

/// What the mock upstream does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response.
    Full { status: u16, content_type: &'static str, body: Bytes },
    /// A streamed body: each part is one write, after its delay.
    Chunks { status: u16, content_type: &'static str, parts: Vec<(Duration, Bytes)> },
    /// Headers, some parts, then the connection dies (no clean end).
    ChunksThenReset { parts: Vec<(Duration, Bytes)> },
    /// Never answers.
    Hang,
    /// Closes the connection without answering.
    Close,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Reply::Full { status, content_type: "application/json", body: body.into() }
    }

    pub fn sse(events: &[&str]) -> Self {
        Reply::Chunks {
            status: 200,
            content_type: "text/event-stream",
            parts: events.iter().map(|e| (Duration::ZERO, Bytes::from(e.to_string()))).collect(),
        }
    }
}

type Handler = Arc<dyn Fn(&Received, usize) -> Reply + Send + Sync>;

/// A mock upstream server.
pub struct MockUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl MockUpstream {
    /// Starts a server answering every request with `handler(request, index)`.
    pub async fn start(handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let io = TokioIo::new(stream);
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let handler = handler.clone();
                        let log = log.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let received = Received {
                                method: parts.method.to_string(),
                                path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                                headers: parts.headers,
                                body,
                                peer,
                            };
                            let index = {
                                let mut log = log.lock();
                                log.push(received.clone());
                                log.len() - 1
                            };
                            respond(handler(&received, index)).await
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        MockUpstream { addr, received }
    }

    /// Always the same reply.
    pub async fn always(reply: Reply) -> Self {
        MockUpstream::start(move |_, _| reply.clone()).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }
}

type MockBody = UnsyncBoxBody<Bytes, std::io::Error>;

async fn respond(reply: Reply) -> Result<Response<MockBody>, std::io::Error> {
    let streamed = |parts: Vec<(Duration, Bytes)>, fail: bool| {
        let stream = futures_util::stream::unfold((parts.into_iter(), fail), |(mut parts, fail)| async move {
            match parts.next() {
                Some((delay, bytes)) => {
                    // A zero-delay part follows at once (even a zero sleep waits for a timer tick).
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok(Frame::data(bytes)), (parts, fail)))
                }
                None if fail => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((
                        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset")),
                        (parts, false),
                    ))
                }
                None => None,
            }
        });
        StreamBody::new(stream).boxed_unsync()
    };
    let (status, content_type, body) = match reply {
        Reply::Full { status, content_type, body } => {
            (status, content_type, Full::new(body).map_err(|never: Infallible| match never {}).boxed_unsync())
        }
        Reply::Chunks { status, content_type, parts } => (status, content_type, streamed(parts, false)),
        Reply::ChunksThenReset { parts } => (200, "text/event-stream", streamed(parts, true)),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            unreachable!("the hang outlives every test")
        }
        Reply::Close => {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "closing without a response"))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert("content-type", content_type.parse().unwrap());
    Ok(response)
}

/// A relay running in-process.
pub struct Relay {
    pub addr: SocketAddr,
    pub running: switchyard::app::Running,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Relay {
    /// Starts a relay serving `toml` on an ephemeral port; `${VAR}` resolve from `env`.
    pub async fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Relay {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let config = switchyard::config::Config::from_source(toml, None, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (running, _task) = switchyard::app::start(config, "127.0.0.1:0".parse().unwrap(), async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        Relay { addr: running.addr, running, stop: Some(stop) }
    }

    pub async fn start(toml: &str) -> Relay {
        Relay::start_with_env(toml, &[]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request; returns status, headers and the whole body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
            .await
            .expect("relay answered within 30s")
            .expect("relay answered (a dropped connection is a bug)");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("relay body completes").to_bytes();
        (parts.status, parts.headers, body)
    }

    pub async fn chat(&self, headers: &[(&str, &str)], body: &serde_json::Value) -> (StatusCode, HeaderMap, Bytes) {
        self.send("POST", "/v1/chat/completions", headers, body.to_string()).await
    }
}

/// Reads one request whose JSON body ends with `}`, for tests whose upstream is a bare socket
/// that writes its answer by hand (framing a hyper server would not send).
pub async fn read_json_request(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") || !request.ends_with(b"}") {
        let n = socket.read(&mut buffer).await.unwrap();
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
    }
    request
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    let mut decoder = switchyard::sse::SseDecoder::default();
    let mut events = Vec::new();
    decoder.push(Bytes::copy_from_slice(body), &mut events).unwrap();
    events.extend(decoder.finish());
    events.iter().filter_map(|e| e.data().map(|d| String::from_utf8_lossy(&d).into_owned())).collect()
}

/// Parses a JSON error body and returns its `error` object.
pub fn error_of(body: &[u8]) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("error body is JSON ({e}): {}", String::from_utf8_lossy(body)));
    value["error"].clone()
}

/// The shared fixtures directory.
pub fn fixtures_dir(dialect: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/upstream").join(dialect);
    assert!(dir.is_dir(), "fixtures missing at {} — the shared/ folder must sit beside the repo", dir.display());
    dir
}

impl Relay {
    /// Starts a relay from a config file and applies reloads of it (polled every 50 ms).
    pub async fn start_watching(path: &std::path::Path) -> Relay {
        let config = switchyard::config::Config::load(path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (running, _task) = switchyard::app::start(config, "127.0.0.1:0".parse().unwrap(), async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        let updates =
            switchyard::config::reload::watch(path.to_owned(), Duration::from_millis(50), Duration::from_millis(30));
        let bound = switchyard::app::Bound { listen: running.addr, admin: None, allow_unauthenticated: false };
        tokio::spawn(switchyard::app::apply_reloads(running.runtime.clone(), running.metrics.clone(), bound, updates));
        Relay { addr: running.addr, running, stop: Some(stop) }
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made fresh for each test.
pub struct TestPki {
    pub ca_pem: String,
    pub server_der: Vec<u8>,
    pub server_key_der: Vec<u8>,
}

impl TestPki {
    /// A TLS acceptor presenting the server certificate, offering the `alpn` protocols in order.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.server_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .unwrap();
        server.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        tokio_rustls::TlsAcceptor::from(Arc::new(server))
    }
}

pub fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Switchyard Probe Test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "probe-test-upstream");
    let server = server.signed_by(&server_key, &ca, &ca_key).unwrap();
    TestPki { ca_pem: ca.pem(), server_der: server.der().to_vec(), server_key_der: server_key.serialize_der() }
}
