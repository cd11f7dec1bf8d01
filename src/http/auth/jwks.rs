//! The identity provider's signing keys: a JWKS (RFC 7517) fetched over HTTP and cached by
//! `kid`, for tokens signed with RS256, ES256 or EdDSA (DESIGN §10).
//!
//! Guarantees:
//! * **One algorithm per key, decided by the key.** RSA keys verify RS256 only, EC P-256 keys
//!   ES256 only, OKP Ed25519 keys EdDSA only. A key whose `alg` names another algorithm, a
//!   symmetric (`oct`) key, an encryption key (`use: enc`, Keycloak publishes one), an RSA key
//!   under 2048 bits or a key without `kid` is left out of the cache (counted as skipped):
//!   the token header's `alg` only has to match the key's, it never chooses it.
//! * **Bounded fetches.** Each fetch has a connect and a total timeout ([`FETCH_TIMEOUT`]),
//!   reads at most [`MAX_JWKS_BYTES`] and keeps at most [`MAX_KEYS`] keys; only `https://`
//!   URLs, or `http://` to a loopback address, are accepted: keys fetched in the clear could
//!   be swapped by anyone on the path.
//! * **A failed fetch changes nothing**: the keys cached before stay (an outage of the provider
//!   does not log everyone out). A successful fetch replaces the whole set, so a key the
//!   provider withdrew is no longer trusted after the next refresh.
//! * **Unknown `kid`s cannot make the service hammer the provider**: a token naming a key not
//!   in the cache causes at most one fetch per `min_refresh_interval` for the whole process;
//!   fetches are single-flight (concurrent requests with unknown kids share one), and a
//!   request that finds the cache refreshed while it waited uses it without fetching again.
//! * **Periodic refresh**: [`Jwks::run_refresher`] (a supervised worker) fetches every
//!   `refresh_interval`; its failures are logged and counted, never fatal: the next tick
//!   tries again, and unknown kids refresh on demand meanwhile.
//!
//! Metrics: `jwks_refreshes_total{reason, outcome}`, `jwks_keys` (keys cached),
//! `jwks_keys_skipped` (keys of the last good fetch left out), `jwks_last_success_timestamp_seconds`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use prometheus::{IntCounterVec, IntGauge, Registry};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::error::AuthError;
use crate::metric;

/// Longest a JWKS fetch may take, connecting included: a slow provider must not hold the
/// requests waiting for an unknown kid for long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document read, in bytes. Real ones are a few KiB (Keycloak: 2 to 4 keys).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one document; the rest are skipped.
pub const MAX_KEYS: usize = 64;
/// Shortest RSA modulus accepted, in bytes (2048 bits, NIST SP 800-57).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Why a JWKS fetch failed. The cached keys stay as they were.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting, sending or reading failed, or the provider answered with an error status.
    #[error("fetching the JWKS failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The document is larger than [`MAX_JWKS_BYTES`].
    #[error("the JWKS document is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// The document is not a JSON object with a `keys` array.
    #[error("the JWKS document is not a JSON key set: {0}")]
    NotAKeySet(#[from] serde_json::Error),
    /// Not one key of the document can verify tokens.
    #[error("the JWKS has no usable signing key ({skipped} skipped: RS256, ES256 and EdDSA keys with a kid are needed)")]
    NoUsableKey {
        /// Keys left out.
        skipped: usize,
    },
}

/// A cached key and the one algorithm it verifies.
#[derive(Clone)]
pub(super) struct PinnedKey {
    pub(super) key: DecodingKey,
    pub(super) algorithm: Algorithm,
}

impl PinnedKey {
    /// The JOSE name of the key's algorithm, as a token header writes it.
    pub(super) fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            // `parse` pins no other algorithm
            _ => "unsupported",
        }
    }
}

/// How often the key set is fetched.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Periodic refresh interval.
    pub refresh_interval: Duration,
    /// Shortest time between two fetches caused by unknown kids.
    pub min_refresh_interval: Duration,
}

/// The metrics the key cache moves.
#[derive(Debug, Clone)]
pub struct JwksMetrics {
    /// Fetches by reason (`startup`, `periodic`, `unknown_kid`) and outcome (`ok`, `error`,
    /// `rate_limited`: an unknown kid that did not fetch).
    pub refreshes: IntCounterVec,
    /// Keys in the cache.
    pub keys: IntGauge,
    /// Keys of the last good fetch that were left out.
    pub skipped: IntGauge,
    /// When the last fetch succeeded (seconds since the Unix epoch).
    pub last_success: IntGauge,
}

impl JwksMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            refreshes: metric::counters(
                registry,
                "jwks_refreshes_total",
                "JWKS fetches by reason and outcome (rate_limited: an unknown kid that did not fetch)",
                &["reason", "outcome"],
            )?,
            keys: metric::gauge(registry, "jwks_keys", "Signing keys cached from the JWKS")?,
            skipped: metric::gauge(
                registry,
                "jwks_keys_skipped",
                "Keys of the last good JWKS fetch left out (unsupported, encryption, too weak, no kid)",
            )?,
            last_success: metric::gauge(
                registry,
                "jwks_last_success_timestamp_seconds",
                "When the JWKS was last fetched successfully",
            )?,
        })
    }
}

/// The key cache. Cheap to clone; every clone shares the cache.
#[derive(Clone)]
pub struct Jwks {
    inner: Arc<Inner>,
}

struct Inner {
    url: reqwest::Url,
    client: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, Arc<PinnedKey>>>>,
    /// Held while fetching (single flight); holds when the last fetch started.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    policy: RefreshPolicy,
    metrics: JwksMetrics,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.inner.url.as_str())
            .field("keys", &self.snapshot().len())
            .field("policy", &self.inner.policy)
            .finish()
    }
}

impl Jwks {
    /// A cache of the key set at `url`, empty until [`Jwks::refresh`] runs. Refuses a URL
    /// that is not `https://` (or `http://` to a loopback address).
    pub fn new(url: &str, policy: RefreshPolicy, metrics: JwksMetrics) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(url).context("APP__AUTH__JWKS_URL is not a URL")?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        anyhow::ensure!(
            url.scheme() == "https" || (url.scheme() == "http" && loopback),
            "APP__AUTH__JWKS_URL must be https:// (http:// only to a loopback address): keys fetched in the clear could be swapped on the way"
        );
        let client = reqwest::Client::builder()
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            // a redirect could lead to plain http: the JWKS URL is fetched as configured, or not
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("order-service/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the JWKS HTTP client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                url,
                client,
                keys: RwLock::default(),
                last_fetch: tokio::sync::Mutex::new(None),
                policy,
                metrics,
            }),
        })
    }

    /// The key named `kid`, fetching the set again first when it is unknown and the last
    /// fetch is at least `min_refresh_interval` old.
    pub(super) async fn key(&self, kid: &str) -> Result<Arc<PinnedKey>, AuthError> {
        if let Some(key) = self.snapshot().get(kid) {
            return Ok(Arc::clone(key));
        }
        let mut last = self.inner.last_fetch.lock().await;
        // Another request may have refreshed the set while this one waited for the lock.
        if let Some(key) = self.snapshot().get(kid) {
            return Ok(Arc::clone(key));
        }
        if last.is_some_and(|at| at.elapsed() < self.inner.policy.min_refresh_interval) {
            self.count("unknown_kid", "rate_limited");
            return Err(AuthError::UnknownKey);
        }
        *last = Some(Instant::now());
        // The outcome is logged and counted inside; a failed fetch leaves the kid unknown.
        let _ = self.fetch_and_swap("unknown_kid").await;
        drop(last);
        self.snapshot()
            .get(kid)
            .cloned()
            .ok_or(AuthError::UnknownKey)
    }

    /// Fetches the set now (whatever the rate limit says) and caches it; `reason` labels the
    /// metrics (`startup`, `periodic`).
    pub async fn refresh(&self, reason: &'static str) -> Result<usize, FetchError> {
        let mut last = self.inner.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch_and_swap(reason).await
    }

    /// Refreshes the set every `refresh_interval` until `token` is cancelled. Never fails: a
    /// failed refresh keeps the cached keys, is logged and counted, and the next tick tries
    /// again.
    pub async fn run_refresher(self, token: CancellationToken) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                () = token.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.inner.policy.refresh_interval) => {}
            }
            let _ = self.refresh("periodic").await;
        }
    }

    /// Keys in the cache now.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether the cache holds no key.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    fn snapshot(&self) -> Arc<HashMap<String, Arc<PinnedKey>>> {
        // a poisoned lock still holds a whole map: it is only ever replaced in one assignment
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches, parses and swaps the set in; the caller holds `last_fetch`.
    async fn fetch_and_swap(&self, reason: &'static str) -> Result<usize, FetchError> {
        let span = tracing::info_span!("jwks_refresh", reason, url = %self.inner.url, keys = tracing::field::Empty);
        async {
            let fetched = self.fetch().await.and_then(|body| parse(&body));
            match fetched {
                Ok((keys, skipped)) => {
                    let n = keys.len();
                    *self
                        .inner
                        .keys
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
                    let metrics = &self.inner.metrics;
                    metrics.keys.set(i64::try_from(n).unwrap_or(i64::MAX));
                    metrics
                        .skipped
                        .set(i64::try_from(skipped).unwrap_or(i64::MAX));
                    metrics.last_success.set(
                        i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX),
                    );
                    self.count(reason, "ok");
                    tracing::Span::current().record("keys", n);
                    tracing::debug!(keys = n, skipped, "JWKS refreshed");
                    Ok(n)
                }
                Err(err) => {
                    self.count(reason, "error");
                    tracing::warn!(error = %err, "JWKS refresh failed; keeping the cached keys");
                    Err(err)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The document's bytes, at most [`MAX_JWKS_BYTES`].
    async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
        let mut response = self
            .inner
            .client
            .get(self.inner.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?
            .error_for_status()?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn count(&self, reason: &str, outcome: &str) {
        self.inner
            .metrics
            .refreshes
            .with_label_values(&[reason, outcome])
            .inc();
    }
}

/// The usable keys of a JWKS document, by kid, and how many were left out.
fn parse(body: &[u8]) -> Result<(HashMap<String, Arc<PinnedKey>>, usize), FetchError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }

    let document: Document = serde_json::from_slice(body)?;
    let mut keys = HashMap::new();
    let mut skipped = 0;
    for value in document.keys {
        // each key on its own: one odd entry (a new key type) must not cost the others
        let pinned = serde_json::from_value::<Jwk>(value)
            .map_err(|e| e.to_string())
            .and_then(|jwk| pin(&jwk));
        match pinned {
            Ok((kid, key)) if keys.len() < MAX_KEYS && !keys.contains_key(&kid) => {
                keys.insert(kid, Arc::new(key));
            }
            Ok((kid, _)) => {
                skipped += 1;
                tracing::debug!(kid, "JWKS key left out: duplicate kid or too many keys");
            }
            Err(why) => {
                skipped += 1;
                tracing::debug!(why, "JWKS key left out");
            }
        }
    }
    if keys.is_empty() {
        return Err(FetchError::NoUsableKey { skipped });
    }
    Ok((keys, skipped))
}

/// The kid of a signing key and the key pinned to its one algorithm, or why it is left out.
fn pin(jwk: &Jwk) -> Result<(String, PinnedKey), String> {
    let kid = jwk.common.key_id.clone().ok_or("the key has no kid")?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err(format!("key {kid} is an encryption key"));
    }
    let (algorithm, named) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(rsa.n.trim_end_matches('='))
                .map_err(|_| format!("key {kid} has a malformed modulus"))?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!("RSA key {kid} is shorter than 2048 bits"));
            }
            (Algorithm::RS256, KeyAlgorithm::RS256)
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        _ => {
            return Err(format!(
                "key {kid} is not an RSA, P-256 or Ed25519 public key"
            ))
        }
    };
    if let Some(alg) = jwk.common.key_algorithm {
        if alg != named {
            return Err(format!("key {kid} is for {alg:?}, not {named:?}"));
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
    Ok((kid, PinnedKey { key, algorithm }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn rsa_n(bytes: usize) -> String {
        let mut n = vec![0xc5_u8; bytes];
        n[bytes - 1] = 0x01;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n)
    }

    fn kids(doc: &serde_json::Value) -> (Vec<(String, Algorithm)>, usize) {
        let (keys, skipped) = parse(doc.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.into_iter().map(|(k, v)| (k, v.algorithm)).collect();
        kids.sort_by(|a, b| a.0.cmp(&b.0));
        (kids, skipped)
    }

    #[test]
    fn each_key_is_pinned_to_the_algorithm_of_its_type() {
        let doc = json!({"keys": [
            {"kid": "r", "kty": "RSA", "n": rsa_n(256), "e": "AQAB"},
            {"kid": "e", "kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "alg": "ES256"},
            {"kid": "o", "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});

        let (kids, skipped) = kids(&doc);

        assert_eq!(
            kids,
            vec![
                ("e".to_owned(), Algorithm::ES256),
                ("o".to_owned(), Algorithm::EdDSA),
                ("r".to_owned(), Algorithm::RS256)
            ]
        );
        assert_eq!(skipped, 0);
    }

    #[test]
    fn encryption_symmetric_weak_mislabelled_and_kidless_keys_are_left_out() {
        let doc = json!({"keys": [
            {"kid": "good", "kty": "RSA", "n": rsa_n(256), "e": "AQAB", "use": "sig"},
            {"kid": "enc", "kty": "RSA", "n": rsa_n(256), "e": "AQAB", "use": "enc", "alg": "RSA-OAEP"},
            {"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"},
            {"kid": "weak", "kty": "RSA", "n": rsa_n(128), "e": "AQAB"},
            {"kid": "pss", "kty": "RSA", "n": rsa_n(256), "e": "AQAB", "alg": "PS256"},
            {"kid": "p384", "kty": "EC", "crv": "P-384", "x": P256_X, "y": P256_Y},
            {"kty": "RSA", "n": rsa_n(256), "e": "AQAB"},
            {"kid": "odd", "kty": "future-kind"},
        ]});

        let (kids, skipped) = kids(&doc);

        assert_eq!(kids, vec![("good".to_owned(), Algorithm::RS256)]);
        assert_eq!(skipped, 7);
    }

    #[test]
    fn a_document_without_a_usable_key_is_an_error() {
        let doc = json!({"keys": [{"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"}]});

        assert!(matches!(
            parse(doc.to_string().as_bytes()),
            Err(FetchError::NoUsableKey { skipped: 1 })
        ));
        assert!(matches!(parse(b"<html>"), Err(FetchError::NotAKeySet(_))));
    }

    #[test]
    fn only_https_or_loopback_http_urls_are_accepted() {
        let policy = RefreshPolicy {
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
        };
        let metrics = || JwksMetrics::register(&Registry::new()).unwrap();

        for ok in [
            "https://idp.example/realms/shop/protocol/openid-connect/certs",
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]:9/jwks",
        ] {
            assert!(Jwks::new(ok, policy, metrics()).is_ok(), "{ok}");
        }
        for refused in [
            "http://idp.example/jwks",
            "ftp://127.0.0.1/jwks",
            "not a url",
        ] {
            assert!(Jwks::new(refused, policy, metrics()).is_err(), "{refused}");
        }
    }
}
