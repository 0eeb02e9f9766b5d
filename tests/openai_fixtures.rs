//! Recorded OpenAI chat traffic (`shared/fixtures/upstream/openai_chat/`) replayed by a mock
//! upstream: the upstream receives the recorded request, and the client receives the recorded
//! SSE data frames and JSON bodies.

mod support;

use bytes::Bytes;
use support::{fixtures_dir, sse_data, MockUpstream, Relay, Reply};

#[tokio::test]
async fn every_recorded_openai_chat_exchange_replays_unchanged() {
    let mut replayed = 0;
    for entry in std::fs::read_dir(fixtures_dir("openai_chat")).unwrap() {
        let path = entry.unwrap().path();
        let fixture: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let request = &fixture["request"];
        let Some(request_body) = request["body"].as_object() else { continue };
        if request["path"].as_str().is_some_and(|p| !p.ends_with("/chat/completions")) {
            // The 401 was recorded on /v1/embeddings; the relay serves chat completions only.
            continue;
        }
        let response = &fixture["response"];
        let status = response["status"].as_u64().unwrap() as u16;
        let body = Bytes::from(response["body"].as_str().unwrap().to_owned());
        let is_stream_body = response["headers"]["content-type"].as_str().is_some_and(|c| c.contains("event-stream"));
        let reply = Reply::Full {
            status,
            content_type: if is_stream_body { "text/event-stream" } else { "application/json" },
            body: body.clone(),
        };
        let upstream = MockUpstream::always(reply).await;
        let model = request_body["model"].as_str().unwrap();
        let config = format!(
            "[upstreams.openai]\ndialect = \"openai-completions\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\nretry = {{ attempts = 1 }}\n[[models]]\nname = \"{model}\"\ntargets = [{{ upstream = \"openai\" }}]\n",
            upstream.url()
        );
        let relay = Relay::start(&config).await;
        let sent = serde_json::Value::Object(request_body.clone());
        let (got_status, _, got_body) = relay.chat(&[], &sent).await;

        let received = upstream.received();
        let mut expected_request = sent.clone();
        let wants_usage = sent.pointer("/stream_options/include_usage").and_then(|v| v.as_bool()) == Some(true);
        if sent["stream"] == true && !wants_usage {
            expected_request["stream_options"] = serde_json::json!({"include_usage": true});
        }
        assert_eq!(received[0].json(), expected_request, "{name}: the upstream got the recorded request");
        assert_eq!(got_status.as_u16(), status, "{name}");
        if is_stream_body && status == 200 {
            let recorded: Vec<String> = sse_data(&body);
            assert_eq!(sse_data(&got_body), recorded, "{name}: the same SSE data frames");
        } else if status == 200 {
            assert_eq!(got_body, body, "{name}: the same JSON body");
        } else {
            let recorded: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let got: serde_json::Value = serde_json::from_slice(&got_body).unwrap();
            for key in ["message", "type", "code", "param"] {
                if let Some(value) = recorded["error"].get(key) {
                    assert_eq!(&got["error"][key], value, "{name}: error {key} passes through");
                }
            }
            assert_eq!(got["error"]["upstream"], "openai", "{name}");
        }
        replayed += 1;
    }
    assert!(replayed >= 15, "replayed {replayed} fixtures");
}
