//! Gemini `streamGenerateContent?alt=sse` -> OpenAI `chat.completion.chunk` events.
//!
//! Every SSE event (framed with CRLF) is a whole `GenerateContentResponse` holding the next
//! parts; there is no `[DONE]`. The stream is complete once a candidate carries a
//! `finishReason` (or the prompt was blocked); a stream that ends before is truncated. Usage is
//! cumulative in every event, so the last one seen counts.

use bytes::Bytes;

use super::response::{finish_reason, in_band_error, piece, GenerateResponse, Piece};
use crate::dialect::completion::ChunkWriter;
use crate::dialect::framed::FrameTranslator;
use crate::dialect::openai::excerpt;
use crate::dialect::{ResponseContext, Usage};
use crate::error::{ErrorCode, RelayError};
use crate::sse;

/// The state of one Gemini stream.
pub(super) struct GeminiStream {
    writer: ChunkWriter,
    wants_usage: bool,
    /// Seed for tool call ids when Gemini gives none: its response id, else the relay's id.
    id_seed: Option<String>,
    fallback_seed: String,
    /// Set once the finish chunk is out.
    finished: bool,
    usage: Option<Usage>,
}

impl GeminiStream {
    pub(super) fn new(ctx: &ResponseContext) -> Self {
        GeminiStream {
            writer: ChunkWriter::for_context(ctx),
            wants_usage: ctx.client_wants_usage,
            id_seed: None,
            fallback_seed: ctx.completion_id(),
            finished: false,
            usage: None,
        }
    }

    fn on_event(&mut self, event: &sse::Event, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        let Some(data) = event.data() else {
            return Ok(());
        };
        let mut response: GenerateResponse = serde_json::from_slice(&data).map_err(|e| {
            RelayError::new(
                ErrorCode::UpstreamInvalidResponse,
                format!("upstream stream event is not a Gemini response ({e}): {}", excerpt(&data)),
            )
        })?;
        if let Some(error) = &response.error {
            return Err(in_band_error(error));
        }
        self.writer.identify(response.completion_id(), response.model());
        if self.id_seed.is_none() {
            self.id_seed = response.response_id.clone().filter(|id| !id.is_empty());
        }
        if let Some(usage) = &response.usage_metadata {
            self.usage = Some(usage.into());
        }
        let block_reason = response.block_reason().is_some();
        let candidate = response.take_candidate();
        let mut finish = None;
        if let Some(candidate) = candidate {
            finish = candidate.finish_reason;
            let seed = self.id_seed.as_deref().unwrap_or(&self.fallback_seed).to_owned();
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                match piece(part, &seed, self.writer.tool_calls()) {
                    Some(Piece::Text(text)) => self.writer.content(&text, out),
                    Some(Piece::Thought(text)) => self.writer.reasoning(&text, out),
                    Some(Piece::Call(call)) => {
                        self.writer.tool_call(&call, out);
                    }
                    None => {}
                }
            }
        }
        if self.finished {
            return Ok(());
        }
        let reason = match (finish.as_deref(), block_reason) {
            (Some(reason), _) => finish_reason(reason, self.writer.tool_calls() > 0),
            (None, true) => "content_filter",
            (None, false) => return Ok(()),
        };
        self.writer.finish_reason(reason, out);
        self.finished = true;
        Ok(())
    }
}

impl FrameTranslator<sse::Event> for GeminiStream {
    fn frame(&mut self, event: sse::Event, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        self.on_event(&event, out)
    }

    fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(), RelayError> {
        if !self.finished {
            return Err(RelayError::new(
                ErrorCode::UpstreamStreamTruncated,
                "upstream stream ended before a candidate carried a finishReason",
            ));
        }
        self.writer.close(self.usage.as_ref(), self.wants_usage, out);
        Ok(())
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::framed::SseStream;
    use crate::dialect::StreamTranslator;
    use serde_json::{json, Value};

    fn ctx(wants_usage: bool) -> ResponseContext<'static> {
        ResponseContext {
            request_id: "req_ctx",
            created: 3,
            upstream_model: "gemini-x",
            client_wants_usage: wants_usage,
            several_choices: false,
        }
    }

    fn event(body: Value) -> String {
        format!("data: {body}\r\n\r\n")
    }

    fn run(input: &str, wants_usage: bool) -> (Result<(), RelayError>, Vec<Value>, Option<Usage>) {
        let mut stream = SseStream::new(GeminiStream::new(&ctx(wants_usage)));
        let mut out = Vec::new();
        let result = stream.feed(Bytes::from(input.to_owned()), &mut out).and_then(|()| stream.finish(&mut out));
        let payloads = out
            .iter()
            .map(|e| {
                let text = std::str::from_utf8(e).unwrap().strip_prefix("data: ").unwrap().trim_end().to_owned();
                if text == "[DONE]" {
                    Value::String(text)
                } else {
                    serde_json::from_str(&text).unwrap()
                }
            })
            .collect();
        (result, payloads, stream.usage())
    }

    #[test]
    fn text_thoughts_and_the_final_usage_are_streamed() {
        let input = event(json!({"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true}]}}],
                                  "usageMetadata": {"promptTokenCount": 9, "thoughtsTokenCount": 2}, "responseId": "r", "modelVersion": "gemini-2.5-pro"}))
            + &event(json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}],
                            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 1, "thoughtsTokenCount": 2}, "responseId": "r"}));
        let (result, events, usage) = run(&input, true);
        result.unwrap();
        assert_eq!(events.len(), 5);
        assert_eq!(events[0]["choices"][0]["delta"], json!({"role": "assistant", "reasoning_content": "hmm"}));
        assert_eq!(events[1]["choices"][0]["delta"], json!({"content": "Hi"}));
        assert_eq!(events[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[3]["usage"]["completion_tokens"], 3);
        assert_eq!(events[4], "[DONE]");
        for chunk in &events[..4] {
            assert_eq!((chunk["id"].as_str(), chunk["model"].as_str()), (Some("chatcmpl-r"), Some("gemini-2.5-pro")));
        }
        assert_eq!(
            usage,
            Some(Usage { prompt_tokens: 8, completion_tokens: 3, cached_tokens: 0, reasoning_tokens: 2 })
        );
        let (_, without_usage, _) = run(&input, false);
        assert_eq!(without_usage.len(), 4);
    }

    #[test]
    fn function_calls_stream_as_tool_call_deltas_and_finish_as_tool_calls() {
        let input = event(json!({"candidates": [{"content": {"parts": [
                {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "Uw=="},
                {"functionCall": {"name": "g", "args": {}}}
            ]}}], "responseId": "q"}))
            + &event(
                json!({"candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "STOP"}], "responseId": "q"}),
            );
        let (result, events, _) = run(&input, false);
        result.unwrap();
        let calls: Vec<&Value> = events.iter().filter_map(|e| e["choices"][0]["delta"].get("tool_calls")).collect();
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0][0]["id"], "call_q_0");
        assert_eq!(calls[0][0]["extra_content"]["google"]["thought_signature"], "Uw==");
        assert_eq!(calls[1][0], json!({"index": 0, "function": {"arguments": "{\"a\":1}"}}));
        assert_eq!((calls[2][0]["index"].as_u64(), calls[2][0]["id"].as_str()), (Some(1), Some("call_q_1")));
        assert_eq!(events[events.len() - 2]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn a_stream_without_a_finish_reason_is_truncated() {
        let input = event(json!({"candidates": [{"content": {"parts": [{"text": "par"}]}}]}));
        let (result, events, _) = run(&input, false);
        assert_eq!(result.unwrap_err().code, ErrorCode::UpstreamStreamTruncated);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn an_unterminated_last_event_still_counts() {
        let input =
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"MAX_TOKENS\"}]}";
        let (result, events, _) = run(input, false);
        result.unwrap();
        assert_eq!(events[events.len() - 2]["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn in_band_errors_fail_the_stream_with_their_class() {
        let limited = event(json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}));
        let (result, _, _) = run(&limited, false);
        let err = result.unwrap_err();
        assert_eq!(err.code, ErrorCode::UpstreamRateLimited);
        assert!(err.message.contains("slow down"));
        let internal = event(json!({"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}));
        assert_eq!(run(&internal, false).0.unwrap_err().code, ErrorCode::UpstreamStreamError);
        assert_eq!(run("data: not json\r\n\r\n", false).0.unwrap_err().code, ErrorCode::UpstreamInvalidResponse);
    }

    #[test]
    fn a_blocked_prompt_ends_the_stream_as_content_filter() {
        let input = event(
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 4}}),
        );
        let (result, events, _) = run(&input, false);
        result.unwrap();
        assert_eq!(events[0]["choices"][0]["delta"], json!({"role": "assistant"}));
        assert_eq!(events[0]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(events[1], "[DONE]");
    }
}
