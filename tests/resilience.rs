//! Resilience against a fault-injecting upstream: retries, timeouts, failover, health, and
//! streams that fail before or after they started.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use support::{error_of, sse_data, MockUpstream, Relay, Reply};

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;

fn chunk(text: &str) -> String {
    format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n")
}

fn finish() -> String {
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".to_owned()
}

fn good_stream() -> Reply {
    Reply::sse(&[&chunk("hello "), &chunk("world"), &finish()])
}

fn upstream_toml(name: &str, url: &str, extra: &str) -> String {
    format!("[upstreams.{name}]\ndialect = \"openai-completions\"\nbase_url = \"{url}/v1\"\n{extra}\n")
}

fn model_toml(name: &str, targets: &[&str], extra: &str) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("{{ upstream = \"{t}\" }}")).collect();
    format!("[[models]]\nname = \"{name}\"\ntargets = [{}]\n{extra}\n", targets.join(", "))
}

fn request(stream: bool) -> serde_json::Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn closed_port_url() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    format!("http://{addr}")
}

#[tokio::test]
async fn retryable_statuses_are_retried_until_success() {
    let upstream = MockUpstream::start(|_, i| {
        if i < 2 {
            Reply::json(503, r#"{"error":{"message":"busy"}}"#)
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let config = upstream_toml(
        "a",
        &upstream.url(),
        "retry = { attempts = 3, backoff_base = \"10ms\", backoff_max = \"50ms\" }",
    ) + &model_toml("m", &["a"], "");
    let relay = Relay::start(&config).await;
    let (status, headers, _) = relay.chat(&[], &request(false)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-upstream"], "a");
    assert_eq!(upstream.received().len(), 3);
    assert_eq!(relay.running.metrics.upstream_retries.with_label_values(&["a"]).get(), 2);
    let _ = relay.chat(&[], &request(false)).await;
    let attempts = &relay.running.metrics.upstream_attempts;
    assert_eq!(attempts.with_label_values(&["a", "upstream_http_error"]).get(), 2);
    assert_eq!(attempts.with_label_values(&["a", "success"]).get(), 2, "every success counted, not only the first");
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    for status in [400u16, 401, 403, 404, 422] {
        let upstream = MockUpstream::always(Reply::json(status, r#"{"error":{"message":"no"}}"#)).await;
        let config = upstream_toml("a", &upstream.url(), "retry = { attempts = 4, backoff_base = \"1ms\" }")
            + &model_toml("m", &["a"], "");
        let relay = Relay::start(&config).await;
        let (got, _, _) = relay.chat(&[], &request(false)).await;
        assert_eq!(got.as_u16(), status);
        assert_eq!(upstream.received().len(), 1, "{status} must not be retried");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let upstream = MockUpstream::start(|_, i| {
        if i == 0 {
            Reply::Full {
                status: 429,
                content_type: "application/json",
                body: Bytes::from_static(br#"{"error":{"message":"slow down"}}"#),
            }
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    // The mock cannot set headers per reply, so the wait comes from retry-after-ms on a proxy below.
    let proxy = RetryAfterProxy::start(upstream.url(), "700").await;
    let config = upstream_toml("a", &proxy, "retry = { attempts = 2, backoff_base = \"1ms\", backoff_max = \"2ms\" }")
        + &model_toml("m", &["a"], "");
    let relay = Relay::start(&config).await;
    let started = Instant::now();
    let (status, _, _) = relay.chat(&[], &request(false)).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(650), "waited {:?}", started.elapsed());
    assert_eq!(upstream.received().len(), 2);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_time_left_fails_over_at_once() {
    let limited = MockUpstream::always(Reply::json(429, r#"{"error":{"message":"slow down"}}"#)).await;
    let proxy = RetryAfterProxy::start(limited.url(), "5000").await;
    let good = MockUpstream::always(Reply::json(200, OK)).await;
    let limits = "timeouts = { total = \"2s\" }";
    let config =
        upstream_toml("limited", &proxy, &format!("{limits}\nretry = {{ attempts = 2, retry_after_max = \"10s\" }}"))
            + &upstream_toml("good", &good.url(), limits)
            + &model_toml("m", &["limited", "good"], "");
    let relay = Relay::start(&config).await;
    let started = Instant::now();
    let (status, headers, _) = relay.chat(&[], &request(false)).await;
    assert_eq!((status.as_u16(), headers["x-switchyard-upstream"].to_str().unwrap()), (200, "good"));
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(limited.received().len(), 1, "no retry that could only start after the total limit");
}

#[tokio::test]
async fn a_target_is_not_tried_once_the_total_limit_has_passed() {
    let hang = MockUpstream::always(Reply::Hang).await;
    let good = MockUpstream::always(Reply::json(200, OK)).await;
    let limits = "timeouts = { first_byte = \"60s\", total = \"500ms\" }\nretry = { attempts = 1 }";
    let config = upstream_toml("slow", &hang.url(), limits)
        + &upstream_toml("good", &good.url(), limits)
        + &model_toml("m", &["slow", "good"], "");
    let relay = Relay::start(&config).await;
    let (status, headers, body) = relay.chat(&[], &request(false)).await;
    let error = error_of(&body);
    assert_eq!((status.as_u16(), error["code"].as_str().unwrap()), (504, "upstream_timeout_total"));
    assert_eq!(headers["x-switchyard-upstream"], "slow", "the error names the target that used the time up");
    assert_eq!(good.received().len(), 0);
    let attempts = &relay.running.metrics.upstream_attempts;
    assert_eq!(attempts.with_label_values(&["good", "upstream_timeout_total"]).get(), 0, "no phantom attempt");
}

#[tokio::test]
async fn a_backoff_longer_than_the_time_left_returns_the_upstreams_own_error() {
    let failing = MockUpstream::always(Reply::json(500, r#"{"error":{"message":"boom"}}"#)).await;
    let config = upstream_toml(
        "a",
        &failing.url(),
        "timeouts = { total = \"1500ms\" }\nretry = { attempts = 10, backoff_base = \"1s\", backoff_max = \"1s\" }",
    ) + &model_toml("m", &["a"], "");
    let relay = Relay::start(&config).await;
    let started = Instant::now();
    let (status, _, body) = relay.chat(&[], &request(false)).await;
    assert_eq!((status.as_u16(), error_of(&body)["message"].as_str().unwrap()), (500, "boom"));
    assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
}

/// Forwards to an upstream, adding `retry-after-ms` to 429 answers.
struct RetryAfterProxy;

impl RetryAfterProxy {
    async fn start(target: String, retry_after_ms: &'static str) -> String {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let target = target.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let target = target.clone();
                        async move {
                            let client =
                                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                                    .build_http::<http_body_util::Full<Bytes>>();
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let uri = format!("{target}{}", parts.uri.path());
                            let forwarded = http::Request::post(uri)
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(body))
                                .unwrap();
                            let response = client.request(forwarded).await.unwrap();
                            let (mut parts, body) = response.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            if parts.status == 429 {
                                parts.headers.insert("retry-after-ms", retry_after_ms.parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::from_parts(
                                parts,
                                http_body_util::Full::new(body),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }
}

#[tokio::test]
async fn failover_moves_to_the_next_target_and_says_who_answered() {
    let good = MockUpstream::always(Reply::json(200, OK)).await;
    let config = upstream_toml("down", &closed_port_url(), "retry = { attempts = 2, backoff_base = \"1ms\" }")
        + &upstream_toml("up", &good.url(), "")
        + &model_toml("m", &["down", "up"], "");
    let relay = Relay::start(&config).await;
    let (status, headers, _) = relay.chat(&[], &request(false)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-upstream"], "up");
    assert_eq!(relay.running.metrics.failovers.with_label_values(&["m", "down"]).get(), 1);
}

#[tokio::test]
async fn the_final_error_lists_every_attempt() {
    let busy = MockUpstream::always(Reply::json(503, r#"{"error":{"message":"busy"}}"#)).await;
    let config = upstream_toml("down", &closed_port_url(), "retry = { attempts = 1 }")
        + &upstream_toml("busy", &busy.url(), "retry = { attempts = 2, backoff_base = \"1ms\" }")
        + &model_toml("m", &["down", "busy"], "");
    let relay = Relay::start(&config).await;
    let (status, _, body) = relay.chat(&[], &request(false)).await;
    assert_eq!(status, 503);
    let error = error_of(&body);
    let attempts = error["attempts"].as_array().unwrap_or_else(|| panic!("attempts listed: {error}"));
    let summary: Vec<(String, String)> = attempts
        .iter()
        .map(|a| (a["upstream"].as_str().unwrap().to_owned(), a["code"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("down".into(), "upstream_connect_refused".into()),
            ("busy".into(), "upstream_http_error".into()),
            ("busy".into(), "upstream_http_error".into()),
        ]
    );
    assert!(attempts.iter().all(|a| a["duration_ms"].is_u64()));
}

#[tokio::test]
async fn failover_on_is_configurable() {
    let unauthorized = MockUpstream::always(Reply::json(401, r#"{"error":{"message":"bad key"}}"#)).await;
    let good = MockUpstream::always(Reply::json(200, OK)).await;
    let upstreams = upstream_toml("dead-key", &unauthorized.url(), "") + &upstream_toml("good", &good.url(), "");
    let default = Relay::start(&(upstreams.clone() + &model_toml("m", &["dead-key", "good"], ""))).await;
    assert_eq!(default.chat(&[], &request(false)).await.0, 401, "401 does not fail over by default");
    let opted =
        Relay::start(&(upstreams + &model_toml("m", &["dead-key", "good"], "failover_on = [\"401\", \"5xx\"]"))).await;
    assert_eq!(opted.chat(&[], &request(false)).await.0, 200);
}

#[tokio::test]
async fn a_refused_request_is_not_sent_to_the_next_target() {
    for status in [409u16, 413, 415] {
        let refusing = MockUpstream::always(Reply::json(status, r#"{"error":{"message":"refused"}}"#)).await;
        let good = MockUpstream::always(Reply::json(200, OK)).await;
        let config = upstream_toml("first", &refusing.url(), "retry = { attempts = 3, backoff_base = \"1ms\" }")
            + &upstream_toml("second", &good.url(), "")
            + &model_toml("m", &["first", "second"], "");
        let relay = Relay::start(&config).await;
        let (got, headers, _) = relay.chat(&[], &request(false)).await;
        assert_eq!((got.as_u16(), headers["x-switchyard-upstream"].to_str().unwrap()), (status, "first"));
        assert_eq!((refusing.received().len(), good.received().len()), (1, 0), "{status}: sent once, to one target");
    }
}

#[tokio::test]
async fn a_hang_before_headers_times_out_then_fails_over() {
    let hang = MockUpstream::always(Reply::Hang).await;
    let good = MockUpstream::always(Reply::json(200, OK)).await;
    let config = upstream_toml("slow", &hang.url(), "timeouts = { first_byte = \"300ms\" }\nretry = { attempts = 1 }")
        + &upstream_toml("good", &good.url(), "")
        + &model_toml("m", &["slow", "good"], "");
    let relay = Relay::start(&config).await;
    let started = Instant::now();
    let (status, headers, _) = relay.chat(&[], &request(false)).await;
    assert_eq!((status.as_u16(), headers["x-switchyard-upstream"].to_str().unwrap()), (200, "good"));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(relay.running.metrics.upstream_timeouts.with_label_values(&["slow", "first_byte"]).get(), 1);
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_event_fails_over_invisibly() {
    let broken = MockUpstream::always(Reply::ChunksThenReset { parts: vec![] }).await;
    let good = MockUpstream::always(good_stream()).await;
    let config = upstream_toml("broken", &broken.url(), "retry = { attempts = 1 }")
        + &upstream_toml("good", &good.url(), "")
        + &model_toml("m", &["broken", "good"], "");
    let relay = Relay::start(&config).await;
    let (status, headers, body) = relay.chat(&[], &request(true)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-upstream"], "good");
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(!data.iter().any(|d| d.contains("\"error\"")), "the client never sees the first target's failure");
}

#[tokio::test]
async fn a_stream_request_answered_without_events_is_an_invalid_response_and_fails_over() {
    let page = Reply::Full { status: 200, content_type: "text/html", body: Bytes::from_static(b"<html>hi</html>") };
    // An HTML page, an empty 204, and a stream that is only `[DONE]`: none is an answer.
    for not_a_stream in [page, Reply::json(204, ""), Reply::sse(&["data: [DONE]\n\n"])] {
        let broken = MockUpstream::always(not_a_stream).await;
        let good = MockUpstream::always(good_stream()).await;
        let broken_toml = upstream_toml("broken", &broken.url(), "retry = { attempts = 1 }");
        let alone = Relay::start(&(broken_toml.clone() + &model_toml("m", &["broken"], ""))).await;
        let (status, _, body) = alone.chat(&[], &request(true)).await;
        assert_eq!((status.as_u16(), error_of(&body)["code"].as_str().unwrap()), (502, "upstream_invalid_response"));

        let config = broken_toml + &upstream_toml("good", &good.url(), "") + &model_toml("m", &["broken", "good"], "");
        let relay = Relay::start(&config).await;
        let (status, headers, body) = relay.chat(&[], &request(true)).await;
        assert_eq!((status.as_u16(), headers["x-switchyard-upstream"].to_str().unwrap()), (200, "good"));
        assert_eq!(sse_data(&body).last().unwrap(), "[DONE]");
    }
}

#[tokio::test]
async fn a_stream_only_upstream_answered_without_events_for_a_single_completion_fails_over() {
    // openai-codex-responses always streams; for a client that asked for one completion the
    // relay gathers the stream, and an answer that is no stream must fail over there too.
    let page = Reply::Full { status: 200, content_type: "text/html", body: Bytes::from_static(b"<html>hi</html>") };
    for not_a_stream in [page, Reply::json(204, "")] {
        let broken = MockUpstream::always(not_a_stream).await;
        let good = MockUpstream::always(Reply::json(200, OK)).await;
        let broken_toml = format!(
            "[upstreams.broken]\ndialect = \"openai-codex-responses\"\nbase_url = \"{}\"\napi_key = \"k\"\nretry = {{ attempts = 1 }}\n",
            broken.url()
        );
        let alone = Relay::start(&(broken_toml.clone() + &model_toml("m", &["broken"], ""))).await;
        let (status, _, body) = alone.chat(&[], &request(false)).await;
        let error = error_of(&body);
        assert_eq!((status.as_u16(), error["code"].as_str().unwrap()), (502, "upstream_invalid_response"), "{error}");

        let config = broken_toml + &upstream_toml("good", &good.url(), "") + &model_toml("m", &["broken", "good"], "");
        let relay = Relay::start(&config).await;
        let (status, headers, _) = relay.chat(&[], &request(false)).await;
        assert_eq!((status.as_u16(), headers["x-switchyard-upstream"].to_str().unwrap()), (200, "good"));
    }
}

#[tokio::test]
async fn a_stream_of_two_choices_cut_after_the_first_finished_is_truncated_not_done() {
    let choice = |index: u32, delta: &str, finish: &str| {
        format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":{index},\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
    };
    let parts = [
        choice(0, r#"{"content":"a"}"#, "null"),
        choice(1, r#"{"content":"b"}"#, "null"),
        choice(0, "{}", r#""stop""#),
        choice(1, r#"{"content":"c"}"#, "null"),
    ];
    let parts = parts.into_iter().map(|event| (Duration::from_millis(20), Bytes::from(event))).collect();
    let upstream = MockUpstream::always(Reply::Chunks { status: 200, content_type: "text/event-stream", parts }).await;
    let relay = Relay::start(&(upstream_toml("a", &upstream.url(), "") + &model_toml("m", &["a"], ""))).await;
    let mut body = request(true);
    body["n"] = json!(2);
    let (status, _, body) = relay.chat(&[], &body).await;
    assert_eq!(status, 200);
    let data = sse_data(&body);
    assert_eq!(data.len(), 5, "{data:?}");
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_truncated");
    assert!(!data.iter().any(|d| d == "[DONE]"));
}

#[tokio::test]
async fn a_malformed_event_mid_stream_ends_it_with_an_invalid_response_event() {
    let upstream = MockUpstream::always(Reply::sse(&[&chunk("hello "), "data: {not json\n\n", &finish()])).await;
    let relay = Relay::start(&(upstream_toml("a", &upstream.url(), "") + &model_toml("m", &["a"], ""))).await;
    let (status, _, body) = relay.chat(&[], &request(true)).await;
    assert_eq!(status, 200);
    let data = sse_data(&body);
    assert_eq!(data.len(), 2, "{data:?}");
    assert!(data[0].contains("hello"));
    let last: serde_json::Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(last["error"]["code"], "upstream_invalid_response");
}

#[tokio::test]
async fn a_stream_that_hangs_mid_way_ends_with_an_idle_timeout_event() {
    let parts = vec![(Duration::ZERO, Bytes::from(chunk("partial"))), (Duration::from_secs(3600), Bytes::new())];
    let upstream = MockUpstream::always(Reply::Chunks { status: 200, content_type: "text/event-stream", parts }).await;
    let config = upstream_toml("a", &upstream.url(), "timeouts = { idle = \"400ms\" }") + &model_toml("m", &["a"], "");
    let relay = Relay::start(&config).await;
    let started = Instant::now();
    let (status, _, body) = relay.chat(&[], &request(true)).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let data = sse_data(&body);
    assert!(data[0].contains("partial"));
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout_idle");
    assert!(!data.iter().any(|d| d == "[DONE]"));
    assert_eq!(relay.running.metrics.upstream_timeouts.with_label_values(&["a", "idle"]).get(), 1);
}

#[tokio::test]
async fn a_non_streamed_body_that_stalls_ends_with_an_idle_timeout_and_fails_over() {
    let parts = vec![(Duration::ZERO, Bytes::from_static(b"{\"id\":")), (Duration::from_secs(3600), Bytes::new())];
    let stalled = MockUpstream::always(Reply::Chunks { status: 200, content_type: "application/json", parts }).await;
    let good = MockUpstream::always(Reply::json(200, OK)).await;
    let stalling = upstream_toml("a", &stalled.url(), "timeouts = { idle = \"300ms\", total = \"60s\" }");
    let alone = Relay::start(&(stalling.clone() + &model_toml("m", &["a"], ""))).await;
    let started = Instant::now();
    let (status, headers, body) = alone.chat(&[], &request(false)).await;
    assert_eq!((status.as_u16(), error_of(&body)["code"].as_str().unwrap()), (504, "upstream_timeout_idle"));
    assert_eq!(headers["x-switchyard-upstream"], "a");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(alone.running.metrics.upstream_timeouts.with_label_values(&["a", "idle"]).get(), 1);

    let with_backup =
        Relay::start(&(stalling + &upstream_toml("good", &good.url(), "") + &model_toml("m", &["a", "good"], "")))
            .await;
    let (status, headers, _) = with_backup.chat(&[], &request(false)).await;
    assert_eq!((status.as_u16(), headers["x-switchyard-upstream"].to_str().unwrap()), (200, "good"));
}

#[tokio::test]
async fn a_slow_drip_within_the_idle_limit_completes_with_keepalives_in_long_gaps() {
    let parts = vec![
        (Duration::ZERO, Bytes::from(chunk("a"))),
        (Duration::from_millis(700), Bytes::from(chunk("b"))),
        (Duration::from_millis(200), Bytes::from(finish())),
    ];
    let upstream = MockUpstream::always(Reply::Chunks { status: 200, content_type: "text/event-stream", parts }).await;
    let config = "[server]\nkeepalive_interval = \"200ms\"\n".to_owned()
        + &upstream_toml("a", &upstream.url(), "timeouts = { idle = \"2s\" }")
        + &model_toml("m", &["a"], "");
    let relay = Relay::start(&config).await;
    let (status, _, body) = relay.chat(&[], &request(true)).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains(": keep-alive\n\n"), "a keep-alive comment fills the 700 ms gap");
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_stream_past_its_total_limit_ends_with_a_total_timeout_event() {
    let parts = (0..50).map(|i| (Duration::from_millis(100), Bytes::from(chunk(&format!("t{i}"))))).collect();
    let upstream = MockUpstream::always(Reply::Chunks { status: 200, content_type: "text/event-stream", parts }).await;
    let config = upstream_toml("a", &upstream.url(), "timeouts = { total = \"1s\", idle = \"5s\" }")
        + &model_toml("m", &["a"], "");
    let relay = Relay::start(&config).await;
    let (_, _, body) = relay.chat(&[], &request(true)).await;
    let data = sse_data(&body);
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout_total");
}

#[tokio::test]
async fn per_target_timeouts_override_the_upstreams() {
    let hang = MockUpstream::always(Reply::Hang).await;
    let config = upstream_toml("a", &hang.url(), "timeouts = { first_byte = \"60s\" }\nretry = { attempts = 1 }")
        + "[[models]]\nname = \"m\"\ntargets = [{ upstream = \"a\", timeouts = { first_byte = \"200ms\" } }]\n";
    let relay = Relay::start(&config).await;
    let started = Instant::now();
    let (status, _, body) = relay.chat(&[], &request(false)).await;
    assert_eq!((status.as_u16(), error_of(&body)["code"].as_str().unwrap()), (504, "upstream_timeout_first_byte"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn repeated_failures_eject_a_target_and_traffic_skips_it() {
    let failing = MockUpstream::always(Reply::json(500, r#"{"error":{"message":"boom"}}"#)).await;
    let good = MockUpstream::always(Reply::json(200, OK)).await;
    let config = upstream_toml("flaky", &failing.url(), "retry = { attempts = 1 }")
        + &upstream_toml("good", &good.url(), "")
        + &model_toml("m", &["flaky", "good"], "");
    let relay = Relay::start(&config).await;
    for _ in 0..5 {
        assert_eq!(relay.chat(&[], &request(false)).await.0, 200);
    }
    assert_eq!(failing.received().len(), 5);
    for _ in 0..10 {
        assert_eq!(relay.chat(&[], &request(false)).await.0, 200);
    }
    assert_eq!(failing.received().len(), 5, "an ejected target gets no traffic during its cooldown");
    assert_eq!(relay.running.metrics.upstream_ejections.with_label_values(&["flaky"]).get(), 1);
    assert_eq!(relay.running.metrics.upstream_healthy.with_label_values(&["flaky"]).get(), 0);
    let (_, _, ready) = relay.send("GET", "/readyz", &[], "").await;
    let ready: serde_json::Value = serde_json::from_slice(&ready).unwrap();
    assert_eq!(ready["upstreams"]["flaky"]["state"], "ejected");
}

#[tokio::test]
async fn when_every_target_is_ejected_one_is_still_tried() {
    let failing = MockUpstream::always(Reply::json(500, r#"{"error":{"message":"boom"}}"#)).await;
    let config = upstream_toml("only", &failing.url(), "retry = { attempts = 1 }") + &model_toml("m", &["only"], "");
    let relay = Relay::start(&config).await;
    for _ in 0..8 {
        assert_eq!(relay.chat(&[], &request(false)).await.0, 500);
    }
    assert_eq!(failing.received().len(), 8, "an all-ejected model still tries rather than failing untried");
}

#[tokio::test]
async fn the_retry_budget_caps_extra_load_during_an_outage() {
    let down = MockUpstream::always(Reply::json(503, r#"{"error":{"message":"down"}}"#)).await;
    let config = upstream_toml(
        "a",
        &down.url(),
        "retry = { attempts = 3, backoff_base = \"1ms\", backoff_max = \"2ms\", budget_ratio = 0.1 }",
    ) + &model_toml("m", &["a"], "");
    let relay = Relay::start(&config).await;
    for _ in 0..100 {
        relay.chat(&[], &request(false)).await;
    }
    let total = down.received().len();
    // Without a budget: 300 upstream requests. With 10% plus one per second of reserve: far fewer.
    assert!((100..=140).contains(&total), "upstream saw {total} requests for 100 client requests");
}

#[tokio::test]
async fn stream_simulate_sends_one_request_and_streams_the_answer() {
    let upstream = MockUpstream::always(Reply::json(200, OK)).await;
    let config = upstream_toml("a", &upstream.url(), "stream = \"simulate\"") + &model_toml("m", &["a"], "");
    let relay = Relay::start(&config).await;
    let (status, headers, body) = relay.chat(&[], &request(true)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache", "a simulated stream is sent as a native one is");
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(data.iter().any(|d| d.contains("\"content\":\"ok\"")));
    let sent = upstream.received()[0].json();
    assert_eq!(sent["stream"], false);
}

#[tokio::test]
async fn weighted_targets_share_traffic_by_weight() {
    let (heavy, light) =
        (MockUpstream::always(Reply::json(200, OK)).await, MockUpstream::always(Reply::json(200, OK)).await);
    let config = upstream_toml("heavy", &heavy.url(), "")
        + &upstream_toml("light", &light.url(), "")
        + "[[models]]\nname = \"m\"\nstrategy = \"weighted\"\ntargets = [{ upstream = \"heavy\", weight = 3 }, { upstream = \"light\", weight = 1 }]\n";
    let relay = Relay::start(&config).await;
    for _ in 0..200 {
        relay.chat(&[], &request(false)).await;
    }
    let heavy_share = heavy.received().len();
    assert_eq!(heavy_share + light.received().len(), 200);
    assert!((115..=185).contains(&heavy_share), "heavy got {heavy_share} of 200 at weight 3:1");
}

#[tokio::test]
async fn least_latency_prefers_the_faster_target() {
    let slow = MockUpstream::always(Reply::Chunks {
        status: 200,
        content_type: "application/json",
        parts: vec![(Duration::from_millis(150), Bytes::from(OK))],
    })
    .await;
    let fast = MockUpstream::always(Reply::json(200, OK)).await;
    let config = upstream_toml("slow", &slow.url(), "")
        + &upstream_toml("fast", &fast.url(), "")
        + &model_toml("m", &["slow", "fast"], "strategy = \"least-latency\"");
    let relay = Relay::start(&config).await;
    for _ in 0..40 {
        relay.chat(&[], &request(false)).await;
    }
    assert!(fast.received().len() >= 30, "fast got {} of 40", fast.received().len());
}

/// A few hundred concurrent streams through a target that fails half of them before the first
/// event, with a healthy second target: every stream completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_streams_survive_a_half_broken_target() {
    const STREAMS: usize = 300;
    let flaky =
        MockUpstream::start(|_, i| if i % 2 == 0 { Reply::ChunksThenReset { parts: vec![] } } else { good_stream() })
            .await;
    let good = MockUpstream::always(good_stream()).await;
    let config = upstream_toml("flaky", &flaky.url(), "retry = { attempts = 1 }")
        + &upstream_toml("good", &good.url(), "")
        + &model_toml("m", &["flaky", "good"], "");
    let relay = Arc::new(Relay::start(&config).await);
    let mut tasks = Vec::new();
    for _ in 0..STREAMS {
        let relay = relay.clone();
        tasks.push(tokio::spawn(async move {
            let (status, _, body) = relay.chat(&[], &request(true)).await;
            let data = sse_data(&body);
            status == 200
                && data.last().map(String::as_str) == Some("[DONE]")
                && !data.iter().any(|d| d.contains("\"error\""))
        }));
    }
    let mut completed = 0;
    for task in tasks {
        if task.await.unwrap() {
            completed += 1;
        }
    }
    let lost = STREAMS - completed;
    println!(
        "streams: {STREAMS}, completed: {completed}, lost: {lost}, failovers: {}",
        relay.running.metrics.failovers.with_label_values(&["m", "flaky"]).get()
    );
    assert_eq!(lost, 0, "requests lost");
    assert!(relay.running.metrics.failovers.with_label_values(&["m", "flaky"]).get() > 0);
}

#[tokio::test]
async fn what_is_in_flight_when_the_drain_ends_is_answered_not_cut() {
    in_flight_at_the_drain_cutoff_is_answered(false).await;
}

/// hyper serves each HTTP/2 request in a task of its own, which the connection's wake-up at the
/// cutoff does not reach.
#[tokio::test]
async fn what_is_in_flight_on_h2c_when_the_drain_ends_is_answered_not_reset() {
    in_flight_at_the_drain_cutoff_is_answered(true).await;
}

async fn in_flight_at_the_drain_cutoff_is_answered(http2: bool) {
    use http_body_util::BodyExt;
    let opened = vec![(Duration::ZERO, Bytes::from(chunk("partial"))), (Duration::from_secs(3600), Bytes::new())];
    let endless =
        MockUpstream::always(Reply::Chunks { status: 200, content_type: "text/event-stream", parts: opened }).await;
    let silent = MockUpstream::always(Reply::Hang).await;
    let config = "[server]\nshutdown_grace = \"1s\"\n".to_owned()
        + &upstream_toml("endless", &endless.url(), "")
        + &upstream_toml("silent", &silent.url(), "")
        + &model_toml("stream", &["endless"], "")
        + &model_toml("wait", &["silent"], "");
    let config = switchyard::config::Config::from_source(&config, None, &|_| None).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (running, server) = switchyard::app::start(config, "127.0.0.1:0".parse().unwrap(), async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(http2)
        .build_http::<http_body_util::Full<Bytes>>();
    let send = |model: &str, stream: bool| {
        let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let request = http::Request::post(format!("http://{}/v1/chat/completions", running.addr))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(body.to_string())))
            .unwrap();
        client.request(request)
    };
    let streamed = send("stream", true).await.expect("the stream starts");
    let expected_version = if http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
    assert_eq!(streamed.version(), expected_version);
    let mut streamed = streamed.into_body();
    let first = streamed.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("partial"));
    let waiting = tokio::spawn(send("wait", false));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopping = Instant::now();
    stop.send(()).unwrap();
    // Bounded: a request the cutoff does not reach would wait on its upstream for an hour.
    let within_grace = Duration::from_secs(3);
    let rest = tokio::time::timeout(within_grace, streamed.collect())
        .await
        .expect("the stream ends at the cutoff")
        .expect("the stream ends cleanly, not cut")
        .to_bytes();
    let data = sse_data(&rest);
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "relay_shutting_down", "{data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"));

    let answered = tokio::time::timeout(within_grace, waiting)
        .await
        .expect("the waiting request is answered at the cutoff")
        .unwrap()
        .expect("answered, not a dropped connection");
    assert_eq!(answered.status(), 503);
    let body = answered.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(error_of(&body)["code"], "relay_shutting_down");

    tokio::time::timeout(Duration::from_secs(3), server).await.expect("the server stops").unwrap();
    assert!(stopping.elapsed() < Duration::from_millis(1500), "within the grace period: {:?}", stopping.elapsed());
}
