//! Per-call stream tokens for providers that do not sign their media WebSocket (Telnyx, Plivo,
//! Exotel, Vonage). The application that answers a call asks the gateway for a stream URL
//! (`POST /v1/stream-urls`, admin scope) and hands it to the provider; the URL's token names the
//! provider, expires within seconds to minutes, and opens one media socket only.
//!
//! The gateway also mints one itself when a provider's signed answer webhook arrives (Twilio,
//! Telnyx, Plivo, Vonage): that token carries the caller's number from the signed webhook, so the
//! call's identity comes from the provider's signature and not from what the media stream says.
//!
//! A token is `{expiry_ms}.{nonce}.{caller}.{mac}`: `caller` is the bound caller in unpadded
//! base64url (empty when none), `mac` is hex HMAC-SHA256 under the gateway's secret of
//! `provider|expiry_ms|nonce|caller`. Used nonces are remembered until they expire (bounded).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;

/// Longest lifetime a token may be given.
pub const MAX_TTL_MS: u64 = 10 * 60 * 1000;
/// Unexpired used tokens remembered at most (more: new tokens are refused until some expire).
const MAX_USED: usize = 100_000;
/// Longest caller identity a token carries (bytes); a longer one is not bound.
pub const MAX_CALLER_BYTES: usize = 64;

/// What a redeemed token grants: one media socket, and the caller it was minted for, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The caller from the provider's signed webhook (or the operator's request); `None` when the
    /// token names nobody (the stream's own parameters then say who calls).
    pub caller: Option<String>,
}

pub struct StreamTokens {
    secret: Vec<u8>,
    used: Mutex<HashMap<String, u64>>,
}

impl StreamTokens {
    /// Tokens signed with `secret` (the configured media token), or with a random secret of this
    /// process when none is configured (tokens then die with the process, which they outlive
    /// by minutes at most).
    pub fn new(secret: &str) -> StreamTokens {
        let secret = if secret.is_empty() {
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
        } else {
            format!("stream-token:{secret}")
        };
        StreamTokens {
            secret: secret.into_bytes(),
            used: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, provider: &str, expiry_ms: u64, nonce: &str, caller: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        mac.update(format!("{provider}|{expiry_ms}|{nonce}|{caller}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A token for one media socket of `provider`, valid until `now_ms + ttl_ms`, naming `caller`
    /// (empty: nobody; longer than [`MAX_CALLER_BYTES`]: not bound either).
    pub fn mint(&self, provider: &str, now_ms: u64, ttl_ms: u64, caller: &str) -> (String, u64) {
        let expiry = now_ms + ttl_ms.clamp(1000, MAX_TTL_MS);
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let caller = caller.trim();
        let caller = if caller.len() <= MAX_CALLER_BYTES {
            URL_SAFE_NO_PAD.encode(caller)
        } else {
            String::new()
        };
        let mac = self.mac(provider, expiry, &nonce, &caller);
        (format!("{expiry}.{nonce}.{caller}.{mac}"), expiry)
    }

    /// Whether `key` is seen for the first time among keys that have not expired; it is then
    /// remembered until `expiry_ms`. Used for token nonces and for signed webhooks (a replayed
    /// webhook must not mint a second token). When full of unexpired keys, nothing is new.
    pub fn first_use(&self, key: &str, expiry_ms: u64, now_ms: u64) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.len() >= MAX_USED {
            used.retain(|_, exp| *exp > now_ms);
            if used.len() >= MAX_USED {
                return false;
            }
        }
        match used.get(key) {
            Some(exp) if *exp > now_ms => false,
            _ => {
                used.insert(key.to_string(), expiry_ms);
                true
            }
        }
    }

    /// Whether `token` was minted for `provider`, has not expired and was not used before; a
    /// valid token is used up by this call.
    pub fn redeem(&self, token: &str, provider: &str, now_ms: u64) -> Option<Grant> {
        let mut parts = token.split('.');
        let (Some(expiry), Some(nonce), Some(caller), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expiry_ms = expiry.parse::<u64>().ok()?;
        if expiry_ms <= now_ms || nonce.len() != 32 {
            return None;
        }
        let want = self.mac(provider, expiry_ms, nonce, caller);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            want.as_bytes(),
            mac.as_bytes(),
        )) {
            return None;
        }
        // Signed by this gateway: the caller part is what it encoded.
        let caller = URL_SAFE_NO_PAD
            .decode(caller)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())?;
        if !self.first_use(nonce, expiry_ms, now_ms) {
            return None;
        }
        Some(Grant {
            caller: (!caller.is_empty()).then_some(caller),
        })
    }
}

/// Wall-clock milliseconds since the Unix epoch, the clock tokens are minted and redeemed on.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Who a media stream's caller is, as far as the gateway knows when the socket opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamIdentity {
    /// Named by the one-call token the socket was opened with (from a provider's signed webhook,
    /// or an admin's request).
    Bound(String),
    /// The stream's own `caller`/`from` parameter says: a stream the operator's application
    /// authenticated (the static media token, a token naming nobody), or development mode.
    FromParams,
    /// A provider-signed stream whose parameters come from instructions the gateway may not have
    /// written (Twilio with signing on): only the `token` parameter of the gateway's TwiML names
    /// the caller; without it the caller is unknown.
    TokenParam,
}

impl StreamIdentity {
    /// The caller of a stream whose start carried `params`, redeeming a `token` parameter for
    /// `provider` where one is needed. Empty: unknown.
    pub fn caller(
        &self,
        tokens: &StreamTokens,
        provider: &str,
        params: &std::collections::BTreeMap<String, String>,
        now_ms: u64,
    ) -> String {
        let from_params = || {
            params
                .get("caller")
                .or_else(|| params.get("from"))
                .cloned()
                .unwrap_or_default()
        };
        match self {
            StreamIdentity::Bound(c) => c.clone(),
            StreamIdentity::FromParams => from_params(),
            StreamIdentity::TokenParam => {
                match params
                    .get("token")
                    .and_then(|t| tokens.redeem(t, provider, now_ms))
                {
                    Some(Grant { caller: Some(c) }) => c,
                    Some(Grant { caller: None }) => from_params(),
                    None => String::new(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_one_socket_of_its_provider_before_it_expires() {
        let t = StreamTokens::new("");
        let (tok, exp) = t.mint("plivo", 1_000, 60_000, "");
        assert_eq!(exp, 61_000);
        assert_eq!(t.redeem(&tok, "telnyx", 2_000), None, "another provider");
        assert_eq!(t.redeem(&tok, "plivo", 2_000), Some(Grant { caller: None }));
        assert_eq!(t.redeem(&tok, "plivo", 2_001), None, "used once already");
        let (tok, _) = t.mint("plivo", 1_000, 60_000, "");
        assert_eq!(t.redeem(&tok, "plivo", 61_000), None, "expired");
        let (tok, _) = t.mint("plivo", 1_000, 60_000, "");
        // The last character changed (to one it is not: a fixed '0' was the token itself once
        // in a while, and this test then failed at random).
        let last = if tok.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &tok[..tok.len() - 1]);
        assert_ne!(forged, tok);
        assert_eq!(t.redeem(&forged, "plivo", 2_000), None);
        let other = StreamTokens::new("");
        let (tok, _) = other.mint("plivo", 1_000, 60_000, "");
        assert_eq!(
            t.redeem(&tok, "plivo", 2_000),
            None,
            "another gateway's secret"
        );
        for junk in ["", "a.b.c", "1.2", "99999999999999.x.y.z", "9.x.y.z.w"] {
            assert_eq!(t.redeem(junk, "plivo", 2_000), None);
        }
    }

    #[test]
    fn a_signed_streams_caller_comes_from_the_gateways_token_only() {
        let t = StreamTokens::new("");
        let params = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let posed = params(&[("caller", "user_789")]);
        assert_eq!(
            StreamIdentity::TokenParam.caller(&t, "twilio", &posed, 1_000),
            ""
        );
        assert_eq!(
            StreamIdentity::FromParams.caller(&t, "twilio", &posed, 1_000),
            "user_789"
        );
        assert_eq!(
            StreamIdentity::Bound("+15550100123".into()).caller(&t, "plivo", &posed, 1_000),
            "+15550100123"
        );
        let (tok, _) = t.mint("twilio", 1_000, 60_000, "+15550100123");
        let with_token = params(&[("caller", "user_789"), ("token", &tok)]);
        assert_eq!(
            StreamIdentity::TokenParam.caller(&t, "twilio", &with_token, 2_000),
            "+15550100123"
        );
        // Used up: a second stream with the same parameters is nobody.
        assert_eq!(
            StreamIdentity::TokenParam.caller(&t, "twilio", &with_token, 2_000),
            ""
        );
        let (tok, _) = t.mint("twilio", 1_000, 60_000, "");
        let naming_nobody = params(&[("caller", "user_789"), ("token", &tok)]);
        assert_eq!(
            StreamIdentity::TokenParam.caller(&t, "twilio", &naming_nobody, 2_000),
            "user_789"
        );
    }

    #[test]
    fn a_token_carries_the_caller_it_was_minted_for_and_no_other() {
        let t = StreamTokens::new("configured-secret");
        let (tok, _) = t.mint("twilio", 1_000, 60_000, "+15550100123");
        assert_eq!(
            t.redeem(&tok, "twilio", 2_000),
            Some(Grant {
                caller: Some("+15550100123".into())
            })
        );
        // Another caller put in its place does not match the MAC.
        let (tok, _) = t.mint("twilio", 1_000, 60_000, "+15550100123");
        let parts: Vec<&str> = tok.split('.').collect();
        let swapped = format!(
            "{}.{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode("+15550100199"),
            parts[3]
        );
        assert_eq!(t.redeem(&swapped, "twilio", 2_000), None);
        assert!(t.redeem(&tok, "twilio", 2_000).is_some());
        // An identity too long to carry is not bound.
        let (tok, _) = t.mint("telnyx", 1_000, 60_000, &"9".repeat(MAX_CALLER_BYTES + 1));
        assert_eq!(
            t.redeem(&tok, "telnyx", 2_000),
            Some(Grant { caller: None })
        );
    }
}
