//! The connection steps, each on its own so a failure names its layer: DNS, TCP, the proxy's
//! CONNECT tunnel, TLS. They use the same proxy rules and TLS settings as the upstream's client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::cert;
use super::diagnose::{transport_fix, Class, Context, Diagnosis};
use super::{Step, Steps};
use crate::config::UpstreamParams;
use crate::error::ErrorCode;
use crate::upstream::proxy::{ProxyFailure, ProxyTarget};
use crate::upstream::{classify, client};

/// Runs DNS, TCP, CONNECT (when proxied) and TLS (for https) toward `base`; false when one
/// failed, and the HTTP steps would only repeat it.
pub(super) async fn connection_steps(
    params: &UpstreamParams,
    base: &Uri,
    proxy: Option<&ProxyTarget>,
    ctx: &Context<'_>,
    steps: &mut Steps,
) -> bool {
    let limit = params.timeouts.connect;
    let (host, port) = match proxy {
        Some(proxy) => proxy.host_port(),
        None => (
            base.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned(),
            base.port_u16().unwrap_or(if base.scheme_str() == Some("https") { 443 } else { 80 }),
        ),
    };
    let what = match proxy {
        Some(proxy) => format!("the egress proxy {}", proxy.display()),
        None => host.clone(),
    };
    // Failures toward the proxy are the proxy's class: the upstream itself was never reached.
    let class_or_proxy = |class: Class| if proxy.is_some() { Class::Proxy } else { class };
    let code_as_relay = |code: ErrorCode| relay_connect_code(code, proxy.is_some());

    let started = Instant::now();
    let resolved = timeout(limit, tokio::net::lookup_host((host.as_str(), port))).await;
    let addresses: Vec<SocketAddr> = match resolved {
        Ok(Ok(found)) => found.collect(),
        Ok(Err(error)) => {
            let class = class_or_proxy(Class::Dns);
            let diagnosis = Diagnosis::new(
                class,
                code_as_relay(ErrorCode::UpstreamDns),
                format!("could not resolve {what}: {error}"),
                transport_fix(class, ctx),
            );
            steps.push(Step::failed("dns", Some(started.elapsed()), diagnosis));
            return false;
        }
        Err(_) => {
            let class = class_or_proxy(Class::Dns);
            let diagnosis = Diagnosis::new(
                class,
                ErrorCode::UpstreamConnectTimeout,
                format!("resolving {what} took longer than {limit:?}"),
                transport_fix(class, ctx),
            );
            steps.push(Step::failed("dns", Some(started.elapsed()), diagnosis));
            return false;
        }
    };
    let shown: Vec<String> = addresses.iter().map(|a| a.ip().to_string()).collect();
    steps.push(
        Step::ok("dns", started.elapsed(), format!("{what} -> {}", shown.join(", ")))
            .with_data(json!({ "addresses": shown })),
    );

    let started = Instant::now();
    let mut stream = match connect_any(&addresses, limit).await {
        Ok(stream) => stream,
        Err((class, code, detail)) => {
            let class = class_or_proxy(class);
            let diagnosis = Diagnosis::new(
                class,
                code_as_relay(code),
                format!("connecting to {what} port {port}: {detail}"),
                transport_fix(class, ctx),
            );
            steps.push(Step::failed("tcp", Some(started.elapsed()), diagnosis));
            return false;
        }
    };
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    steps
        .push(Step::ok("tcp", started.elapsed(), format!("connected to {peer}")).with_data(json!({ "address": peer })));

    if let Some(proxy) = proxy {
        let started = Instant::now();
        match timeout(limit, proxy.tunnel(&mut stream, base)).await {
            Ok(Ok(())) => {
                let target =
                    format!("{}:{}", base.host().unwrap_or_default(), base.port_u16().unwrap_or(default_port(base)));
                steps.push(Step::ok(
                    "proxy",
                    started.elapsed(),
                    format!("{} opened a tunnel to {target}", proxy.display()),
                ));
            }
            Ok(Err(error)) => {
                let status = match error.failure() {
                    ProxyFailure::Status { status, .. } => Some(*status),
                    _ => None,
                };
                let fix = match status {
                    Some(407) => "the proxy wants credentials: proxy = \"http://user:password@host:port\" (or the same in \
                                  HTTPS_PROXY); percent-encode special characters"
                        .to_owned(),
                    Some(status) => format!(
                        "the proxy's policy refuses this destination ({status}): ask its administrators to allow {}, or \
                         list the host in NO_PROXY if it is reachable directly",
                        base.host().unwrap_or_default()
                    ),
                    None => transport_fix(Class::Proxy, ctx).unwrap_or_default(),
                };
                let mut diagnosis =
                    Diagnosis::new(Class::Proxy, ErrorCode::UpstreamProxy, error.to_string(), Some(fix));
                diagnosis.http_status = status;
                steps.push(Step::failed("proxy", Some(started.elapsed()), diagnosis));
                return false;
            }
            Err(_) => {
                let diagnosis = Diagnosis::new(
                    Class::Proxy,
                    ErrorCode::UpstreamConnectTimeout,
                    format!("{} did not answer CONNECT within {limit:?}", proxy.display()),
                    transport_fix(Class::Proxy, ctx),
                );
                steps.push(Step::failed("proxy", Some(started.elapsed()), diagnosis));
                return false;
            }
        }
    }

    if base.scheme_str() != Some("https") {
        return true;
    }
    let base_host = base.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let started = Instant::now();
    match tls(params, &base_host, stream, limit).await {
        Ok((detail, data)) => {
            steps.push(Step::ok("tls", started.elapsed(), detail).with_data(data));
            true
        }
        Err(mut diagnosis) => {
            let elapsed = started.elapsed();
            if matches!(
                diagnosis.class,
                Class::TlsUntrustedCertificate | Class::TlsCertificateExpired | Class::TlsNameMismatch
            ) {
                if let Some(presented) = presented_certificate(&addresses, proxy, base, &base_host, limit).await {
                    diagnosis.message = format!("{}; the server presents {presented}", diagnosis.message);
                }
            }
            diagnosis.fix = diagnosis.fix.or_else(|| transport_fix(diagnosis.class, ctx));
            steps.push(Step::failed("tls", Some(elapsed), diagnosis));
            false
        }
    }
}

fn default_port(uri: &Uri) -> u16 {
    if uri.scheme_str() == Some("http") {
        80
    } else {
        443
    }
}

/// The relay's code for a failure while connecting, from its code when the host is reached
/// directly: one timeout bounds the relay's whole connect (DNS, TCP, CONNECT, TLS), and through
/// a proxy any other failure is the proxy's.
fn relay_connect_code(direct: ErrorCode, proxied: bool) -> ErrorCode {
    match direct {
        ErrorCode::UpstreamConnectTimeout => direct,
        _ if proxied => ErrorCode::UpstreamProxy,
        _ => direct,
    }
}

/// Tries each address in order, as the client does, within one time limit. A failure comes
/// with the relay's code for it, as if reached directly.
async fn connect_any(addresses: &[SocketAddr], limit: Duration) -> Result<TcpStream, (Class, ErrorCode, String)> {
    let deadline = Instant::now() + limit;
    let mut last = (Class::ConnectRefused, ErrorCode::UpstreamConnectRefused, "no address".to_owned());
    for address in addresses {
        match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => {
                let code = classify::transport_code(&error);
                last = match error.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        (Class::ConnectRefused, code, format!("{address}: connection refused"))
                    }
                    std::io::ErrorKind::TimedOut => (Class::ConnectTimeout, code, format!("{address}: {error}")),
                    _ => (Class::ConnectRefused, code, format!("{address}: {error}")),
                };
            }
            Err(_) => {
                return Err((
                    Class::ConnectTimeout,
                    ErrorCode::UpstreamConnectTimeout,
                    format!("no connection within {limit:?}"),
                ))
            }
        }
    }
    Err(last)
}

/// The TLS config the client uses, with the ALPN offer hyper-rustls makes.
fn client_tls(params: &UpstreamParams) -> Result<rustls::ClientConfig, Diagnosis> {
    // The relay cannot build the upstream's client with these settings at all.
    let mut config = client::tls_config(&params.tls)
        .map_err(|e| Diagnosis::new(Class::TlsHandshake, ErrorCode::Internal, format!("TLS settings: {e}"), None))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn tls(
    params: &UpstreamParams,
    host: &str,
    stream: TcpStream,
    limit: Duration,
) -> Result<(String, serde_json::Value), Diagnosis> {
    let config = client_tls(params)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        let code = classify::transport_code(&e);
        Diagnosis::new(Class::TlsHandshake, code, format!("{host:?} is not a TLS server name: {e}"), None)
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connected = match timeout(limit, connector.connect(name, stream)).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(error)) => {
            return Err(tls_failure(host, &error));
        }
        Err(_) => {
            return Err(Diagnosis::new(
                Class::ConnectTimeout,
                ErrorCode::UpstreamConnectTimeout,
                format!("the TLS handshake with {host} did not complete within {limit:?}"),
                Some("the port may not speak TLS (use http:// in base_url if it is plain HTTP), or a middlebox stalls the handshake".to_owned()),
            ))
        }
    };
    let (_, session) = connected.get_ref();
    let version = session.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default().replace("TLSv1_", "TLSv1.");
    let alpn =
        session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_else(|| "none".into());
    let summary = session.peer_certificates().and_then(|chain| chain.first()).and_then(|c| cert::summarize(c));
    let mut detail = format!("{version}, ALPN {alpn}");
    let mut data = json!({ "version": version, "alpn": alpn });
    if let Some(summary) = summary {
        let days = summary.days_left(unix_now());
        detail.push_str(&format!(
            "; certificate {} issued by {}, expires {} ({days} days)",
            summary.subject,
            summary.issuer,
            summary.expiry_date()
        ));
        data["subject"] = summary.subject.clone().into();
        data["issuer"] = summary.issuer.clone().into();
        data["expires"] = summary.expiry_date().into();
        data["days_left"] = days.into();
    }
    Ok((detail, data))
}

/// Classifies a failed handshake from the typed rustls error, with the fix for each cause.
fn tls_failure(host: &str, error: &std::io::Error) -> Diagnosis {
    let rustls_error = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let (class, what, fix) = match rustls_error {
        Some(rustls::Error::InvalidCertificate(reason)) => match reason {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                (Class::TlsUntrustedCertificate, "untrusted certificate", None)
            }
            // `openssl req -x509` makes exactly this: a self-signed certificate marked as a CA.
            // rustls never accepts a CA certificate as the server's own, trusted or not.
            CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => (
                Class::TlsUntrustedCertificate,
                "untrusted certificate (a CA certificate used as the server's own)",
                Some(
                    "the server presents a CA certificate as its own (typical of `openssl req -x509`), which is \
                     refused even when trusted: give the server a certificate signed by a CA (basicConstraints \
                     CA:FALSE, subjectAltName = its host name or IP) and put that CA in tls.ca_file"
                        .to_owned(),
                ),
            ),
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                (Class::TlsCertificateExpired, "certificate outside its validity period", None)
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (Class::TlsNameMismatch, "certificate for another name", None)
            }
            other => (
                Class::TlsHandshake,
                "certificate refused",
                Some(format!("the server's certificate is refused ({other:?}): replace it on the server")),
            ),
        },
        Some(rustls::Error::InvalidMessage(_)) => (
            Class::TlsHandshake,
            "not a TLS answer",
            Some("the port does not speak TLS: if the server is plain HTTP, use http:// in base_url".to_owned()),
        ),
        Some(rustls::Error::AlertReceived(alert)) => (
            Class::TlsHandshake,
            "the server refused the handshake",
            Some(format!(
                "the server sent the TLS alert {alert:?}: it may want a client certificate, or other TLS versions \
                 or ciphers than this relay offers (TLS 1.2 and 1.3)"
            )),
        ),
        Some(rustls::Error::PeerIncompatible(_)) => (
            Class::TlsHandshake,
            "no TLS version or cipher in common",
            Some(
                "the server offers only TLS versions or ciphers this relay refuses (it speaks TLS 1.2 and 1.3)"
                    .to_owned(),
            ),
        ),
        _ => (Class::TlsHandshake, "handshake failed", None),
    };
    Diagnosis::new(class, classify::transport_code(error), format!("TLS with {host}: {what}: {error}"), fix)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Connects once more and reads the certificate the server presents, to name it in the error.
/// The handshake is always aborted right after the certificate arrives: nothing is sent over a
/// connection that was not verified.
async fn presented_certificate(
    addresses: &[SocketAddr],
    proxy: Option<&ProxyTarget>,
    base: &Uri,
    host: &str,
    limit: Duration,
) -> Option<String> {
    let mut stream = connect_any(addresses, limit).await.ok()?;
    if let Some(proxy) = proxy {
        timeout(limit, proxy.tunnel(&mut stream, base)).await.ok()?.ok()?;
    }
    let capture = Arc::new(Capture::default());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).ok()?;
    // Fails by design: the capturing verifier refuses every certificate.
    let _ = timeout(limit, tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream)).await;
    let der = capture.seen.lock().take()?;
    let summary = cert::summarize(&der)?;
    let signed =
        if summary.self_signed { " (self-signed)".to_owned() } else { format!(" issued by {}", summary.issuer) };
    Some(format!("{}{signed}, expires {}", summary.subject, summary.expiry_date()))
}

/// A verifier that only records the end-entity certificate and refuses it.
#[derive(Debug, Default)]
struct Capture {
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock() = Some(end_entity.as_ref().to_vec());
        Err(rustls::Error::General("certificate captured for display; connection refused".into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not verifying".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not verifying".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
