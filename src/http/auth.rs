//! Who may use the API: bearer tokens with a scope, each text conversation's own secret handle,
//! and a rate limit on turns per token (or per address when no token is needed).
//!
//! With no token configured the gateway is in development mode: it serves loopback only (the
//! `serve` command refuses any other address) and every request is trusted as admin. With tokens,
//! every `/v1` route needs one: `admin` for the agent registry, logs, cases and any conversation;
//! `client` to open a conversation and talk in it, proving with the conversation's handle (given
//! once, when it is created) that it is its own.

use super::ApiError;
use crate::config::{ApiConfig, ConfigError};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The header a client proves a conversation is its own with.
pub const HANDLE_HEADER: &str = "x-conversation-handle";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Client,
}

/// The authenticated side of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub scope: Scope,
    /// What the rate limit counts against: a token's digest, or "open" in development mode.
    pub key: String,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.scope == Scope::Admin
    }
}

pub struct ApiAuth {
    tokens: Vec<([u8; 32], Scope)>,
    limiter: RateLimiter,
    /// Per client address; `None` when configured off.
    per_ip: Option<RateLimiter>,
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl ApiAuth {
    /// The tokens of `cfg` plus those in the environment.
    pub fn from_config(cfg: &ApiConfig) -> Result<ApiAuth, ConfigError> {
        let cfg = cfg.clone().with_env();
        cfg.validate()?;
        let tokens = cfg
            .admin_tokens
            .iter()
            .map(|t| (digest(t.trim()), Scope::Admin))
            .chain(
                cfg.client_tokens
                    .iter()
                    .map(|t| (digest(t.trim()), Scope::Client)),
            )
            .collect();
        Ok(ApiAuth {
            tokens,
            limiter: RateLimiter::new(cfg.turns_per_minute),
            per_ip: (cfg.turns_per_minute_per_ip > 0)
                .then(|| RateLimiter::new(cfg.turns_per_minute_per_ip)),
        })
    }

    /// Development mode: no token configured, every request is trusted (loopback only).
    pub fn open() -> ApiAuth {
        ApiAuth {
            tokens: vec![],
            limiter: RateLimiter::new(ApiConfig::default().turns_per_minute),
            per_ip: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The principal behind `Authorization: Bearer …` (or `access_token`, for WebSockets a
    /// browser opens and cannot set headers on). 401 without a known token.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        access_token: Option<&str>,
    ) -> Result<Principal, ApiError> {
        if self.is_open() {
            return Ok(Principal {
                scope: Scope::Admin,
                key: "open".into(),
            });
        }
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .or(access_token)
            .filter(|t| !t.is_empty());
        let Some(token) = bearer else {
            return Err(unauthorized("this route needs a bearer token"));
        };
        let d = digest(token);
        // Every stored digest is compared, in constant time, whichever matches.
        let mut found = None;
        for (stored, scope) in &self.tokens {
            if bool::from(stored.ct_eq(&d)) {
                found = Some(*scope);
            }
        }
        match found {
            Some(scope) => Ok(Principal {
                scope,
                key: hex::encode(&d[..8]),
            }),
            None => Err(unauthorized("the bearer token is not valid")),
        }
    }

    /// Authenticates and requires the admin scope (403 for a client token).
    pub fn admin(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let p = self.authenticate(headers, None)?;
        if !p.is_admin() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this route needs an admin token",
            ));
        }
        Ok(p)
    }

    /// Counts one turn against the principal's budget and its address's; 429 when either is
    /// spent. Development mode (loopback only, every request trusted) has no limit.
    pub fn turn(&self, who: &Principal, peer: Option<std::net::IpAddr>) -> Result<(), ApiError> {
        let now = std::time::Instant::now();
        let by_address = || match (&self.per_ip, peer) {
            (Some(l), Some(ip)) => l.allow(&ip.to_string(), now),
            _ => true,
        };
        if self.is_open() || (self.limiter.allow(&who.key, now) && by_address()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many turns; slow down",
            ))
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message).with_bearer_challenge()
}

/// A new conversation handle: 256 random bits, hex. Only its digest is kept.
pub fn new_handle() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The digest a conversation keeps of its handle.
pub fn handle_digest(handle: &str) -> String {
    hex::encode(digest(handle))
}

/// Whether `presented` is the handle whose digest is `stored` (constant time).
pub fn handle_matches(stored: &str, presented: Option<&str>) -> bool {
    match presented {
        Some(h) if !stored.is_empty() => {
            bool::from(handle_digest(h.trim()).as_bytes().ct_eq(stored.as_bytes()))
        }
        _ => false,
    }
}

/// A token bucket per key: `per_minute` turns a minute, with a burst of a fifth of a minute's.
/// Buckets that have refilled are forgotten, so the map stays as small as the active keys.
struct RateLimiter {
    per_minute: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

/// More keys than this and full buckets are swept before a new one is added.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    fn new(per_minute: u32) -> RateLimiter {
        let per_minute = f64::from(per_minute.max(1));
        RateLimiter {
            per_minute,
            burst: (per_minute / 5.0).max(5.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn allow(&self, key: &str, now: std::time::Instant) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let rate = self.per_minute / 60.0;
        let burst = self.burst;
        let level = |(tokens, at): (f64, std::time::Instant)| {
            (tokens + now.saturating_duration_since(at).as_secs_f64() * rate).min(burst)
        };
        if b.len() >= MAX_BUCKETS && !b.contains_key(key) {
            b.retain(|_, v| level(*v) < burst);
            if b.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let entry = b.entry(key.to_string()).or_insert((burst, now));
        let tokens = level(*entry);
        if tokens >= 1.0 {
            *entry = (tokens - 1.0, now);
            true
        } else {
            *entry = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> ApiAuth {
        ApiAuth::from_config(&ApiConfig {
            admin_tokens: vec!["admin-token-0123456789".into()],
            client_tokens: vec!["client-token-0123456789".into()],
            ..ApiConfig::default()
        })
        .unwrap()
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        h
    }

    #[test]
    fn tokens_have_scopes_and_unknown_ones_are_401() {
        let a = auth();
        assert!(!a.is_open());
        let admin = a
            .authenticate(&bearer("admin-token-0123456789"), None)
            .unwrap();
        assert_eq!(admin.scope, Scope::Admin);
        let client = a
            .authenticate(&bearer("client-token-0123456789"), None)
            .unwrap();
        assert_eq!(client.scope, Scope::Client);
        assert_ne!(admin.key, client.key);
        for h in [bearer("nope-nope-nope-nope"), HeaderMap::new(), bearer("")] {
            assert_eq!(
                a.authenticate(&h, None).unwrap_err().status,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            a.admin(&bearer("client-token-0123456789"))
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        // A browser's WebSocket carries the token in the URL.
        let q = a
            .authenticate(&HeaderMap::new(), Some("client-token-0123456789"))
            .unwrap();
        assert_eq!(q.scope, Scope::Client);
    }

    #[test]
    fn short_or_shared_tokens_are_refused() {
        for cfg in [
            ApiConfig {
                admin_tokens: vec!["short".into()],
                ..ApiConfig::default()
            },
            ApiConfig {
                admin_tokens: vec!["same-token-0123456789".into()],
                client_tokens: vec!["same-token-0123456789".into()],
                ..ApiConfig::default()
            },
        ] {
            assert!(ApiAuth::from_config(&cfg).is_err());
        }
    }

    #[test]
    fn open_mode_trusts_everyone_as_admin() {
        let a = ApiAuth::open();
        assert!(a.is_open());
        assert!(a.admin(&HeaderMap::new()).unwrap().is_admin());
    }

    #[test]
    fn handles_match_only_themselves() {
        let h = new_handle();
        assert_eq!(h.len(), 64);
        let d = handle_digest(&h);
        assert!(handle_matches(&d, Some(&h)));
        assert!(!handle_matches(&d, Some(&new_handle())));
        assert!(!handle_matches(&d, None));
        assert!(!handle_matches("", Some(&h)));
    }

    #[test]
    fn rate_limit_allows_a_burst_then_refills() {
        let r = RateLimiter::new(60); // 1 a second, burst 12
        let t0 = std::time::Instant::now();
        let allowed = (0..20).filter(|_| r.allow("k", t0)).count();
        assert_eq!(allowed, 12);
        assert!(r.allow("other", t0), "keys are counted apart");
        assert!(!r.allow("k", t0 + std::time::Duration::from_millis(500)));
        assert!(r.allow("k", t0 + std::time::Duration::from_millis(1600)));
    }
}
