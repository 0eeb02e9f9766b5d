//! Client authentication for `/v1/*`: `Authorization: Bearer <key>` or `x-api-key`, compared in
//! constant time against the SHA-256 of each configured key. With no keys configured, auth is off.

use std::future::Ready;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{header, Request, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::body::Body;
use crate::config::{Glob, KeyParams};
use crate::error::{ErrorCode, RelayError};
use crate::record::RequestRecord;

/// The keys in force, swapped as a whole on reload.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<KeyParams>,
    required: bool,
}

impl Keyring {
    /// A keyring; `required` stays true when keys were configured but none was usable.
    pub fn new(keys: Vec<KeyParams>, required: bool) -> Self {
        Keyring { required: required || !keys.is_empty(), keys }
    }

    /// Finds the key a client presented. Every configured key is compared, in constant time, so
    /// timing reveals neither which key matched nor how much of a guess was right.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Principal, RelayError> {
        if !self.required {
            return Ok(Principal::anonymous());
        }
        let Some(presented) = presented else {
            return Err(RelayError::new(
                ErrorCode::InvalidApiKey,
                "missing API key: send `Authorization: Bearer <key>`",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.sha256.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        match found {
            Some(key) => Ok(Principal { key_name: Some(key.name.clone()), models: Some(key.models.clone()) }),
            None => Err(RelayError::new(ErrorCode::InvalidApiKey, "invalid API key")),
        }
    }
}

/// Who is calling, inserted into the request's extensions.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's name; `None` when auth is off.
    pub key_name: Option<String>,
    /// Model patterns the key may use; `None` when auth is off.
    pub models: Option<Vec<Glob>>,
}

impl Principal {
    fn anonymous() -> Self {
        Principal { key_name: None, models: None }
    }

    /// Whether this caller may use a model (checked against the public name requested).
    pub fn may_use(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|patterns| patterns.iter().any(|p| p.matches(model)))
    }
}

/// Where the layer reads the current keys from (the live config, swapped on reload).
pub trait KeySource: Clone + Send + Sync + 'static {
    /// The keys in force now.
    fn keyring(&self) -> Arc<Keyring>;
}

/// Adds [`Auth`].
#[derive(Debug, Clone)]
pub struct AuthLayer<K> {
    keys: K,
}

impl<K> AuthLayer<K> {
    /// Checks keys from `keys`.
    pub fn new(keys: K) -> Self {
        AuthLayer { keys }
    }
}

impl<S, K: Clone> Layer<S> for AuthLayer<K> {
    type Service = Auth<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth { inner, keys: self.keys.clone() }
    }
}

/// Rejects `/v1/*` requests without a valid key; inserts the [`Principal`] otherwise.
#[derive(Debug, Clone)]
pub struct Auth<S, K> {
    inner: S,
    keys: K,
}

/// The key a request presents. The scheme is matched in any case (RFC 9110 §11.1); an empty key
/// is no key, so that no configuration can let one in.
fn presented_key<B>(request: &Request<B>) -> Option<&str> {
    let headers = request.headers();
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7).filter(|scheme| scheme.eq_ignore_ascii_case("bearer ")).map(|_| &v[7..]))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

// === impl Auth ===

impl<S, K, B> Service<Request<B>> for Auth<S, K>
where
    S: Service<Request<B>, Response = Response<Body>, Error = RelayError>,
    S::Future: Send + 'static,
    K: KeySource,
{
    type Response = Response<Body>;
    type Error = RelayError;
    type Future = Either<Ready<Result<Response<Body>, RelayError>>, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let keyring = self.keys.keyring();
        // With auth off there is no key to look for, nobody to name and nothing to restrict: no
        // principal is the same as the anonymous one, and costs no extension.
        if keyring.required && request.uri().path().starts_with("/v1/") {
            match keyring.authenticate(presented_key(&request)) {
                Ok(principal) => {
                    if let Some(record) = request.extensions().get::<Arc<RequestRecord>>() {
                        record.set_key(principal.key_name.as_deref());
                    }
                    request.extensions_mut().insert(principal);
                }
                Err(error) => return Either::Left(std::future::ready(Err(error))),
            }
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(
            vec![KeyParams {
                name: "team".into(),
                sha256: Sha256::digest(b"secret").into(),
                models: vec![Glob::new("mock*")],
            }],
            true,
        )
    }

    #[test]
    fn the_right_key_names_its_principal() {
        let principal = keyring().authenticate(Some("secret")).unwrap();
        assert_eq!(principal.key_name.as_deref(), Some("team"));
        assert!(principal.may_use("mock"));
        assert!(!principal.may_use("openai/gpt-4o"));
    }

    #[test]
    fn wrong_or_missing_keys_are_401() {
        for presented in [Some("nope"), None] {
            let error = keyring().authenticate(presented).unwrap_err();
            assert_eq!((error.code, error.status), (ErrorCode::InvalidApiKey, 401));
            assert!(!error.message.contains("secret"));
        }
    }

    #[derive(Clone)]
    struct Fixed(Arc<Keyring>);

    impl KeySource for Fixed {
        fn keyring(&self) -> Arc<Keyring> {
            self.0.clone()
        }
    }

    /// What the service under the layer saw: the principal's key name, if one was inserted.
    async fn principal_seen(keys: Keyring, presented: Option<&str>) -> Result<Option<Option<String>>, RelayError> {
        use tower::ServiceExt;
        let inner = tower::service_fn(|request: Request<()>| async move {
            let seen = request.extensions().get::<Principal>().map(|p| p.key_name.clone());
            let mut response = Response::new(Body::default());
            response.extensions_mut().insert(seen);
            Ok::<_, RelayError>(response)
        });
        let mut request = Request::builder().uri("/v1/chat/completions");
        if let Some(key) = presented {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = AuthLayer::new(Fixed(Arc::new(keys))).layer(inner).oneshot(request.body(()).unwrap()).await?;
        Ok(response.extensions().get::<Option<Option<String>>>().cloned().flatten())
    }

    fn presented(name: &str, value: &str) -> Option<String> {
        let request = Request::builder().header(name, value).body(()).unwrap();
        presented_key(&request).map(str::to_owned)
    }

    #[test]
    fn the_scheme_is_read_in_any_case_and_an_empty_key_is_none() {
        for value in ["Bearer k1", "bearer k1", "BEARER k1", "bEaReR  k1 "] {
            assert_eq!(presented("authorization", value).as_deref(), Some("k1"), "{value}");
        }
        assert_eq!(presented("x-api-key", " k1").as_deref(), Some("k1"));
        for (name, value) in
            [("x-api-key", ""), ("x-api-key", "  "), ("authorization", "Bearer "), ("authorization", "Basic a")]
        {
            assert_eq!(presented(name, value), None, "{name}: {value:?}");
        }
    }

    #[tokio::test]
    async fn the_layer_names_a_keyed_caller_and_adds_nothing_when_auth_is_off() {
        assert_eq!(principal_seen(keyring(), Some("secret")).await.unwrap(), Some(Some("team".into())));
        assert_eq!(principal_seen(Keyring::default(), None).await.unwrap(), None);
        let rejected = principal_seen(keyring(), Some("nope")).await.unwrap_err();
        assert_eq!(rejected.code, ErrorCode::InvalidApiKey);
    }

    #[test]
    fn configured_but_unusable_keys_fail_closed() {
        assert!(Keyring::new(Vec::new(), true).authenticate(Some("x")).is_err());
        assert!(Keyring::new(Vec::new(), false).authenticate(None).is_ok());
    }
}
