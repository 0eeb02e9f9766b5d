//! The core relay against an in-process mock upstream that records what it received.

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use support::{error_of, read_json_request, sse_data, MockUpstream, Relay, Reply};

fn passthrough_config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[upstreams.primary]
dialect = "openai-completions"
base_url = "{upstream}/v1"
api_key = "upstream-secret"
user_agent = "curl/8.5.0"
{extra}

[[models]]
name = "gpt"
targets = [{{ upstream = "primary", model = "gpt-4o-mini" }}]

[[models]]
name = "openai/*"
targets = [{{ upstream = "primary" }}]
"#
    )
}

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;

#[tokio::test]
async fn only_the_model_changes_and_client_credentials_never_leave() {
    let upstream = MockUpstream::always(Reply::json(200, COMPLETION)).await;
    let relay = Relay::start(&passthrough_config(&upstream.url(), "")).await;
    let body =
        r#"{"model":"gpt","messages":[{"role":"user","content":"hi"}],"x_vendor":{"b":2,"a":1},"temperature":0.50}"#;
    let (status, headers, answer) = relay
        .send(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", "Bearer client-secret"),
                ("user-agent", "OpenAI/JS 4.77.0"),
                ("x-stainless-os", "Linux"),
                ("x-stainless-lang", "js"),
                ("x-request-id", "client-req-1"),
            ],
            body,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer, Bytes::from(COMPLETION));
    assert_eq!(headers["x-request-id"], "client-req-1");
    assert_eq!(headers["x-switchyard-upstream"], "primary");
    assert_eq!(headers["content-type"], "application/json");

    let received = &upstream.received()[0];
    assert_eq!(received.path, "/v1/chat/completions");
    assert_eq!(
        received.body,
        Bytes::from(
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x_vendor":{"b":2,"a":1},"temperature":0.50}"#
        )
    );
    assert_eq!(received.headers["authorization"], "Bearer upstream-secret");
    assert_eq!(received.headers["user-agent"], "curl/8.5.0");
    assert!(received.headers.keys().all(|h| !h.as_str().starts_with("x-stainless-")));
    let all_headers = format!("{:?}", received.headers);
    assert!(!all_headers.contains("client-secret"));
}

#[tokio::test]
async fn a_key_from_a_variable_ending_in_a_newline_still_authenticates() {
    let upstream = MockUpstream::always(Reply::json(200, COMPLETION)).await;
    let config = passthrough_config(&upstream.url(), "").replace("\"upstream-secret\"", "\"${UK}\"");
    let config = format!("{config}\n[[keys]]\nname = \"team\"\nkey = \"${{CK}}\"\n");
    let relay = Relay::start_with_env(&config, &[("UK", "sk-TRAILNL\n"), ("CK", "client-key\r\n")]).await;
    let (status, _, body) =
        relay.chat(&[("authorization", "Bearer client-key")], &json!({"model": "gpt", "messages": []})).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(upstream.received()[0].headers["authorization"], "Bearer sk-TRAILNL");
}

#[tokio::test]
async fn a_legacy_providers_file_is_served() {
    let upstream = MockUpstream::always(Reply::json(200, COMPLETION)).await;
    let config = passthrough_config(&upstream.url(), "")
        .replace("[upstreams.primary]", "[providers.primary]")
        .replace("{ upstream = \"primary\", model", "{ provider = \"primary\", model");
    let relay = Relay::start(&config).await;
    let (status, headers, _) = relay.chat(&[], &json!({"model": "gpt", "messages": []})).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-switchyard-upstream"], "primary");
    assert_eq!(upstream.received()[0].headers["authorization"], "Bearer upstream-secret");
}

#[tokio::test]
async fn prefix_models_route_the_rest_of_the_name() {
    let upstream = MockUpstream::always(Reply::json(200, COMPLETION)).await;
    let relay = Relay::start(&passthrough_config(&upstream.url(), "")).await;
    let (status, _, _) = relay.chat(&[], &json!({"model": "openai/gpt-4.1", "messages": []})).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.received()[0].json()["model"], "gpt-4.1");
}

#[tokio::test]
async fn compat_rewrites_reach_the_upstream() {
    let upstream = MockUpstream::always(Reply::json(200, COMPLETION)).await;
    let relay = Relay::start(&passthrough_config(
        &upstream.url(),
        "compat = { developer_role = \"system\", max_tokens_field = \"max_tokens\", drop_params = [\"store\", \"stream_options\"], strip_tool_strict = true }",
    ))
    .await;
    let request = json!({
        "model": "gpt", "store": true, "max_completion_tokens": 10,
        "messages": [{"role": "developer", "content": "brief"}, {"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "strict": true, "parameters": {"type": "object"}}}],
    });
    let (status, _, _) = relay.chat(&[], &request).await;
    assert_eq!(status, 200);
    let sent = upstream.received()[0].json();
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["max_tokens"], 10);
    assert!(sent.get("store").is_none() && sent.get("max_completion_tokens").is_none());
    assert!(sent["tools"][0]["function"].get("strict").is_none());
}

#[tokio::test]
async fn streams_are_forwarded_event_by_event_as_they_arrive() {
    let events: Vec<String> = (0..5)
        .map(|i| format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i} \"}},\"finish_reason\":null}}]}}\n\n"))
        .chain(["data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".to_owned(), "data: [DONE]\n\n".to_owned()])
        .collect();
    let parts = events.iter().map(|e| (Duration::from_millis(150), Bytes::from(e.clone()))).collect();
    let upstream = MockUpstream::always(Reply::Chunks { status: 200, content_type: "text/event-stream", parts }).await;
    let relay = Relay::start(&passthrough_config(&upstream.url(), "")).await;

    // Read the relay's body frame by frame and time the arrivals: a buffering relay would
    // deliver everything at the end.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let request = http::Request::post(relay.url("/v1/chat/completions"))
        .body(http_body_util::Full::new(Bytes::from(
            json!({"model": "gpt", "stream": true, "messages": []}).to_string(),
        )))
        .unwrap();
    let started = std::time::Instant::now();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // No cache between the relay and the client may hold the stream back or replay it.
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let mut body = response.into_body();
    let mut arrivals = Vec::new();
    let mut received = Vec::new();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let frame = frame.unwrap();
        if let Ok(data) = frame.into_data() {
            arrivals.push(started.elapsed());
            received.extend_from_slice(&data);
        }
    }
    let expected: String = events.concat();
    assert_eq!(String::from_utf8(received).unwrap(), expected, "pass-through events arrive unchanged");
    assert!(arrivals.len() >= 5, "events arrived in several frames: {arrivals:?}");
    assert!(
        arrivals[arrivals.len() - 1] - arrivals[1] >= Duration::from_millis(500),
        "frames were spread over time: {arrivals:?}"
    );

    let sent = upstream.received()[0].json();
    assert_eq!(sent["stream_options"]["include_usage"], true, "usage is requested for token accounting");
}

#[tokio::test]
async fn connections_to_an_upstream_are_kept_alive_and_reused() {
    let upstream = MockUpstream::start(|received, _| {
        if received.json()["stream"] == true {
            Reply::sse(&["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n", "data: [DONE]\n\n"])
        } else {
            Reply::json(200, COMPLETION)
        }
    })
    .await;
    let relay = Relay::start(&passthrough_config(&upstream.url(), "")).await;
    for stream in [false, true, false, true, false] {
        let (status, _, _) = relay.chat(&[], &json!({"model": "gpt", "stream": stream, "messages": []})).await;
        assert_eq!(status, 200);
    }
    let peers: std::collections::HashSet<_> = upstream.received().iter().map(|r| r.peer).collect();
    assert_eq!(upstream.received().len(), 5);
    assert_eq!(peers.len(), 1, "one connection served every sequential request: {peers:?}");
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_reused() {
    use tokio::io::AsyncWriteExt;
    // Answers one request per connection, then closes it without saying so (no
    // `connection: close`), as servers do when their keep-alive timeout passes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            read_json_request(&mut socket).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                COMPLETION.len()
            );
            socket.write_all([head.as_bytes(), COMPLETION.as_bytes()].concat().as_slice()).await.unwrap();
            drop(socket);
        }
    });
    let relay = Relay::start(&passthrough_config(&format!("http://{addr}"), "")).await;
    for _ in 0..3 {
        let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "messages": []})).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        // Give the close time to arrive before the next request picks a connection.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3, "a new connection for each request");
}

#[tokio::test]
async fn events_that_arrive_together_leave_in_one_write() {
    let events: Vec<String> = (0..20)
        .map(|i| format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i} \"}},\"finish_reason\":null}}]}}\n\n"))
        .chain(["data: [DONE]\n\n".to_owned()])
        .collect();
    // Zero delays: the mock writes all its HTTP chunks in one go, so the relay reads them in
    // one read; each chunk still reaches the relay's client separately.
    let upstream = MockUpstream::always(Reply::sse(&events.iter().map(String::as_str).collect::<Vec<_>>())).await;
    let relay = Relay::start(&passthrough_config(&upstream.url(), "")).await;

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let request = http::Request::post(relay.url("/v1/chat/completions"))
        .body(http_body_util::Full::new(Bytes::from(
            json!({"model": "gpt", "stream": true, "stream_options": {"include_usage": true}, "messages": []})
                .to_string(),
        )))
        .unwrap();
    let mut body = client.request(request).await.unwrap().into_body();
    let (mut frames, mut received) = (0, Vec::new());
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames += 1;
            received.extend_from_slice(&data);
        }
    }
    assert_eq!(String::from_utf8(received).unwrap(), events.concat(), "every event arrives, unchanged");
    // One write (one HTTP chunk) per event costs a syscall each and is what made streams slow;
    // the first event leaves on its own (it commits the response), the rest together.
    assert!(frames <= 4, "{} events arrived in {frames} frames, expected them joined", events.len());
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_in_band_error_not_a_clean_end() {
    let parts = vec![(
        Duration::ZERO,
        Bytes::from_static(b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"},\"finish_reason\":null}]}\n\n"),
    )];
    let upstream = MockUpstream::always(Reply::ChunksThenReset { parts }).await;
    let relay = Relay::start(&passthrough_config(&upstream.url(), "")).await;
    let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "stream": true, "messages": []})).await;
    assert_eq!(status, 200);
    let data = sse_data(&body);
    assert!(data[0].contains("\"par\""));
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_reset");
    assert_eq!(last["error"]["upstream"], "primary");
    assert!(!data.iter().any(|d| d == "[DONE]"));
}

#[tokio::test]
async fn a_stream_cut_mid_event_ends_with_an_error_event_of_its_own() {
    let chunk =
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"},\"finish_reason\":null}]}\n\n";
    // Cut mid-line, and after a whole `data:` line but before the blank line ending its event.
    for cut in ["data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.comple", "data: {\"id\":\"c\",\"choices\":[]}\n"] {
        let parts = vec![(Duration::ZERO, Bytes::from(chunk)), (Duration::from_millis(50), Bytes::from(cut))];
        let upstream =
            MockUpstream::always(Reply::Chunks { status: 200, content_type: "text/event-stream", parts }).await;
        let relay = Relay::start(&passthrough_config(&upstream.url(), "")).await;
        let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "stream": true, "messages": []})).await;
        assert_eq!(status, 200);
        let text = String::from_utf8(body.to_vec()).unwrap();
        let error = text.strip_prefix(chunk).unwrap_or_else(|| panic!("{cut:?}: {text:?}"));
        assert!(error.starts_with("data: {\"error\":") && error.ends_with("}\n\n"), "{cut:?}: {error:?}");
        let data = sse_data(&body);
        assert_eq!(data.len(), 2, "{cut:?}: {data:?}");
        let last: serde_json::Value = serde_json::from_str(&data[1]).unwrap();
        assert_eq!(last["error"]["code"], "upstream_stream_truncated");
    }
}

/// An upstream on a bare socket that answers one streamed request with `chunks`, each framed as
/// an HTTP/1.1 chunk and written one byte per write with a pause between, so that the relay reads
/// every size line and CRLF in pieces; then `tail` (raw bytes), and the socket closes.
async fn chunked_upstream_byte_by_byte(chunks: Vec<&'static str>, tail: &'static [u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.set_nodelay(true).unwrap();
        read_json_request(&mut socket).await;
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        socket.write_all(head).await.unwrap();
        let framed: Vec<u8> = chunks
            .iter()
            .flat_map(|chunk| {
                [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.as_bytes().to_vec(), b"\r\n".to_vec()]
            })
            .flatten()
            .chain(tail.iter().copied())
            .collect();
        for byte in framed {
            if socket.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_stream_whose_chunk_framing_arrives_a_byte_at_a_time_is_relayed_unchanged() {
    let events = vec![
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    ];
    let upstream = chunked_upstream_byte_by_byte(events.clone(), b"0\r\n\r\n").await;
    let relay = Relay::start(&passthrough_config(&upstream, "")).await;
    let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "stream": true, "messages": []})).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(body.to_vec()).unwrap(), events.concat());
}

#[tokio::test]
async fn a_stream_cut_inside_a_chunk_size_line_ends_with_an_in_band_error() {
    let event =
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"},\"finish_reason\":null}]}\n\n";
    // The next chunk's size line, cut before its CRLF.
    let upstream = chunked_upstream_byte_by_byte(vec![event], b"5").await;
    let relay = Relay::start(&passthrough_config(&upstream, "")).await;
    let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "stream": true, "messages": []})).await;
    assert_eq!(status, 200);
    let data = sse_data(&body);
    assert_eq!(data.len(), 2, "{data:?}");
    assert!(data[0].contains("\"par\""));
    let last: serde_json::Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(last["error"]["code"], "upstream_reset", "{last}");
    assert_eq!(last["error"]["upstream"], "primary");
}

#[tokio::test]
async fn client_errors_are_openai_shaped() {
    let upstream = MockUpstream::always(Reply::json(200, COMPLETION)).await;
    let toml = format!(
        "[server]\nmax_body_bytes = 2048\n[[keys]]\nname = \"team\"\nkey = \"${{TEAM_KEY}}\"\nmodels = [\"gpt\"]\n{}",
        passthrough_config(&upstream.url(), "")
    );
    let relay = Relay::start_with_env(&toml, &[("TEAM_KEY", "team-secret")]).await;
    let auth = [("authorization", "Bearer team-secret")];
    // (request headers, body, status, error code)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Bytes, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], Bytes::from(json!({"model": "gpt", "messages": []}).to_string()), 401, "invalid_api_key"),
        (
            vec![("authorization", "Bearer wrong")],
            Bytes::from(json!({"model": "gpt"}).to_string()),
            401,
            "invalid_api_key",
        ),
        (auth.to_vec(), Bytes::from_static(b"{not json"), 400, "invalid_json"),
        (auth.to_vec(), Bytes::from(json!({"model": "gtp", "messages": []}).to_string()), 404, "model_not_found"),
        (
            auth.to_vec(),
            Bytes::from(json!({"model": "openai/gpt-4o", "messages": []}).to_string()),
            403,
            "model_not_allowed",
        ),
        (auth.to_vec(), Bytes::from(vec![b' '; 4096]), 413, "body_too_large"),
    ];
    for (headers, body, status, code) in cases {
        let (got, response_headers, answer) = relay.send("POST", "/v1/chat/completions", &headers, body).await;
        let error = error_of(&answer);
        assert_eq!((got.as_u16(), error["code"].as_str().unwrap()), (status, code), "{error}");
        assert_eq!(error["request_id"], response_headers["x-request-id"].to_str().unwrap());
        assert!(!answer.windows(11).any(|w| w == b"team-secret"));
    }
    let (_, _, body) =
        relay.chat(&[("authorization", "Bearer team-secret")], &json!({"model": "gtp", "messages": []})).await;
    assert!(error_of(&body)["message"].as_str().unwrap().contains("gpt"), "404 suggests close names");
    assert!(upstream.received().is_empty(), "nothing reached the upstream");
}

async fn error_through(reply: Option<Reply>, base_url: Option<String>) -> (u16, serde_json::Value) {
    let upstream = match reply {
        Some(reply) => Some(MockUpstream::always(reply).await),
        None => None,
    };
    let url = base_url.unwrap_or_else(|| upstream.as_ref().unwrap().url());
    let config = format!(
        "[upstreams.primary]\ndialect = \"openai-completions\"\nbase_url = \"{url}/v1\"\ntimeouts = {{ connect = \"500ms\", first_byte = \"2s\" }}\nretry = {{ attempts = 1 }}\n[[models]]\nname = \"gpt\"\ntargets = [{{ upstream = \"primary\" }}]\n"
    );
    let relay = Relay::start(&config).await;
    let (status, headers, body) = relay.chat(&[], &json!({"model": "gpt", "messages": []})).await;
    let error = error_of(&body);
    assert_eq!(error["upstream"], "primary", "{error}");
    assert_eq!(error["request_id"], headers["x-request-id"].to_str().unwrap());
    (status.as_u16(), error)
}

#[tokio::test]
async fn upstream_failures_name_their_class() {
    // Refused: a port that was just freed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (status, error) = error_through(None, Some(format!("http://{closed}"))).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_connect_refused"), "{error}");

    let (status, error) = error_through(None, Some("http://switchyard-test.invalid".into())).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_dns"), "{error}");

    // TLS toward a server that speaks plain HTTP.
    let plain = MockUpstream::always(Reply::json(200, COMPLETION)).await;
    let (status, error) = error_through(None, Some(format!("https://{}", plain.addr))).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_tls"), "{error}");

    // A TCP server that accepts but never completes the TLS handshake: connect covers TLS.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (status, error) = error_through(None, Some(format!("https://{silent_addr}"))).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (504, "upstream_timeout_connect"), "{error}");

    let (status, error) = error_through(Some(Reply::Close), None).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_reset"), "{error}");

    let (status, error) = error_through(Some(Reply::Hang), None).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (504, "upstream_timeout_first_byte"), "{error}");

    let waf = Reply::Full {
        status: 403,
        content_type: "text/html",
        body: Bytes::from_static(b"<html><body>Sorry, you have been blocked</body></html>"),
    };
    let (status, error) = error_through(Some(waf), None).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (403, "upstream_blocked_403_html"), "{error}");
    assert!(error["message"].as_str().unwrap().contains("you have been blocked"));

    let cloudflare =
        Reply::Full { status: 524, content_type: "text/plain", body: Bytes::from_static(b"error code: 524") };
    let (status, error) = error_through(Some(cloudflare), None).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (524, "upstream_non_json_error"), "{error}");

    // Passed on, a 304 reaches an SDK with no error body, and a 302 sends it elsewhere.
    for (upstream_status, says) in [(302, "302 Found, a redirect"), (304, "304 Not Modified")] {
        let answer = Reply::Full { status: upstream_status, content_type: "text/html", body: Bytes::new() };
        let (status, error) = error_through(Some(answer), None).await;
        assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_invalid_response"), "{error}");
        assert!(error["message"].as_str().unwrap().contains(says), "{error}");
    }
}

#[tokio::test]
async fn an_error_body_cut_short_or_too_long_is_quoted_as_far_as_it_came_and_named_cut() {
    use tokio::io::AsyncWriteExt;
    let long = format!("{{\"error\":{{\"message\":\"{}\"}}}}", "x".repeat(300 * 1024));
    let cases = [
        // The connection drops 30 bytes into a body of 400.
        ("HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 400\r\n\r\ndatabase connection pool exhau".to_owned(), "database connection pool exhau", "connection"),
        (format!("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{long}", long.len()), "xxxxxxxx", "limit"),
    ];
    for (answer, quoted, why) in cases {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            support::read_json_request(&mut socket).await;
            let _ = socket.write_all(answer.as_bytes()).await;
        });
        let (_, error) = error_through(None, Some(url)).await;
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(quoted), "{}", &message[..message.len().min(300)]);
        assert!(
            message.contains("the error body was cut short") && message.contains(why),
            "{}",
            &message[message.len().saturating_sub(300)..]
        );
    }
}

#[tokio::test]
async fn a_2xx_that_is_not_a_chat_completion_is_an_invalid_response() {
    for body in [r#"{"id": "x", "choices": [{"ind"#, r#"{"hello":"world"}"#] {
        let (status, error) = error_through(Some(Reply::json(200, body)), None).await;
        assert_eq!((status, error["code"].as_str().unwrap()), (502, "upstream_invalid_response"), "{error}");
        assert!(error["message"].as_str().unwrap().contains(body), "{error}");
    }
}

#[tokio::test]
async fn a_body_ended_by_the_connection_close_is_checked_whole() {
    use tokio::io::AsyncWriteExt;
    // Cut right after the nested `message` object: it still starts with `{`, ends with `}` and
    // names `choices`, so only a whole parse tells it from an answer.
    let cut_at = COMPLETION.find(r#""hi"}"#).unwrap() + r#""hi"}"#.len();
    let bodies = [COMPLETION, &COMPLETION[..cut_at]];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // No content-length and no chunking: the body ends where the upstream closes the connection,
    // as an HTTP/1.0-style server sends it, or as a dropped connection leaves it.
    tokio::spawn(async move {
        for body in bodies {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_json_request(&mut socket).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
            socket.write_all([head.as_bytes(), body.as_bytes()].concat().as_slice()).await.unwrap();
        }
    });
    let relay = Relay::start(&passthrough_config(&format!("http://{addr}"), "")).await;
    let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "messages": []})).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8_lossy(&body), COMPLETION, "a whole close-delimited body passes as it came");

    let (status, _, body) = relay.chat(&[], &json!({"model": "gpt", "messages": []})).await;
    let error = error_of(&body);
    assert_eq!((status.as_u16(), error["code"].as_str()), (502, Some("upstream_invalid_response")), "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("connection closed") && message.contains("cut short"), "{message}");
}

#[tokio::test]
async fn a_2xx_that_is_no_answer_of_a_translated_dialect_is_an_invalid_response() {
    let upstream = MockUpstream::always(Reply::json(200, r#"{"hello":"world"}"#)).await;
    for dialect in ["anthropic-messages", "google-generative-ai"] {
        let config = format!(
            "[upstreams.up]\ndialect = \"{dialect}\"\nbase_url = \"{}\"\napi_key = \"k\"\nretry = {{ attempts = 1 }}\n\n[[models]]\nname = \"m\"\ntargets = [{{ upstream = \"up\", model = \"x\" }}]\n",
            upstream.url()
        );
        let relay = Relay::start(&config).await;
        let (status, _, body) =
            relay.chat(&[], &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).await;
        let code = error_of(&body)["code"].as_str().map(str::to_owned);
        assert_eq!((status.as_u16(), code.as_deref()), (502, Some("upstream_invalid_response")), "{dialect}");
    }
}

#[tokio::test]
async fn an_upstream_json_error_passes_through_with_its_status() {
    let body = r#"{"error":{"message":"Unsupported value: 'messages[0].role' does not support 'developer'","type":"invalid_request_error","param":"messages[0].role","code":"unsupported_value"}}"#;
    let (status, error) = error_through(Some(Reply::json(400, body)), None).await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "unsupported_value");
    assert_eq!(error["param"], "messages[0].role");
}

#[tokio::test]
async fn an_upstream_that_quotes_its_credentials_back_does_not_show_them_to_the_client() {
    let quoting = |received: &support::Received, index: usize| {
        let sent: Vec<String> =
            received.headers.iter().map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or(""))).collect();
        let quoted = sent.join("; ");
        match index {
            0 => Reply::json(
                401,
                json!({"error": {"message": format!("Incorrect API key provided: {quoted}")}}).to_string(),
            ),
            _ => Reply::Full { status: 500, content_type: "text/html", body: format!("<pre>{quoted}</pre>").into() },
        }
    };
    let upstream = MockUpstream::start(quoting).await;
    let config = format!(
        "[upstreams.up]\ndialect = \"openai-completions\"\nbase_url = \"{}/v1\"\napi_key = \"sk-UPSTREAM-SECRET-401\"\n\
         headers.set = {{ \"cf-access-client-secret\" = \"HDRSECRET-777\", \"x-title\" = \"switchyard-test\" }}\n\
         retry = {{ attempts = 1 }}\n\n[[models]]\nname = \"m\"\ntargets = [{{ upstream = \"up\" }}]\n",
        upstream.url()
    );
    let relay = Relay::start(&config).await;
    for expected in [401u16, 500] {
        let (status, _, body) =
            relay.chat(&[], &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status.as_u16(), expected, "{text}");
        assert!(text.contains("[redacted]") && text.contains("switchyard-test"), "{text}");
        assert!(!text.contains("SECRET"), "a secret reached the client: {text}");
    }
}

#[tokio::test]
async fn an_error_excerpt_cut_inside_a_quoted_credential_shows_none_of_it() {
    const KEY: &str = "sk-UPSTREAM-0123456789abcdefghijklmnopqrstuvwxyz0123456789";
    // A non-JSON error body is quoted only so far; this one echoes the credential across that cut.
    let echo = |received: &support::Received, _: usize| {
        let credential = received.headers["authorization"].to_str().unwrap().to_owned();
        let body = format!("<html><body><p>{}{credential}</p></body></html>", "x".repeat(240));
        Reply::Full { status: 403, content_type: "text/html", body: body.into() }
    };
    let upstream = MockUpstream::start(echo).await;
    let config = format!(
        "[upstreams.up]\ndialect = \"openai-completions\"\nbase_url = \"{}/v1\"\napi_key = \"{KEY}\"\n\
         retry = {{ attempts = 1 }}\n\n[[models]]\nname = \"m\"\ntargets = [{{ upstream = \"up\" }}]\n",
        upstream.url()
    );
    let relay = Relay::start(&config).await;
    let (status, _, body) =
        relay.chat(&[], &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status.as_u16(), 403, "{text}");
    assert!(text.contains("xxxxBearer [redacted]"), "{text}");
    for window in KEY.as_bytes().windows(8) {
        let window = std::str::from_utf8(window).unwrap();
        assert!(!text.contains(window), "{window:?}, a part of the key, reached the client: {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_body_that_stops_coming_is_answered_and_its_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = Relay::start(include_str!("../src/config/default.toml")).await;
    let mut stream = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    // Larger than the relay's own loop reads whole, so hyper reads it; 1,000 bytes of it come.
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: relay\r\ncontent-length: 300000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 1000]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut answer))
        .await
        .expect("the connection was closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("reading the request body failed") && answer.contains("req_"), "{answer}");
}

#[tokio::test]
async fn a_client_that_waits_for_100_continue_is_answered_and_the_expectation_stays_with_the_relay() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = MockUpstream::always(Reply::json(200, COMPLETION)).await;
    let relay = Relay::start(&passthrough_config(&upstream.url(), "")).await;
    let mut stream = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let body = r#"{"model":"gpt","messages":[]}"#;
    // As curl sends a large upload: the head, then the body only once the server says go on.
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: relay\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut go_on = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut go_on))
        .await
        .expect("the relay said 100 Continue before the body was sent")
        .unwrap();
    assert_eq!(&go_on, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let received = &upstream.received()[0];
    assert_eq!(received.json()["model"], "gpt-4o-mini");
    assert!(received.headers.get("expect").is_none(), "{:?}", received.headers);
}

#[tokio::test]
async fn health_readiness_and_models() {
    let relay = Relay::start(include_str!("../src/config/default.toml")).await;
    let (status, _, body) = relay.send("GET", "/healthz", &[], "").await;
    assert_eq!((status.as_u16(), body), (200, Bytes::from_static(br#"{"status":"ok"}"#)));
    let (status, _, body) = relay.send("GET", "/readyz", &[], "").await;
    let ready: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status.as_u16(), ready["status"].as_str().unwrap()), (200, "ready"));
    let (_, _, body) = relay.send("GET", "/v1/models", &[], "").await;
    let models: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(models["data"][0]["id"], "mock");
    let (status, _, _) = relay.send("GET", "/v1/models/mock", &[], "").await;
    assert_eq!(status, 200);
    let (status, _, body) = relay.send("GET", "/v1/nope", &[], "").await;
    assert_eq!((status.as_u16(), error_of(&body)["code"].as_str().unwrap()), (404, "not_found"));
}

/// Upstreams that give no completion id (Ollama's native API) get one from the request id, so
/// a client can match a completion to the relay's logs.
#[tokio::test]
async fn a_completion_without_an_upstream_id_is_named_after_the_request() {
    let answer = r#"{"model":"llama3","created_at":"2026-03-03T23:25:43Z","message":{"role":"assistant","content":"Paris."},"done":true,"done_reason":"stop","prompt_eval_count":7,"eval_count":2}"#;
    let upstream = MockUpstream::always(Reply::json(200, answer)).await;
    let config = format!(
        r#"
[upstreams.local]
dialect = "ollama"
base_url = "{}"

[[models]]
name = "llama"
targets = [{{ upstream = "local", model = "llama3" }}]
"#,
        upstream.url()
    );
    let relay = Relay::start(&config).await;
    let request = json!({"model": "llama", "messages": [{"role": "user", "content": "Capital of France?"}]});
    for (sent, expected) in [("req_0123abcd", "chatcmpl-0123abcd"), ("trace-7", "chatcmpl-trace-7")] {
        let (status, headers, body) = relay.chat(&[("x-request-id", sent)], &request).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-request-id"], sent);
        let completion: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(completion["id"], expected);
        assert_eq!(completion["choices"][0]["message"]["content"], "Paris.");
    }
    let (_, headers, body) = relay.chat(&[], &request).await;
    let generated = headers["x-request-id"].to_str().unwrap();
    let completion: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(completion["id"], format!("chatcmpl-{}", generated.strip_prefix("req_").unwrap()));
}

/// Bodies that arrive over many reads, both ways, on kept-alive connections. The relay holds
/// back the wake-ups hyper raises when a chunk is taken (`switchyard::wake`); one wrongly
/// dropped would leave a request waiting for a poll that never comes, and this would time out.
#[tokio::test]
async fn bodies_that_arrive_over_many_reads_complete_both_ways() {
    let big_answer = format!(
        r#"{{"id":"chatcmpl-big","object":"chat.completion","model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}]}}"#,
        "y".repeat(3 << 20)
    );
    let events: Vec<String> = (0..40)
        .map(|i| format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"part {i} \"}}}}]}}\n\n"))
        .chain(std::iter::once("data: [DONE]\n\n".to_owned()))
        .collect();
    let answer = big_answer.clone();
    let upstream = MockUpstream::start(move |received, _| {
        if received.json()["stream"] == true {
            let parts = events.iter().map(|e| (Duration::from_millis(2), Bytes::from(e.clone()))).collect();
            Reply::Chunks { status: 200, content_type: "text/event-stream", parts }
        } else {
            Reply::json(200, answer.clone())
        }
    })
    .await;
    let relay = Relay::start(&passthrough_config(&upstream.url(), "")).await;
    let image = "x".repeat(5 << 20);
    for round in 0..3 {
        let request = json!({"model": "gpt", "messages": [{"role": "user", "content": image}], "round": round});
        let (status, _, body) = relay.chat(&[], &request).await;
        assert_eq!(status, 200, "round {round}");
        assert_eq!(body, Bytes::from(big_answer.clone()), "round {round}");

        let mut streamed = request.clone();
        streamed["stream"] = json!(true);
        let (status, _, body) = relay.chat(&[], &streamed).await;
        assert_eq!(status, 200, "round {round}");
        let data = sse_data(&body);
        assert_eq!(data.len(), 41, "round {round}");
        assert_eq!(data.last().unwrap(), "[DONE]");
    }
    let received = upstream.received();
    assert_eq!(received.len(), 6);
    for request in &received {
        assert_eq!(request.json()["messages"][0]["content"].as_str().map(str::len), Some(5 << 20));
    }
}

#[tokio::test]
async fn the_embedded_mock_answers_streamed_and_not() {
    let relay = Relay::start(include_str!("../src/config/default.toml")).await;
    let request = json!({"model": "mock", "messages": [{"role": "user", "content": "ping pong"}]});
    let (status, _, body) = relay.chat(&[], &request).await;
    assert_eq!(status, 200);
    let completion: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "Hello from the Switchyard mock upstream. You said: ping pong"
    );
    assert_eq!(completion["usage"]["prompt_tokens"], 2);

    let mut stream_request = request.clone();
    stream_request["stream"] = json!(true);
    let (status, _, body) = relay.chat(&[], &stream_request).await;
    assert_eq!(status, 200);
    let data = sse_data(&body);
    assert!(data.len() > 5);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Hello from the Switchyard mock upstream. You said: ping pong");
    assert!(!data.iter().any(|d| d.contains("\"usage\"")), "no usage chunk unless asked");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = parking_lot::Mutex::new(Some(tx));
    let upstream_hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hits = upstream_hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A raw upstream that streams forever and reports when its socket is closed by the relay.
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut buf = vec![0u8; 65536];
        let _ = socket.read(&mut buf).await;
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        let event = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n";
        loop {
            let chunk = format!("{:x}\r\n", event.len());
            if socket.write_all(chunk.as_bytes()).await.is_err()
                || socket.write_all(event).await.is_err()
                || socket.write_all(b"\r\n").await.is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(tx) = tx.lock().take() {
            let _ = tx.send(());
        }
    });
    let relay = Relay::start(&passthrough_config(&format!("http://{addr}"), "")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let request = http::Request::post(relay.url("/v1/chat/completions"))
        .body(http_body_util::Full::new(Bytes::from(
            json!({"model": "gpt", "stream": true, "messages": []}).to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let mut body = response.into_body();
    let _ = http_body_util::BodyExt::frame(&mut body).await;
    drop(body);
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("the relay closed the upstream stream after the client left")
        .unwrap();
    assert_eq!(upstream_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bedrock_requests_are_sigv4_signed_with_configured_credentials() {
    let upstream = MockUpstream::always(Reply::json(
        200,
        r#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4}}"#,
    ))
    .await;
    let config = format!(
        "[upstreams.bedrock]\ndialect = \"bedrock-converse-stream\"\nbase_url = \"{}\"\nregion = \"eu-west-1\"\naws_access_key_id = \"${{AKID}}\"\naws_secret_access_key = \"${{SECRET}}\"\n[[models]]\nname = \"claude\"\ntargets = [{{ upstream = \"bedrock\", model = \"anthropic.claude-3-haiku\" }}]\n",
        upstream.url()
    );
    let relay = Relay::start_with_env(
        &config,
        &[("AKID", "AKIDEXAMPLE"), ("SECRET", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")],
    )
    .await;
    let (status, _, body) =
        relay.chat(&[], &json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let received = &upstream.received()[0];
    assert_eq!(received.path, "/model/anthropic.claude-3-haiku/converse");
    let authorization = received.headers["authorization"].to_str().unwrap();
    assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{authorization}");
    assert!(authorization.contains("/eu-west-1/bedrock/aws4_request"), "{authorization}");
    assert!(received.headers.contains_key("x-amz-date"));
    assert!(!format!("{:?}", received.headers).contains("wJalrXUtnFEMI"), "the secret itself is never sent");
}
