//! The answer webhooks' signature checks (Telnyx Ed25519, Plivo V3, Vonage HS256 JWT) and the
//! gateway's one-call stream tokens. Arbitrary input never verifies and never panics; a request
//! signed as the provider signs it verifies, and stops verifying when one byte of what was signed
//! changes. The input is split on 0xFF into a key, a body, and the rest.
#![no_main]

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use ring::signature::KeyPair;
use sha2::Digest;
use switchboard::runtime::stream_token::StreamTokens;
use switchboard::transport::{SignatureError, plivo, telnyx, vonage};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let key = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default().to_vec();
    let rest = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let now = 1_800_000_000u64;

    // Arbitrary input: refused, no panic.
    assert!(telnyx::verify_webhook(&key, Some(&rest), Some(&rest), &body, now).is_err());
    let params = vec![(rest.clone(), key.clone())];
    assert!(plivo::verify_v3(&key, &rest, &params, Some(&rest), Some(&rest)).is_err());
    assert!(vonage::verify_signed_webhook(&key, Some(&rest), &body, now).is_err());
    let bearer = format!("Bearer {rest}");
    assert!(vonage::verify_signed_webhook(&key, Some(&bearer), &body, now).is_err());
    let tokens = StreamTokens::new(&key);
    assert!(tokens.redeem(&rest, "plivo", now * 1000).is_none());
    let (tok, _) = tokens.mint("plivo", now * 1000, 60_000, &rest);
    let grant = tokens.redeem(&tok, "plivo", now * 1000 + 1).expect("a fresh token");
    if rest.trim().len() <= switchboard::runtime::stream_token::MAX_CALLER_BYTES && !rest.trim().is_empty() {
        assert_eq!(grant.caller.as_deref(), Some(rest.trim()));
    }
    assert!(tokens.redeem(&tok, "plivo", now * 1000 + 2).is_none(), "used twice");

    // Telnyx: a key pair from the input, the body signed with a timestamp.
    let mut seed = [0u8; 32];
    for (i, b) in key.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    let keys = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).expect("32 bytes");
    let public = base64::engine::general_purpose::STANDARD.encode(keys.public_key().as_ref());
    let stamp = now.to_string();
    let mut signed = format!("{stamp}|").into_bytes();
    signed.extend_from_slice(&body);
    let sig = base64::engine::general_purpose::STANDARD.encode(keys.sign(&signed).as_ref());
    assert_eq!(telnyx::verify_webhook(&public, Some(&sig), Some(&stamp), &body, now), Ok(()));
    if !body.is_empty() {
        let mut bad = body.clone();
        let i = data.len() % bad.len();
        bad[i] ^= 0x01;
        assert_eq!(
            telnyx::verify_webhook(&public, Some(&sig), Some(&stamp), &bad, now),
            Err(SignatureError::Mismatch)
        );
    }

    // Plivo: the body's text as one parameter of a POST to the input's URL.
    if !key.is_empty() {
        let value = String::from_utf8_lossy(&body).into_owned();
        let params = vec![("From".to_string(), value.clone())];
        let sig = plivo::v3_signature(&key, &plivo::v3_signed_url(&rest, &params), "12345");
        assert_eq!(plivo::verify_v3(&key, &rest, &params, Some("12345"), Some(&sig)), Ok(()));
        let changed = vec![("From".to_string(), format!("{value}0"))];
        assert!(plivo::verify_v3(&key, &rest, &changed, Some("12345"), Some(&sig)).is_err());
    }

    // Vonage: the body hashed into an HS256 token under the input's key.
    if !key.is_empty() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let head = b64.encode(r#"{"alg":"HS256"}"#);
        let claims = b64.encode(
            serde_json::json!({"iat": now, "payload_hash": hex::encode(sha2::Sha256::digest(&body))})
                .to_string(),
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("any key");
        mac.update(format!("{head}.{claims}").as_bytes());
        let auth = format!("Bearer {head}.{claims}.{}", b64.encode(mac.finalize().into_bytes()));
        assert!(vonage::verify_signed_webhook(&key, Some(&auth), &body, now).is_ok());
        let mut other = body.clone();
        other.push(b'x');
        assert_eq!(
            vonage::verify_signed_webhook(&key, Some(&auth), &other, now).map(|c| c.iat),
            Err(SignatureError::Mismatch)
        );
    }
});
