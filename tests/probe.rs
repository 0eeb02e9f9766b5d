//! `switchyard probe` and the relay against local servers built to fail one way each: refused
//! port, unresolvable name, self-signed TLS, a WAF that blocks SDK fingerprints, a base_url
//! without `/v1`, a stream that never sends an event, rejected parameters, and egress proxies
//! that refuse or tunnel. Each failure is asserted twice: as the relay's error code (through the
//! in-process relay) and as the probe's class and suggested fix (the real binary, `--json`).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};
use support::{error_of, sse_data, test_pki, MockUpstream, Received, Relay, Reply, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"real-model","choices":[{"index":0,"message":{"role":"assistant","content":"OK"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
const MODELS: &str =
    r#"{"object":"list","data":[{"id":"real-model","object":"model"},{"id":"other-model","object":"model"}]}"#;
const API_KEY: &str = "sk-probe-test-key-0123456789";

/// A well-behaved OpenAI-compatible upstream under `/v1`.
fn healthy(received: &Received) -> Reply {
    if received.path.ends_with("/models") {
        return Reply::json(200, MODELS);
    }
    let streamed = serde_json::from_slice::<Value>(&received.body).map(|b| b["stream"] == json!(true)).unwrap_or(false);
    if streamed {
        Reply::sse(&[
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"OK\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        ])
    } else {
        Reply::json(200, COMPLETION)
    }
}

fn config(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[upstreams.primary]
dialect = "openai-completions"
base_url = "{base_url}"
api_key = "{API_KEY}"
timeouts = {{ connect = "2s", first_byte = "2s" }}
retry = {{ attempts = 1 }}
{extra}

[[models]]
name = "gpt"
targets = [{{ upstream = "primary", model = "real-model" }}]
"#
    )
}

const PROXY_VARS: &[&str] =
    &["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"];

/// Runs `switchyard probe` with `args` on a config; returns whether it exited 0, and its stdout.
async fn run_probe(toml: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    static SERIAL: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "switchyard-probe-{}-{}.toml",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, toml).unwrap();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let run_path = path.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command.arg("probe").args(args).arg("--config").arg(&run_path);
        for name in PROXY_VARS {
            command.env_remove(name);
        }
        command.envs(env);
        command.output().unwrap()
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!stdout.is_empty(), "probe printed nothing; stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), stdout)
}

/// Runs `switchyard probe --json` on a config; returns whether it exited 0, and its report.
async fn probe_with_env(toml: &str, env: &[(&str, &str)]) -> (bool, Value, String) {
    let (ok, stdout) = run_probe(toml, env, &["--json"]).await;
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("probe --json printed JSON ({e}):\n{stdout}"));
    (ok, report, stdout)
}

async fn probe(toml: &str) -> (bool, Value, String) {
    probe_with_env(toml, &[]).await
}

/// The named step of the first upstream.
fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["upstreams"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}

fn assert_failed(report: &Value, name: &str, class: &str, fix_contains: &str) {
    let found = step(report, name);
    assert_eq!(found["status"], "failed", "{found:#}");
    assert_eq!(found["class"], class, "{found:#}");
    let fix = found["fix"].as_str().unwrap_or_else(|| panic!("no fix in {found:#}"));
    assert!(fix.contains(fix_contains), "fix {fix:?} lacks {fix_contains:?}");
}

/// The relay's error for one chat request.
async fn relay_error(toml: &str, stream: bool) -> (u16, Value) {
    let relay = Relay::start(toml).await;
    let request = json!({"model": "gpt", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = relay.chat(&[], &request).await;
    (status.as_u16(), error_of(&body))
}

#[tokio::test]
async fn a_healthy_upstream_passes_every_step_and_no_secret_is_printed() {
    let upstream = MockUpstream::start(|r, _| healthy(r)).await;
    let (ok, report, text) = probe(&config(&format!("{}/v1", upstream.url()), "")).await;
    assert!(ok, "{report:#}");
    for name in ["dns", "tcp", "models", "chat", "stream"] {
        assert_eq!(step(&report, name)["status"], "ok", "{report:#}");
    }
    assert_eq!(report["upstreams"][0]["model"], "real-model");
    assert_eq!(step(&report, "stream")["data"]["done"], true);
    assert!(!text.contains(API_KEY), "the key leaked:\n{text}");
    // The probe's requests went through the relay's header policy: no SDK fingerprint upstream.
    let chat = upstream.received().into_iter().find(|r| r.path == "/v1/chat/completions").unwrap();
    assert!(chat.headers.keys().all(|h| !h.as_str().starts_with("x-stainless-")));
    assert_eq!(chat.headers["authorization"], format!("Bearer {API_KEY}").as_str());
}

#[tokio::test]
async fn refused_port() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let toml = config(&format!("http://{closed}/v1"), "");
    let (status, error) = relay_error(&toml, false).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_connect_refused"), "{error}");
    let (ok, report, _) = probe(&toml).await;
    assert!(!ok);
    assert_failed(&report, "tcp", "connect_refused", "check the port");
    assert_eq!(step(&report, "tcp")["code"], error["code"], "{report:#}");
    assert_eq!(step(&report, "chat")["status"], "skipped");
    let (_, text) = run_probe(&toml, &[], &[]).await;
    assert!(text.contains("class: connect_refused (relay error code upstream_connect_refused)"), "{text}");
}

#[tokio::test]
async fn unresolvable_host() {
    let toml = config("http://switchyard-probe-test.invalid/v1", "");
    let (status, error) = relay_error(&toml, false).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_dns"), "{error}");
    let (ok, report, _) = probe(&toml).await;
    assert!(!ok);
    assert_failed(&report, "dns", "dns", "host name");
    assert_eq!(step(&report, "dns")["code"], error["code"], "{report:#}");
}

/// Accepts connections and never says a word.
async fn silent_peer() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    addr
}

#[tokio::test]
async fn a_silent_tls_server_or_proxy_is_a_connect_timeout_for_the_relay_and_the_probe() {
    let silent = silent_peer().await;
    let upstream = MockUpstream::start(|r, _| healthy(r)).await;
    let cases = [
        ("tls", config(&format!("https://{silent}/v1"), "")),
        ("proxy", config(&format!("{}/v1", upstream.url()), &format!("proxy = \"http://{silent}\""))),
    ];
    for (failing_step, toml) in cases {
        let toml = toml.replace("connect = \"2s\"", "connect = \"300ms\"");
        let (status, error) = relay_error(&toml, false).await;
        assert_eq!((status, error["code"].as_str().unwrap()), (504, "upstream_timeout_connect"), "{error}");
        let (ok, report, _) = probe(&toml).await;
        assert!(!ok);
        let failed = step(&report, failing_step);
        assert_eq!(failed["status"], "failed", "{report:#}");
        assert_eq!(failed["code"], error["code"], "{report:#}");
    }
}

#[tokio::test]
async fn secrets_in_headers_set_are_redacted_and_scrubbed() {
    // Refuses everything, quoting the credentials it was sent, as some upstreams do.
    let upstream = MockUpstream::start(|r, _| {
        let sent = |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let message = format!(
            "Incorrect API key provided: {}; key {}; client secret {}",
            sent("authorization"),
            sent("authorization").trim_start_matches("Bearer "),
            sent("cf-access-client-secret")
        );
        Reply::json(401, json!({ "error": { "message": message, "code": "invalid_api_key" } }).to_string())
    })
    .await;
    let headers = r#"auth = "none"
headers.set = { "authorization" = "Bearer sk-IN-HEADERS-SET", "cf-access-client-secret" = "${HK2}", "x-team" = "blue" }"#;
    let toml = config(&format!("{}/v1", upstream.url()), headers);
    let env = [("HK2", "ENVSECRET-TWO")];

    let (ok, report, json_text) = probe_with_env(&toml, &env).await;
    assert!(!ok);
    assert_failed(&report, "models", "auth", "");
    let sent = &step(&report, "models")["data"]["sent_headers"];
    assert_eq!(sent["authorization"], "[redacted]", "{sent:#}");
    assert_eq!(sent["cf-access-client-secret"], "[redacted]", "{sent:#}");
    assert_eq!(sent["x-team"], "blue", "{sent:#}");
    let (_, text) = run_probe(&toml, &env, &[]).await;
    assert!(text.contains("Incorrect API key provided: [redacted]; key [redacted]"), "{text}");
    for output in [json_text, text] {
        assert!(!output.contains("sk-IN-HEADERS-SET"), "a headers.set credential leaked:\n{output}");
        assert!(!output.contains("ENVSECRET-TWO"), "a headers.set ${{VAR}} value leaked:\n{output}");
    }
    let received = upstream.received();
    assert_eq!(received[0].headers["authorization"], "Bearer sk-IN-HEADERS-SET");
    assert_eq!(received[0].headers["cf-access-client-secret"], "ENVSECRET-TWO");
}

/// An HTTPS upstream on 127.0.0.1 presenting `pki`'s server certificate.
async fn tls_upstream(pki: &TestPki) -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let acceptor = pki.acceptor(&[b"h2", b"http/1.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, peer)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Clients that refuse the certificate end here.
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| async move {
                        let path = request.uri().path().to_owned();
                        let body = http_body_util::BodyExt::collect(request.into_body())
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let received =
                            Received { method: String::new(), path, headers: http::HeaderMap::new(), body, peer };
                        let (content_type, body) = match healthy(&received) {
                            Reply::Full { content_type, body, .. } => (content_type, body),
                            Reply::Chunks { content_type, parts, .. } => (
                                content_type,
                                parts.into_iter().flat_map(|(_, b)| b.to_vec()).collect::<Vec<u8>>().into(),
                            ),
                            _ => unreachable!("healthy() answers fully"),
                        };
                        let mut response = http::Response::new(http_body_util::Full::new(body));
                        response.headers_mut().insert("content-type", content_type.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(response)
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn self_signed_tls_is_untrusted_until_its_ca_is_configured() {
    let pki = test_pki();
    let addr = tls_upstream(&pki).await;
    let base = format!("https://{addr}/v1");

    let toml = config(&base, "");
    let (status, error) = relay_error(&toml, false).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_tls"), "{error}");
    let (ok, report, _) = probe(&toml).await;
    assert!(!ok);
    assert_failed(&report, "tls", "tls_untrusted_certificate", "tls.ca_file");
    assert_eq!(step(&report, "tls")["code"], error["code"], "{report:#}");
    let detail = step(&report, "tls")["detail"].as_str().unwrap();
    assert!(detail.contains("CN=probe-test-upstream") && detail.contains("CN=Switchyard Probe Test CA"), "{detail}");

    let ca_file = std::env::temp_dir().join(format!("switchyard-probe-ca-{}-{}.pem", std::process::id(), addr.port()));
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let trusted = config(&base, &format!("tls = {{ ca_file = {:?} }}", ca_file.display().to_string()));
    let (ok, report, _) = probe(&trusted).await;
    assert!(ok, "{report:#}");
    let tls = step(&report, "tls");
    assert!(tls["detail"].as_str().unwrap().starts_with("TLSv1.3"), "{tls:#}");
    assert_eq!(tls["data"]["subject"], "CN=probe-test-upstream");
    assert!(tls["data"]["days_left"].as_i64().unwrap() > 300);
    let relay = Relay::start(&trusted).await;
    let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "messages": []})).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let _ = std::fs::remove_file(ca_file);
}

/// 403 with an HTML challenge page to anything that looks like an OpenAI SDK.
fn waf(received: &Received) -> Reply {
    let agent = received.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("");
    let fingerprinted =
        agent.starts_with("OpenAI/") || received.headers.keys().any(|h| h.as_str().starts_with("x-stainless-"));
    if fingerprinted {
        Reply::Full {
            status: 403,
            content_type: "text/html; charset=UTF-8",
            body: Bytes::from_static(b"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>Sorry, you have been blocked</body></html>"),
        }
    } else {
        healthy(received)
    }
}

#[tokio::test]
async fn a_waf_blocking_sdk_fingerprints() {
    let upstream = MockUpstream::start(|r, _| waf(r)).await;
    let base = format!("{}/v1", upstream.url());
    let sdk = [("user-agent", "OpenAI/JS 4.77.0"), ("x-stainless-lang", "js"), ("x-stainless-os", "Linux")];
    let request = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});

    // The default header policy already strips the fingerprint.
    let relay = Relay::start(&config(&base, "")).await;
    let (status, _, _) = relay.chat(&sdk, &request).await;
    assert_eq!(status, 200);
    let (ok, report, _) = probe(&config(&base, "")).await;
    assert!(ok, "{report:#}");

    // Forwarding the SDK's headers and agent gets the relay blocked.
    let leaky = config(&base, "keep_sdk_headers = true\nuser_agent = \"OpenAI/JS 4.0\"");
    let relay = Relay::start(&leaky).await;
    let (status, _, body) = relay.chat(&sdk, &request).await;
    let error = error_of(&body);
    assert_eq!((status.as_u16(), error["code"].as_str().unwrap()), (403, "upstream_blocked_403_html"), "{error}");
    assert!(error["message"].as_str().unwrap().contains("WAF"));

    let (ok, report, _) = probe(&leaky).await;
    assert!(!ok);
    assert_failed(&report, "models", "waf_block", "user_agent = \"curl/8.5.0\"");
    assert!(step(&report, "models")["fix"].as_str().unwrap().contains("keep_sdk_headers = false"));
    let sent = &step(&report, "models")["data"]["sent_headers"];
    assert_eq!(sent["authorization"], "[redacted]");
    assert_eq!(sent["user-agent"], "OpenAI/JS 4.0");
    let neutral = step(&report, "neutral_agent");
    assert_eq!(neutral["status"], "ok", "{neutral:#}");
    assert!(neutral["detail"].as_str().unwrap().contains("fingerprint"));
}

#[tokio::test]
async fn a_base_url_without_v1() {
    let upstream = MockUpstream::start(|r, _| {
        if r.path.starts_with("/v1/") {
            healthy(r)
        } else {
            Reply::Full { status: 404, content_type: "text/plain", body: Bytes::from_static(b"404 page not found") }
        }
    })
    .await;
    let toml = config(&upstream.url(), "");
    let (status, error) = relay_error(&toml, false).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (404, "upstream_non_json_error"), "{error}");
    let (ok, report, _) = probe(&toml).await;
    assert!(!ok);
    assert_failed(&report, "models", "base_url_missing_v1", &format!("base_url = \"{}/v1\"", upstream.url()));
}

#[tokio::test]
async fn a_stream_that_never_sends_an_event() {
    let upstream = MockUpstream::start(|r, _| {
        let streamed = serde_json::from_slice::<Value>(&r.body).map(|b| b["stream"] == json!(true)).unwrap_or(false);
        if streamed {
            // Headers, then silence.
            Reply::Chunks {
                status: 200,
                content_type: "text/event-stream",
                parts: vec![(Duration::from_secs(600), Bytes::new())],
            }
        } else {
            healthy(r)
        }
    })
    .await;
    let base = format!("{}/v1", upstream.url());
    let toml = config(&base, "");
    let (status, error) = relay_error(&toml, true).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (504, "upstream_timeout_first_byte"), "{error}");
    let (ok, report, _) = probe(&toml).await;
    assert!(!ok);
    assert_eq!(step(&report, "chat")["status"], "ok");
    assert_failed(&report, "stream", "stream_no_first_event", "stream = \"simulate\"");

    // The suggested fix works.
    let simulated = config(&base, "stream = \"simulate\"");
    let relay = Relay::start(&simulated).await;
    let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "stream": true, "messages": []})).await;
    assert_eq!(status, 200);
    assert_eq!(sse_data(&body).last().unwrap(), "[DONE]");
    let (ok, report, _) = probe(&simulated).await;
    assert!(ok, "{report:#}");
}

#[tokio::test]
async fn a_stream_that_ends_before_its_final_event() {
    let upstream = MockUpstream::start(|r, _| {
        let streamed = serde_json::from_slice::<Value>(&r.body).map(|b| b["stream"] == json!(true)).unwrap_or(false);
        if streamed {
            Reply::sse(&[
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"O\"},\"finish_reason\":null}]}\n\n",
            ])
        } else {
            healthy(r)
        }
    })
    .await;
    let toml = config(&format!("{}/v1", upstream.url()), "");
    let relay = Relay::start(&toml).await;
    let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "stream": true, "messages": []})).await;
    assert_eq!(status, 200);
    let in_band: Value = serde_json::from_str(sse_data(&body).last().unwrap()).unwrap();
    assert_eq!(in_band["error"]["code"], "upstream_stream_truncated", "{in_band}");

    let (ok, report, _) = probe(&toml).await;
    assert!(!ok);
    let stream = step(&report, "stream");
    assert_eq!(stream["status"], "failed", "{report:#}");
    assert_eq!(stream["class"], "invalid_response", "{report:#}");
    assert_eq!(stream["code"], in_band["error"]["code"], "{report:#}");
    assert_eq!(stream["http_status"], 200, "{report:#}");
}

#[tokio::test]
async fn a_wrong_key_a_missing_model_and_a_rejected_parameter() {
    let upstream = MockUpstream::start(|r, _| {
        if r.path.ends_with("/models") {
            return Reply::json(200, MODELS);
        }
        let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if r.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {API_KEY}")) {
            return Reply::json(401, r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key"}}"#);
        }
        if body["model"] != "real-model" {
            return Reply::json(404, r#"{"error":{"message":"The model `nope` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#);
        }
        if body.get("max_completion_tokens").is_some() {
            return Reply::json(400, r#"{"error":{"message":"Unrecognized request argument supplied: max_completion_tokens","type":"invalid_request_error","param":null}}"#);
        }
        healthy(r)
    })
    .await;
    let base = format!("{}/v1", upstream.url());

    let wrong_key = config(&base, "").replace(API_KEY, "sk-wrong-key-000000");
    let (status, error) = relay_error(&wrong_key, false).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (401, "invalid_api_key"), "{error}");
    let (ok, report, text) = probe(&wrong_key).await;
    assert!(!ok);
    assert_failed(&report, "chat", "auth", "api_key");
    assert!(!text.contains("sk-wrong-key-000000"));

    let missing_model = config(&base, "").replace("model = \"real-model\"", "model = \"nope\"");
    let (status, error) = relay_error(&missing_model, false).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (404, "model_not_found"), "{error}");
    let (_, report, _) = probe(&missing_model).await;
    assert_failed(&report, "chat", "model_not_found", "real-model, other-model");

    let toml = config(&base, "");
    let relay = Relay::start(&toml).await;
    let request = json!({"model": "gpt", "max_completion_tokens": 5, "messages": []});
    let (status, _, body) = relay.chat(&[], &request).await;
    assert_eq!(status, 400);
    assert!(error_of(&body)["message"].as_str().unwrap().contains("max_completion_tokens"));
    let (_, report, _) = probe(&toml).await;
    assert_failed(&report, "chat", "rejected_parameter", "compat.max_tokens_field = \"max_tokens\"");
    let fixed = config(&base, "compat = { max_tokens_field = \"max_tokens\" }");
    let (ok, report, _) = probe(&fixed).await;
    assert!(ok, "{report:#}");
}

/// A tiny CONNECT proxy: refuses with `refuse` when set, else tunnels. Records what it was asked.
struct TestProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    async fn start(refuse: Option<&'static str>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match client.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    log.lock().push(head.clone());
                    if let Some(status) = refuse {
                        let _ = client
                            .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                            .await;
                        return;
                    }
                    let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    // Only local destinations: every test server is on 127.0.0.1.
                    if !target.starts_with("127.0.0.1:") {
                        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                        return;
                    }
                    let Ok(mut upstream) = TcpStream::connect(&target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        TestProxy { addr, requests }
    }

    fn connects(&self) -> Vec<String> {
        self.requests.lock().clone()
    }
}

#[tokio::test]
async fn traffic_flows_through_a_tunnelling_proxy_with_credentials() {
    let upstream = MockUpstream::start(|r, _| healthy(r)).await;
    let proxy = TestProxy::start(None).await;
    let base = format!("{}/v1", upstream.url());
    let toml = config(&base, &format!("proxy = \"http://probe:proxy-secret-pw@{}\"", proxy.addr));

    let relay = Relay::start(&toml).await;
    let (status, headers, _) = relay.chat(&[], &json!({"model": "gpt", "messages": []})).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-upstream"], "primary");
    let seen = proxy.connects();
    assert!(seen[0].starts_with(&format!("CONNECT {} HTTP/1.1\r\n", upstream.addr)), "{seen:?}");
    // probe:proxy-secret-pw
    assert!(seen[0].contains("Proxy-Authorization: Basic cHJvYmU6cHJveHktc2VjcmV0LXB3\r\n"), "{seen:?}");

    let before = proxy.connects().len();
    let (ok, report, text) = probe(&toml).await;
    assert!(ok, "{report:#}");
    assert_eq!(report["upstreams"][0]["proxy"], format!("http://{}", proxy.addr));
    assert_eq!(step(&report, "proxy")["status"], "ok");
    assert!(proxy.connects().len() > before, "the probe went through the proxy");
    assert!(!text.contains("proxy-secret-pw"), "proxy credentials leaked:\n{text}");
}

#[tokio::test]
async fn the_proxy_environment_is_honoured_and_no_proxy_bypasses_it() {
    let upstream = MockUpstream::start(|r, _| healthy(r)).await;
    let proxy = TestProxy::start(None).await;
    let toml = config(&format!("{}/v1", upstream.url()), "");
    let proxy_url = format!("http://{}", proxy.addr);

    let (ok, report, _) = probe_with_env(&toml, &[("HTTP_PROXY", &proxy_url)]).await;
    assert!(ok, "{report:#}");
    assert_eq!(report["upstreams"][0]["proxy"], proxy_url);
    let through = proxy.connects().len();
    assert!(through >= 3, "models, chat and stream went through the proxy: {:?}", proxy.connects());

    for no_proxy in [("NO_PROXY", "127.0.0.1"), ("NO_PROXY", "*"), ("no_proxy", "*")] {
        let (ok, report, _) = probe_with_env(&toml, &[("http_proxy", &proxy_url), no_proxy]).await;
        assert!(ok, "{no_proxy:?}: {report:#}");
        assert!(report["upstreams"][0].get("proxy").is_none(), "{no_proxy:?}: {report:#}");
        assert_eq!(proxy.connects().len(), through, "{no_proxy:?} bypasses the proxy");
    }
}

#[tokio::test]
async fn a_refusing_or_absent_proxy_is_a_proxy_error() {
    let upstream = MockUpstream::start(|r, _| healthy(r)).await;
    let base = format!("{}/v1", upstream.url());

    for refusal in ["403 Forbidden", "407 Proxy Authentication Required"] {
        let proxy = TestProxy::start(Some(refusal)).await;
        let toml = config(&base, &format!("proxy = \"http://{}\"", proxy.addr));
        let (status, error) = relay_error(&toml, false).await;
        assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_proxy"), "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(&proxy.addr.to_string()) && message.contains(refusal), "{message}");
        let (ok, report, _) = probe(&toml).await;
        assert!(!ok);
        let fix = if refusal.starts_with("407") { "user:password@" } else { "NO_PROXY" };
        assert_failed(&report, "proxy", "proxy", fix);
        assert_eq!(step(&report, "proxy")["http_status"], refusal[..3].parse::<u16>().unwrap());
        assert_eq!(step(&report, "proxy")["code"], "upstream_proxy");
    }

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let toml = config(&base, &format!("proxy = \"http://{closed}\""));
    let (status, error) = relay_error(&toml, false).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_proxy"), "{error}");
    assert!(error["message"].as_str().unwrap().contains(&closed.to_string()));
    let (ok, report, _) = probe(&toml).await;
    assert!(!ok);
    assert_failed(&report, "tcp", "proxy", "proxy address");
    assert_eq!(step(&report, "tcp")["code"], error["code"], "{report:#}");
}

#[tokio::test]
async fn unknown_and_disabled_upstreams_are_reported() {
    let toml = r#"
[upstreams.broken]
dialect = "openai-completions"
base_url = "http://127.0.0.1:1/v1"
api_key = "${SWITCHYARD_PROBE_TEST_UNSET_VAR}"

[upstreams.demo]
dialect = "mock"

[[models]]
name = "mock"
targets = [{ upstream = "demo", model = "mock-1" }]
"#;
    let (ok, report, _) = probe(toml).await;
    assert!(ok, "a disabled upstream is reported, not failed, when listing all: {report:#}");
    let broken = report["upstreams"].as_array().unwrap().iter().find(|u| u["name"] == "broken").unwrap();
    assert_eq!(broken["state"], "disabled");
    assert!(broken["reason"].as_str().unwrap().contains("SWITCHYARD_PROBE_TEST_UNSET_VAR"), "{broken:#}");

    let path: PathBuf = std::env::temp_dir().join(format!("switchyard-probe-named-{}.toml", std::process::id()));
    std::fs::write(&path, toml).unwrap();
    let output = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args(["probe", "--config"])
                .arg(&path)
                .args(["demo", "demp"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(text.contains("no upstream named \"demp\"") && text.contains("did you mean \"demo\"?"), "{text}");
    assert!(text.contains("ok       chat"), "{text}");
}
