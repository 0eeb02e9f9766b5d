//! Egress through an HTTP proxy: which destinations go through one, and the CONNECT tunnel.
//!
//! The rules come from an upstream's `proxy = "http://[user:pass@]host:port"` or, when that is
//! unset, from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` (upper or lower case),
//! read once when the client is built. hyper-util's [`Matcher`] interprets them as curl does
//! (`NO_PROXY` domains, subdomains and CIDR ranges; userinfo decoded into a Basic
//! `Proxy-Authorization`), except for a `NO_PROXY` `*`, which [`ProxyRules::resolve`] handles.
//!
//! Every proxied destination, `http` and `https` alike, is reached through a CONNECT tunnel, so
//! TLS stays end to end and the same connection code serves both. The handshake is done here
//! rather than with hyper-util's `Tunnel` because that one reports every refusal other than 407
//! as a bare "unsuccessful": the field failure this exists for is exactly a proxy answering 403
//! that nobody could see, so the proxy's status and reason must reach the error.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::BoxError;

/// A proxy's answer to CONNECT is a status line and headers; anything longer is not a proxy.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Reads a variable of the process environment; what [`ProxyRules::resolve`] is given outside
/// tests.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Which destinations of one upstream go through which proxy.
#[derive(Clone, Default)]
pub struct ProxyRules {
    matcher: Option<Arc<Matcher>>,
}

impl fmt::Debug for ProxyRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Matcher's own Debug leaves credentials out.
        f.debug_struct("ProxyRules").field("matcher", &self.matcher).finish()
    }
}

impl ProxyRules {
    /// The rules for an upstream: its configured `proxy` when set (used for every destination,
    /// `NO_PROXY` does not apply to it), otherwise the proxy variables looked up through `env`.
    pub fn resolve(configured: Option<&Uri>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        if let Some(proxy) = configured {
            let matcher = Matcher::builder().all(proxy.to_string()).build();
            return ProxyRules { matcher: Some(Arc::new(matcher)) };
        }
        let first = |names: [&str; 2], is_url: bool| -> String {
            for name in names {
                if let Some(value) = env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                    if is_url && value.parse::<Uri>().is_err() {
                        // The value may hold credentials, so only the variable is named.
                        tracing::warn!("{name} is not a URL; it is ignored");
                    }
                    return value;
                }
            }
            String::new()
        };
        let (all, http, https, no) = (
            first(["ALL_PROXY", "all_proxy"], true),
            first(["HTTP_PROXY", "http_proxy"], true),
            first(["HTTPS_PROXY", "https_proxy"], true),
            first(["NO_PROXY", "no_proxy"], false),
        );
        // hyper-util's matcher applies a `*` entry to host names only, so an IP-literal base_url
        // would still be proxied; curl's `*` means every destination.
        let bypasses_every_host = no.split(',').any(|entry| entry.trim() == "*");
        if (all.is_empty() && http.is_empty() && https.is_empty()) || bypasses_every_host {
            return ProxyRules::default();
        }
        let matcher = Matcher::builder().all(all).http(http).https(https).no(no).build();
        ProxyRules { matcher: Some(Arc::new(matcher)) }
    }

    /// The proxy to use toward `dst`, if any.
    pub fn for_destination(&self, dst: &Uri) -> Option<ProxyTarget> {
        let intercept = self.matcher.as_ref()?.intercept(dst)?;
        let uri = intercept.uri();
        let shown = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        Some(ProxyTarget { uri: uri.clone(), auth: intercept.basic_auth().cloned(), shown })
    }
}

/// One proxy, as matched for a destination.
#[derive(Clone)]
pub struct ProxyTarget {
    /// `scheme://host:port/`, credentials removed.
    uri: Uri,
    /// `Basic ...` from the URL's userinfo, marked sensitive.
    auth: Option<HeaderValue>,
    shown: String,
}

impl fmt::Debug for ProxyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyTarget").field("proxy", &self.shown).field("auth", &self.auth.is_some()).finish()
    }
}

impl ProxyTarget {
    /// `scheme://host:port`, safe to print: credentials are never part of it.
    pub fn display(&self) -> &str {
        &self.shown
    }

    /// Host and port to open the TCP connection to.
    pub fn host_port(&self) -> (String, u16) {
        let host = self.uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = self.uri.port_u16().unwrap_or(match self.uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        (host, port)
    }

    /// Whether the URL carried credentials.
    pub fn has_credentials(&self) -> bool {
        self.auth.is_some()
    }

    /// Only plain-HTTP proxies are spoken to; TLS toward the proxy itself and SOCKS are not.
    fn check_scheme(&self) -> Result<(), ProxyError> {
        match self.uri.scheme_str() {
            Some("http") | None => Ok(()),
            Some(other) => Err(self.error(ProxyFailure::Unsupported(other.to_owned()))),
        }
    }

    fn error(&self, failure: ProxyFailure) -> ProxyError {
        ProxyError { proxy: self.shown.clone(), failure }
    }

    /// Opens a CONNECT tunnel to `dst` (its host and port, 443 for https and 80 for http when
    /// the URL names none) over `stream`, an open connection to this proxy.
    pub async fn tunnel<S>(&self, stream: &mut S, dst: &Uri) -> Result<(), ProxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.check_scheme()?;
        let host =
            dst.host().ok_or_else(|| self.error(ProxyFailure::Handshake("the destination has no host".into())))?;
        let port = dst.port_u16().unwrap_or(if dst.scheme_str() == Some("http") { 80 } else { 443 });
        let target = format!("{host}:{port}");
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
        if let Some(auth) = &self.auth {
            head.extend_from_slice(b"Proxy-Authorization: ");
            head.extend_from_slice(auth.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let io = |e: std::io::Error| self.error(ProxyFailure::Handshake(format!("CONNECT {target}: {e}")));
        stream.write_all(&head).await.map_err(io)?;
        stream.flush().await.map_err(io)?;

        let mut response = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        let end = loop {
            let read = stream.read(&mut buf).await.map_err(io)?;
            if read == 0 {
                return Err(self.error(ProxyFailure::Handshake(format!(
                    "the proxy closed the connection before answering CONNECT {target}"
                ))));
            }
            response.extend_from_slice(&buf[..read]);
            if let Some(at) = memchr::memmem::find(&response, b"\r\n\r\n") {
                break at + 4;
            }
            if response.len() > MAX_RESPONSE_HEAD {
                return Err(self.error(ProxyFailure::Handshake(format!("no end to the answer to CONNECT {target}"))));
            }
        };
        let status_line = response.split(|b| *b == b'\n').next().unwrap_or_default();
        let status_line = String::from_utf8_lossy(status_line).trim().to_owned();
        let mut words = status_line.splitn(3, ' ');
        let (version, code, reason) =
            (words.next().unwrap_or(""), words.next().unwrap_or(""), words.next().unwrap_or(""));
        let status = match code.parse::<u16>() {
            Ok(status) if version.starts_with("HTTP/") => status,
            _ => {
                return Err(self.error(ProxyFailure::Handshake(format!(
                    "not an HTTP answer to CONNECT {target}: {:?}",
                    status_line.chars().take(80).collect::<String>()
                ))))
            }
        };
        if !(200..300).contains(&status) {
            return Err(self.error(ProxyFailure::Status { status, reason: reason.to_owned(), target }));
        }
        if response.len() > end {
            // Nothing may come before the client speaks (TLS ClientHello or the HTTP request);
            // bytes here would be lost to the protocol on top, so the tunnel is not usable.
            return Err(
                self.error(ProxyFailure::Handshake(format!("the proxy sent data after accepting CONNECT {target}")))
            );
        }
        Ok(())
    }
}

/// Why a proxy could not be used.
#[derive(Debug)]
pub enum ProxyFailure {
    /// The TCP connection to the proxy failed (refused, unresolvable, ...).
    Connect(BoxError),
    /// The proxy answered CONNECT with a non-2xx status.
    Status { status: u16, reason: String, target: String },
    /// The proxy broke the CONNECT exchange.
    Handshake(String),
    /// The proxy URL's scheme is not `http`.
    Unsupported(String),
}

/// A failure of the egress proxy, classified as `upstream_proxy`. Names the proxy, never its
/// credentials.
#[derive(Debug)]
pub struct ProxyError {
    proxy: String,
    failure: ProxyFailure,
}

impl ProxyError {
    /// The proxy, as `scheme://host:port`.
    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    /// What went wrong.
    pub fn failure(&self) -> &ProxyFailure {
        &self.failure
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proxy = &self.proxy;
        match &self.failure {
            ProxyFailure::Connect(cause) => write!(f, "cannot connect to the egress proxy {proxy}: {cause}"),
            ProxyFailure::Status { status: 407, reason, target } => write!(
                f,
                "the egress proxy {proxy} answered CONNECT {target} with 407 {reason}: it wants credentials \
                 (user:password@ in the proxy URL) or rejected the ones given"
            ),
            ProxyFailure::Status { status, reason, target } => {
                write!(f, "the egress proxy {proxy} refused CONNECT {target} with {status} {reason}")
            }
            ProxyFailure::Handshake(detail) => write!(f, "the egress proxy {proxy} failed: {detail}"),
            ProxyFailure::Unsupported(scheme) => {
                write!(f, "the egress proxy {proxy} uses {scheme}://, but only http:// proxies are supported")
            }
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            ProxyFailure::Connect(cause) => Some(cause.as_ref()),
            _ => None,
        }
    }
}

/// TCP toward an upstream, directly or through a CONNECT tunnel as the rules say. Yields the
/// plain stream the TLS layer (or HTTP, for `http` upstreams) runs over.
#[derive(Clone, Debug)]
pub struct ProxyConnector {
    inner: HttpConnector,
    rules: ProxyRules,
}

impl ProxyConnector {
    /// Wraps the TCP connector.
    pub fn new(inner: HttpConnector, rules: ProxyRules) -> Self {
        ProxyConnector { inner, rules }
    }
}

impl tower::Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower::Service::<Uri>::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let Some(proxy) = self.rules.for_destination(&dst) else {
            let connecting = tower::Service::call(&mut self.inner, dst);
            return Box::pin(async move { connecting.await.map_err(Into::into) });
        };
        let mut inner = self.inner.clone();
        Box::pin(async move {
            proxy.check_scheme()?;
            let (host, port) = proxy.host_port();
            let proxy_uri = Uri::builder()
                .scheme("http")
                .authority(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
                .path_and_query("/")
                .build()
                .map_err(|e| proxy.error(ProxyFailure::Handshake(format!("proxy address: {e}"))))?;
            let mut stream = tower::Service::call(&mut inner, proxy_uri)
                .await
                .map_err(|e| proxy.error(ProxyFailure::Connect(e.into())))?
                .into_inner();
            proxy.tunnel(&mut stream, &dst).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    fn dst(url: &str) -> Uri {
        url.parse().unwrap()
    }

    #[test]
    fn no_variables_no_proxy() {
        let rules = ProxyRules::resolve(None, &env(&[]));
        assert!(rules.for_destination(&dst("https://api.example.com/v1")).is_none());
    }

    #[test]
    fn https_and_http_variables_apply_by_scheme_and_no_proxy_excludes() {
        let rules = ProxyRules::resolve(
            None,
            &env(&[
                ("HTTPS_PROXY", "http://secure:3128"),
                ("http_proxy", "http://plain:8080"),
                ("no_proxy", "internal.example, 10.0.0.0/8"),
            ]),
        );
        assert_eq!(rules.for_destination(&dst("https://api.example.com/v1")).unwrap().display(), "http://secure:3128");
        assert_eq!(rules.for_destination(&dst("http://api.example.com/v1")).unwrap().display(), "http://plain:8080");
        assert!(rules.for_destination(&dst("https://llm.internal.example/v1")).is_none());
        assert!(rules.for_destination(&dst("http://10.1.2.3:8000/v1")).is_none());
    }

    #[test]
    fn a_no_proxy_star_bypasses_ip_literals_as_well_as_names() {
        const CASES: &[&[(&str, &str)]] = &[
            &[("HTTP_PROXY", "http://plain:8080"), ("NO_PROXY", "*")],
            &[("http_proxy", "http://plain:8080"), ("no_proxy", " * ")],
            &[("ALL_PROXY", "http://plain:8080"), ("NO_PROXY", "internal.example,*")],
        ];
        for pairs in CASES {
            let rules = ProxyRules::resolve(None, &env(pairs));
            for url in ["http://127.0.0.1:22012/v1", "https://[::1]:22012/v1", "http://localhost:22012/v1"] {
                assert!(rules.for_destination(&dst(url)).is_none(), "{pairs:?} proxies {url}");
            }
        }
    }

    #[test]
    fn upper_case_wins_over_lower_case() {
        let rules =
            ProxyRules::resolve(None, &env(&[("HTTPS_PROXY", "http://upper:1"), ("https_proxy", "http://lower:2")]));
        assert_eq!(rules.for_destination(&dst("https://x.example")).unwrap().display(), "http://upper:1");
    }

    #[test]
    fn the_configured_proxy_wins_over_the_environment_and_hides_credentials() {
        let configured: Uri = "http://user:p%40ss@corp-proxy:3128".parse().unwrap();
        let rules = ProxyRules::resolve(
            Some(&configured),
            &env(&[("HTTPS_PROXY", "http://other:1"), ("NO_PROXY", "x.example")]),
        );
        let target = rules.for_destination(&dst("https://x.example/v1")).unwrap();
        assert_eq!(target.display(), "http://corp-proxy:3128");
        assert_eq!(target.host_port(), ("corp-proxy".to_owned(), 3128));
        assert!(target.has_credentials());
        assert!(!format!("{target:?} {rules:?}").contains("p%40ss"));
        // user:p@ss in Basic.
        assert_eq!(target.auth.as_ref().unwrap(), "Basic dXNlcjpwQHNz");
    }

    #[tokio::test]
    async fn connect_is_sent_and_a_refusal_names_proxy_and_status() {
        let configured: Uri = "http://u:secret@127.0.0.1:9".parse().unwrap();
        let target =
            ProxyRules::resolve(Some(&configured), &env(&[])).for_destination(&dst("http://up.example/v1")).unwrap();
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        let proxy = tokio::spawn(async move {
            let mut seen = vec![0u8; 1024];
            let read = theirs.read(&mut seen).await.unwrap();
            theirs.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&seen[..read]).into_owned()
        });
        let error = target.tunnel(&mut ours, &dst("http://up.example/v1")).await.unwrap_err();
        let request = proxy.await.unwrap();
        assert!(request.starts_with("CONNECT up.example:80 HTTP/1.1\r\nHost: up.example:80\r\n"), "{request}");
        assert!(request.contains("Proxy-Authorization: Basic dTpzZWNyZXQ=\r\n"), "{request}");
        assert!(matches!(error.failure(), ProxyFailure::Status { status: 403, .. }));
        let text = error.to_string();
        assert!(text.contains("http://127.0.0.1:9") && text.contains("403 Forbidden"), "{text}");
        assert!(!text.contains("secret"));
    }

    #[tokio::test]
    async fn only_http_proxies_are_spoken_to() {
        let target = ProxyRules::resolve(None, &env(&[("ALL_PROXY", "socks5h://127.0.0.1:1080")]))
            .for_destination(&dst("https://up.example"))
            .unwrap();
        let (mut ours, _theirs) = tokio::io::duplex(64);
        let error = target.tunnel(&mut ours, &dst("https://up.example")).await.unwrap_err();
        assert!(matches!(error.failure(), ProxyFailure::Unsupported(scheme) if scheme == "socks5h"));
        assert!(error.to_string().contains("only http:// proxies"), "{error}");
    }

    #[tokio::test]
    async fn a_2xx_opens_the_tunnel() {
        let target = ProxyRules::resolve(Some(&"http://127.0.0.1:9".parse().unwrap()), &env(&[]))
            .for_destination(&dst("https://up.example"))
            .unwrap();
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut seen = vec![0u8; 1024];
            let _ = theirs.read(&mut seen).await;
            let _ = theirs.write_all(b"HTTP/1.0 200 Connection established\r\n\r\n").await;
            let _ = theirs.read(&mut seen).await;
        });
        target.tunnel(&mut ours, &dst("https://up.example")).await.unwrap();
    }
}
