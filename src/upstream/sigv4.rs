//! AWS Signature Version 4 for upstreams that need it (Bedrock), done by the `aws-sigv4` crate
//! that the AWS SDKs use: the relay only adapts its request and credentials.
//!
//! Signing must be the last change to a request: every header present is signed (apart from the
//! few SigV4 itself excludes, such as `user-agent`), so a header added or changed afterwards
//! makes AWS answer 403 `SignatureDoesNotMatch`. The request needs a host: an absolute URI or a
//! `host` header. Paths are signed with SigV4's default double percent-encoding, which is what
//! Bedrock expects for model ids such as `us.amazon.nova-micro-v1%3A0`.

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign as sign_request, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;

use crate::error::BoxError;

/// Static AWS credentials. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Present for temporary credentials (STS, SSO, instance roles).
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Signs `request` in place for `service` in `region` at `time`: adds `x-amz-date`,
/// `authorization` and, for temporary credentials, `x-amz-security-token`.
pub fn sign(
    request: &mut http::Request<Bytes>,
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), BoxError> {
    if request.uri().host().is_none() && !request.headers().contains_key(http::header::HOST) {
        return Err("cannot sign a request without a host (absolute URI or host header)".into());
    }
    let identity: Identity = Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
        credentials.session_token.clone(),
        None,
        "switchyard-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
        .collect::<Result<Vec<_>, http::header::ToStrError>>()?;
    let uri = request.uri().to_string();
    let signable =
        SignableRequest::new(request.method().as_str(), uri, headers.into_iter(), SignableBody::Bytes(request.body()))?;
    let (instructions, _signature) = sign_request(signable, &params)?.into_parts();
    instructions.apply_to_request_http1x(request);
    // Keep the signature and the session token out of debug output and logs.
    for name in [http::header::AUTHORIZATION.as_str(), "x-amz-security-token"] {
        if let Some(value) = request.headers_mut().get_mut(name) {
            value.set_sensitive(true);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    // The AWS SigV4 test suite (aws-signing-test-suite/v4, shipped with aws-sigv4): credentials,
    // region, service and time shared by every vector.
    const KEY_ID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    // 2015-08-30T12:36:00Z
    const VECTOR_TIME: u64 = 1_440_938_160;

    fn vector_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(VECTOR_TIME)
    }

    fn credentials(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: KEY_ID.into(),
            secret_access_key: SECRET.into(),
            session_token: token.map(str::to_owned),
        }
    }

    fn request(method: &str, uri: &str, body: &'static [u8]) -> http::Request<Bytes> {
        http::Request::builder().method(method).uri(uri).body(Bytes::from_static(body)).unwrap()
    }

    fn header(request: &http::Request<Bytes>, name: &str) -> String {
        request.headers()[name].to_str().unwrap().to_owned()
    }

    #[test]
    fn matches_the_post_vanilla_test_vector() {
        let mut request = request("POST", "https://example.amazonaws.com/", b"");
        sign(&mut request, &credentials(None), "us-east-1", "service", vector_time()).unwrap();
        assert_eq!(header(&request, "x-amz-date"), "20150830T123600Z");
        assert_eq!(
            header(&request, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        assert!(request.headers().get("x-amz-security-token").is_none());
    }

    #[test]
    fn matches_the_get_vanilla_with_session_token_test_vector() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let mut request = request("GET", "https://example.amazonaws.com/", b"");
        sign(&mut request, &credentials(Some(token)), "us-east-1", "service", vector_time()).unwrap();
        assert_eq!(header(&request, "x-amz-security-token"), token);
        assert_eq!(
            header(&request, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
        );
        assert!(request.headers()["authorization"].is_sensitive());
        assert!(request.headers()["x-amz-security-token"].is_sensitive());
    }

    #[test]
    fn a_bedrock_request_signs_its_headers_and_body_deterministically() {
        let build = |body: &'static [u8]| {
            let mut request = http::Request::builder()
                .method("POST")
                .uri("https://bedrock-runtime.us-east-1.amazonaws.com/model/us.amazon.nova-micro-v1%3A0/converse")
                .header("content-type", "application/json")
                .body(Bytes::from_static(body))
                .unwrap();
            sign(&mut request, &credentials(None), "us-east-1", "bedrock", vector_time()).unwrap();
            header(&request, "authorization")
        };
        let first = build(br#"{"messages":[]}"#);
        assert!(first.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature="
        ));
        let signature = first.rsplit("Signature=").next().unwrap();
        assert_eq!(signature.len(), 64);
        assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(build(br#"{"messages":[]}"#), first);
        assert_ne!(build(br#"{"messages":[1]}"#), first, "the body is signed");
    }

    #[test]
    fn a_request_without_a_host_is_refused_not_a_panic() {
        let mut request = request("POST", "/model/x/converse", b"{}");
        assert!(sign(&mut request, &credentials(None), "us-east-1", "bedrock", vector_time()).is_err());
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let shown = format!("{:?}", credentials(Some("token-value")));
        assert!(!shown.contains(KEY_ID) && !shown.contains(SECRET) && !shown.contains("token-value"));
        assert!(shown.contains("<redacted>"));
    }
}
