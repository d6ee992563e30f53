//! Per-call stream tokens for providers that do not sign their media WebSocket (Telnyx, Plivo,
//! Exotel, Vonage). The application that answers a call asks the gateway for a stream URL
//! (`POST /v1/stream-urls`, admin scope) and hands it to the provider; the URL's token names the
//! provider, expires within seconds to minutes, and opens one media socket only.
//!
//! A token is `{expiry_ms}.{nonce}.{mac}`: HMAC-SHA256 under the gateway's secret of
//! `provider|expiry_ms|nonce`. Used nonces are remembered until they expire (bounded).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;

/// Longest lifetime a token may be given.
pub const MAX_TTL_MS: u64 = 10 * 60 * 1000;
/// Unexpired used tokens remembered at most (more: new tokens are refused until some expire).
const MAX_USED: usize = 100_000;

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

    fn mac(&self, provider: &str, expiry_ms: u64, nonce: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        mac.update(format!("{provider}|{expiry_ms}|{nonce}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A token for one media socket of `provider`, valid until `now_ms + ttl_ms`.
    pub fn mint(&self, provider: &str, now_ms: u64, ttl_ms: u64) -> (String, u64) {
        let expiry = now_ms + ttl_ms.clamp(1000, MAX_TTL_MS);
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mac = self.mac(provider, expiry, &nonce);
        (format!("{expiry}.{nonce}.{mac}"), expiry)
    }

    /// Whether `token` was minted for `provider`, has not expired and was not used before; a
    /// valid token is used up by this call.
    pub fn redeem(&self, token: &str, provider: &str, now_ms: u64) -> bool {
        let mut parts = token.split('.');
        let (Some(expiry), Some(nonce), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(expiry_ms) = expiry.parse::<u64>() else {
            return false;
        };
        if expiry_ms <= now_ms || nonce.len() != 32 {
            return false;
        }
        let want = self.mac(provider, expiry_ms, nonce);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            want.as_bytes(),
            mac.as_bytes(),
        )) {
            return false;
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.len() >= MAX_USED {
            used.retain(|_, exp| *exp > now_ms);
            if used.len() >= MAX_USED {
                return false;
            }
        }
        used.insert(nonce.to_string(), expiry_ms).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_one_socket_of_its_provider_before_it_expires() {
        let t = StreamTokens::new("");
        let (tok, exp) = t.mint("plivo", 1_000, 60_000);
        assert_eq!(exp, 61_000);
        assert!(!t.redeem(&tok, "telnyx", 2_000), "another provider");
        assert!(t.redeem(&tok, "plivo", 2_000));
        assert!(!t.redeem(&tok, "plivo", 2_001), "used once already");
        let (tok, _) = t.mint("plivo", 1_000, 60_000);
        assert!(!t.redeem(&tok, "plivo", 61_000), "expired");
        let (tok, _) = t.mint("plivo", 1_000, 60_000);
        // The last character changed (to one it is not: a fixed '0' was the token itself once
        // in a while, and this test then failed at random).
        let last = if tok.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &tok[..tok.len() - 1]);
        assert_ne!(forged, tok);
        assert!(!t.redeem(&forged, "plivo", 2_000));
        let other = StreamTokens::new("");
        let (tok, _) = other.mint("plivo", 1_000, 60_000);
        assert!(!t.redeem(&tok, "plivo", 2_000), "another gateway's secret");
        for junk in ["", "a.b.c", "1.2", "99999999999999.x.y.z"] {
            assert!(!t.redeem(junk, "plivo", 2_000));
        }
    }
}
