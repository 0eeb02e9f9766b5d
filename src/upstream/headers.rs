//! Header policy toward the upstream and back.
//!
//! Toward the upstream: hop-by-hop headers, the client's credentials and (by default) the
//! OpenAI SDKs' `x-stainless-*` fingerprint headers are dropped — WAFs in front of
//! OpenAI-compatible relays block exactly those — and `User-Agent` is the upstream's own, never
//! the client SDK's. Toward the client: only headers that mean something end to end pass.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::body::{APPLICATION_JSON, TEXT_EVENT_STREAM};
use crate::config::{Glob, UpstreamParams};
use crate::wire;

/// Names the upstream, on every response an upstream gave or failed.
pub const UPSTREAM_HEADER: HeaderName = HeaderName::from_static("x-switchyard-upstream");
/// Carries the upstream's own id for the request; a const for the reason
/// [`crate::body::APPLICATION_JSON`] is one.
const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Headers never forwarded upstream: hop-by-hop (RFC 9110 §7.6.1), the client's credentials and
/// account headers, those the relay sets itself, and `expect`: the relay holds the whole body
/// before it calls the upstream, so the client's expectation is met, and some servers answer
/// any `expect` with 417.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "expect",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
    "content-type",
    "accept",
    "accept-encoding",
    "user-agent",
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "openai-organization",
    "openai-project",
    "anthropic-version",
];

const SDK_FINGERPRINT_PREFIX: &str = "x-stainless-";

/// An upstream's policy for outgoing headers, with the values that are the same on every
/// request (agent, credentials) built once per config rather than per request.
#[derive(Debug, Clone)]
pub struct OutgoingHeaders {
    /// The headers the relay itself sends on every request, `remove` and `set` already applied:
    /// one map for requests answered with JSON, one for streams. A request's headers start as a
    /// clone of one, which costs less than inserting them one by one.
    fixed_json: HeaderMap,
    fixed_stream: HeaderMap,
    /// Names a dialect's own headers may not replace: the configured `set` and the credentials.
    dialect_may_not_set: Vec<HeaderName>,
    keep_sdk_headers: bool,
    remove: Vec<Glob>,
}

impl OutgoingHeaders {
    /// The policy of `upstream`.
    pub fn new(upstream: &UpstreamParams) -> Self {
        let user_agent = HeaderValue::try_from(upstream.user_agent.as_str()).ok();
        let auth = upstream.auth_header.clone();
        let remove = upstream.headers_remove.clone();
        let fixed = |accept: HeaderValue| {
            // A clone keeps the index's room, so the client's headers, `host` and hyper's
            // `content-length` are added without a rehash; its list of entries is cloned to its
            // length, and grows once when the first of them is appended.
            let mut headers = HeaderMap::with_capacity(16);
            headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
            headers.insert(header::ACCEPT, accept);
            if let Some(agent) = &user_agent {
                headers.insert(header::USER_AGENT, agent.clone());
            }
            if let Some((name, value)) = &auth {
                headers.insert(name.clone(), value.clone());
            }
            let doomed: Vec<HeaderName> = headers.keys().filter(|name| removed(&remove, name)).cloned().collect();
            for name in doomed {
                headers.remove(name);
            }
            for (name, value) in &upstream.headers_set {
                headers.insert(name.clone(), value.clone());
            }
            headers
        };
        let mut dialect_may_not_set: Vec<HeaderName> =
            upstream.headers_set.iter().map(|(name, _)| name.clone()).collect();
        dialect_may_not_set.extend(auth.as_ref().map(|(name, _)| name.clone()));
        OutgoingHeaders {
            fixed_json: fixed(APPLICATION_JSON),
            fixed_stream: fixed(TEXT_EVENT_STREAM),
            dialect_may_not_set,
            keep_sdk_headers: upstream.keep_sdk_headers,
            remove,
        }
    }

    /// The headers for a request to the upstream, from the client's. What wins when two set
    /// the same name: the configured `set`, then the credentials, the dialect's own headers, the
    /// relay's agent and content headers, and last the client's; `remove` applies to all but
    /// `set`.
    pub fn to_upstream(
        &self,
        client: &HeaderMap,
        dialect_headers: &[(HeaderName, HeaderValue)],
        stream: bool,
    ) -> HeaderMap {
        let fixed = if stream { &self.fixed_stream } else { &self.fixed_json };
        let mut headers = fixed.clone();
        // What the client's `Connection` names is hop-by-hop too (RFC 9110 §7.6.1). Once
        // `Connection` is dropped, nothing further on (hyper's HTTP/2 client included) can tell.
        let connection = client.get_all(header::CONNECTION);
        for (name, value) in client {
            let name_str = name.as_str();
            if NOT_FORWARDED.contains(&name_str) {
                continue;
            }
            if connection.iter().any(|listed| {
                wire::tokens(listed.as_bytes()).any(|token| token.eq_ignore_ascii_case(name_str.as_bytes()))
            }) {
                continue;
            }
            if !self.keep_sdk_headers && name_str.starts_with(SDK_FINGERPRINT_PREFIX) {
                continue;
            }
            if removed(&self.remove, name) || fixed.contains_key(name) {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        for (name, value) in dialect_headers {
            if !removed(&self.remove, name) && !self.dialect_may_not_set.contains(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        headers
    }
}

fn removed(remove: &[Glob], name: &HeaderName) -> bool {
    remove.iter().any(|glob| glob.matches(name.as_str()))
}

/// Upstream response headers that pass to the client, and the upstream's own id for the request
/// (`x-request-id`, else `request-id`) as `x-upstream-request-id`. One pass over the upstream's
/// headers: this runs on every response.
pub fn to_client(upstream: &HeaderMap, into: &mut HeaderMap) {
    let mut upstream_id = None;
    let mut from_x_request_id = false;
    for (name, value) in upstream {
        let name_str = name.as_str();
        if name_str.starts_with("x-ratelimit-")
            || name_str == "retry-after"
            || name_str == "retry-after-ms"
            || name_str == "openai-processing-ms"
        {
            into.append(name.clone(), value.clone());
        } else if name_str == "x-request-id" && !from_x_request_id {
            upstream_id = Some(value);
            from_x_request_id = true;
        } else if name_str == "request-id" && upstream_id.is_none() {
            upstream_id = Some(value);
        }
    }
    if let Some(id) = upstream_id {
        into.insert(UPSTREAM_REQUEST_ID, id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn upstream(extra: &str) -> UpstreamParams {
        let source = format!(
            "[upstreams.up]\ndialect = \"openai-completions\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key = \"upstream-key\"\n{extra}"
        );
        Config::from_source(&source, None, &|_| None).unwrap().upstreams.remove("up").unwrap()
    }

    fn client_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer client-key"));
        headers.insert("user-agent", HeaderValue::from_static("OpenAI/JS 4.0"));
        headers.insert("x-stainless-os", HeaderValue::from_static("Linux"));
        headers.insert("connection", HeaderValue::from_static("keep-alive, X-Hop"));
        headers.insert("x-hop", HeaderValue::from_static("for-the-relay-only"));
        headers.insert("x-request-id", HeaderValue::from_static("req-1"));
        headers.insert("x-custom", HeaderValue::from_static("kept"));
        headers.insert("expect", HeaderValue::from_static("100-continue"));
        headers
    }

    #[test]
    fn client_credentials_fingerprints_and_hop_by_hop_are_dropped() {
        let headers = OutgoingHeaders::new(&upstream("")).to_upstream(&client_headers(), &[], false);
        assert_eq!(headers["authorization"], "Bearer upstream-key");
        assert_eq!(headers["user-agent"], concat!("switchyard/", env!("CARGO_PKG_VERSION")));
        assert!(headers.get("x-stainless-os").is_none());
        assert!(headers.get("connection").is_none());
        assert!(headers.get("x-hop").is_none(), "named by the client's Connection");
        assert!(headers.get("expect").is_none(), "met by the relay, which has the whole body");
        assert_eq!(headers["x-custom"], "kept");
        assert_eq!(headers["x-request-id"], "req-1");
    }

    #[test]
    fn configured_agent_set_and_remove_apply() {
        let params = upstream(
            "user_agent = \"curl/8.5.0\"\nheaders.set = { \"x-team\" = \"blue\" }\nheaders.remove = [\"x-cus*\"]\n",
        );
        let headers = OutgoingHeaders::new(&params).to_upstream(&client_headers(), &[], true);
        assert_eq!(headers["user-agent"], "curl/8.5.0");
        assert_eq!(headers["x-team"], "blue");
        assert!(headers.get("x-custom").is_none());
        assert_eq!(headers["accept"], "text/event-stream");
    }

    #[test]
    fn set_beats_credentials_beat_the_dialect_beats_the_relay_and_the_client() {
        let params =
            upstream("headers.set = { \"x-team\" = \"blue\" }\nheaders.remove = [\"x-drop*\", \"x-custom\"]\n");
        let dialect = [
            (HeaderName::from_static("x-team"), HeaderValue::from_static("dialect")),
            (header::AUTHORIZATION, HeaderValue::from_static("Bearer dialect")),
            (header::ACCEPT, HeaderValue::from_static("application/x-ndjson")),
            (HeaderName::from_static("x-request-id"), HeaderValue::from_static("dialect-id")),
            (HeaderName::from_static("x-dropped"), HeaderValue::from_static("dialect")),
        ];
        let mut client = client_headers();
        client.insert("x-team", HeaderValue::from_static("client"));
        let headers = OutgoingHeaders::new(&params).to_upstream(&client, &dialect, false);
        assert_eq!(headers.get_all("x-team").iter().collect::<Vec<_>>(), ["blue"]);
        assert_eq!(headers["authorization"], "Bearer upstream-key");
        assert_eq!(headers["accept"], "application/x-ndjson");
        assert_eq!(headers.get_all("x-request-id").iter().collect::<Vec<_>>(), ["dialect-id"]);
        assert!(headers.get("x-dropped").is_none());
        assert!(headers.get("x-custom").is_none());
        assert_eq!(headers["content-type"], "application/json");
    }

    #[test]
    fn a_removed_agent_is_not_sent_at_all() {
        let params = upstream("headers.remove = [\"user-*\"]\n");
        let headers = OutgoingHeaders::new(&params).to_upstream(&client_headers(), &[], false);
        assert!(headers.get("user-agent").is_none());
        assert_eq!(headers["authorization"], "Bearer upstream-key");
    }

    #[test]
    fn only_meaningful_headers_reach_the_client() {
        let mut upstream = HeaderMap::new();
        upstream.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("9"));
        upstream.insert("set-cookie", HeaderValue::from_static("a=b"));
        upstream.insert("x-request-id", HeaderValue::from_static("up-1"));
        let mut client = HeaderMap::new();
        to_client(&upstream, &mut client);
        assert_eq!(client["x-ratelimit-remaining-requests"], "9");
        assert_eq!(client["x-upstream-request-id"], "up-1");
        assert!(client.get("set-cookie").is_none());
    }

    #[test]
    fn the_upstream_request_id_prefers_x_request_id_in_either_order() {
        for order in [["request-id", "x-request-id"], ["x-request-id", "request-id"]] {
            let mut upstream = HeaderMap::new();
            for name in order {
                let value = if name == "x-request-id" { "x-1" } else { "plain-1" };
                upstream.insert(name, HeaderValue::from_static(value));
            }
            upstream.append("x-request-id", HeaderValue::from_static("x-2"));
            let mut client = HeaderMap::new();
            to_client(&upstream, &mut client);
            assert_eq!(client["x-upstream-request-id"], "x-1", "{order:?}");
        }
        let mut upstream = HeaderMap::new();
        upstream.insert("request-id", HeaderValue::from_static("plain-1"));
        let mut client = HeaderMap::new();
        to_client(&upstream, &mut client);
        assert_eq!(client["x-upstream-request-id"], "plain-1");
        assert_eq!(client.len(), 1);
    }
}
