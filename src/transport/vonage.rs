//! Vonage WebSocket endpoint: binary frames of raw PCM16 LE (640 bytes = 20 ms at 16 kHz, 320 bytes
//! at 8 kHz) both ways, plus a few JSON text frames.
//!
//! The first text frame is `{"event":"websocket:connected","content-type":"audio/l16;rate=16000",…}`;
//! any other fields are the headers set in the NCCO `connect` action. It maps to [`Inbound::Start`]
//! with `stream_id` empty, `call_id` from a `uuid`/`call_uuid`/`conversation_uuid` header if present
//! (else empty) and every string header in `params`. Outbound audio: send frames from [`framer`]
//! as binary messages (Vonage queues at most 1024); interrupt with [`clear`] (`{"action":"clear"}`).
//!
//! A call reaches the gateway through the application's answer URL: with signed callbacks on,
//! Vonage's request carries a JWT signed with the account's signature secret
//! ([`verify_signed_webhook`]) and the gateway answers [`connect_ncco`], which connects the call's
//! audio to a media URL carrying a one-call token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    Encoding, FixedChunker, Inbound, MAX_MESSAGE_BYTES, MediaFormat, ProtocolError, SignatureError,
    UrlPart, WEBHOOK_TOLERANCE_SECS, build_url, check_size, parse_digit, push_json_str,
};

/// Bytes in 20 ms of PCM16 at 16 kHz.
pub const FRAME_BYTES_16K: usize = 640;
/// Bytes in 20 ms of PCM16 at 8 kHz.
pub const FRAME_BYTES_8K: usize = 320;

/// Parses one text frame from Vonage.
pub fn parse_text(text: &str) -> Result<Inbound, ProtocolError> {
    check_size(text.len())?;
    let v: Value = serde_json::from_str(text)?;
    let obj = v.as_object().ok_or(ProtocolError::MissingField("event"))?;
    let event = obj
        .get("event")
        .and_then(Value::as_str)
        .ok_or(ProtocolError::MissingField("event"))?;
    match event {
        "websocket:connected" => {
            let ct = obj
                .get("content-type")
                .and_then(Value::as_str)
                .ok_or(ProtocolError::MissingField("content-type"))?;
            let format = parse_content_type(ct)?;
            let params = super::params_from_object(Some(obj))
                .into_iter()
                .filter(|(k, _)| k != "event" && k != "content-type")
                .collect::<std::collections::BTreeMap<_, _>>();
            let call_id = ["uuid", "call_uuid", "conversation_uuid"]
                .iter()
                .find_map(|k| params.get(*k).cloned())
                .unwrap_or_default();
            Ok(Inbound::Start {
                stream_id: String::new(),
                call_id,
                format,
                params,
            })
        }
        "websocket:dtmf" => {
            let digit = obj
                .get("digit")
                .or_else(|| obj.get("dtmf").and_then(|d| d.get("digit")))
                .and_then(Value::as_str)
                .ok_or(ProtocolError::MissingField("digit"))?;
            Ok(Inbound::Dtmf {
                digit: parse_digit(digit)?,
            })
        }
        "websocket:cleared" | "websocket:media:update" => Ok(Inbound::Ignored),
        "websocket:error" => Err(ProtocolError::Provider(text.to_owned())),
        other => Err(ProtocolError::UnknownEvent(other.to_owned())),
    }
}

/// `audio/l16;rate=16000` → L16 16 kHz mono. Only L16 is streamed by Vonage.
pub fn parse_content_type(ct: &str) -> Result<MediaFormat, ProtocolError> {
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or_default().trim();
    if super::encoding_from_name(mime) != Some(Encoding::L16) {
        return Err(ProtocolError::UnsupportedEncoding(ct.to_owned()));
    }
    let mut sample_rate = 16000;
    for p in parts {
        if let Some((k, val)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("rate")
        {
            sample_rate = val
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|r| *r > 0)
                .ok_or(ProtocolError::BadField("content-type"))?;
        }
    }
    Ok(MediaFormat {
        encoding: Encoding::L16,
        sample_rate,
        channels: 1,
    })
}

/// A binary frame of inbound audio (PCM16 LE). Odd-length frames are rejected.
pub fn parse_binary(frame: &[u8]) -> Result<Inbound, ProtocolError> {
    check_size(frame.len())?;
    if !frame.len().is_multiple_of(2) {
        return Err(ProtocolError::BadField("binary frame length"));
    }
    Ok(Inbound::Media {
        payload: frame.to_vec(),
        seq: None,
        timestamp_ms: None,
    })
}

/// Writes `{"action":"clear"}` into `out` (cleared first): drops audio Vonage has queued.
pub fn clear(out: &mut String) {
    out.clear();
    out.push_str(r#"{"action":"clear"}"#);
}

/// Splits outbound PCM16 into binary frames of 20 ms at `sample_rate` (640 B at 16 kHz), padding
/// the tail with silence. Frames are capped at [`MAX_MESSAGE_BYTES`].
pub fn framer(sample_rate: u32) -> FixedChunker {
    let bytes = (sample_rate as usize / 50 * 2).clamp(2, MAX_MESSAGE_BYTES);
    FixedChunker::new(bytes, 0)
}

/// `{api_base}/v1/calls/{uuid}` (PUT with [`HANGUP_BODY`], Bearer JWT); `api_base` is normally
/// `https://api.nexmo.com`.
pub fn call_url(api_base: &str, uuid: &str) -> String {
    build_url(api_base, &[UrlPart::Lit("/v1/calls/"), UrlPart::Seg(uuid)])
}

/// JSON body hanging up a call via [`call_url`].
pub const HANGUP_BODY: &str = r#"{"action":"hangup"}"#;

/// What a verified Vonage webhook token says about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookClaims {
    /// When Vonage signed it (Unix seconds).
    pub iat: u64,
    /// The token's unique id, for refusing a replayed request.
    pub jti: Option<String>,
    pub api_key: Option<String>,
    pub application_id: Option<String>,
}

/// The payload a GET webhook's `payload_hash` covers: its query parameters as a JSON object in
/// the order they came, without whitespace.
pub fn query_payload(params: &[(String, String)]) -> String {
    let mut out = String::with_capacity(2 + params.len() * 32);
    out.push('{');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, k);
        out.push(':');
        push_json_str(&mut out, v);
    }
    out.push('}');
    out
}

/// Checks a signed Vonage Voice webhook. `authorization` is the `Authorization` header,
/// `Bearer <JWT>`: the JWT must be HS256 (no other algorithm is accepted) under `secret` (the
/// account's signature secret), issued (`iat`) within [`WEBHOOK_TOLERANCE_SECS`] of `now_secs` and
/// not expired (`exp`, when present); its `payload_hash` must be there and be the hex SHA-256 of
/// `payload` (a POST's raw body, or [`query_payload`] of a GET's query).
pub fn verify_signed_webhook(
    secret: &str,
    authorization: Option<&str>,
    payload: &[u8],
    now_secs: u64,
) -> Result<WebhookClaims, SignatureError> {
    let auth = authorization.ok_or(SignatureError::Missing)?.trim();
    let token = match auth.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err(SignatureError::Missing),
    };
    if secret.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SignatureError::Malformed);
    };
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
    let header: Value = b64(head)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(SignatureError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(SignatureError::Malformed);
    }
    let sig = b64(sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&sig)
        .map_err(|_| SignatureError::Mismatch)?;
    let claims: Value = b64(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(SignatureError::Malformed)?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(SignatureError::Malformed)?;
    if now_secs.abs_diff(iat) > WEBHOOK_TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    if let Some(exp) = claims.get("exp") {
        match exp.as_u64() {
            Some(exp) if exp >= now_secs => {}
            Some(_) => return Err(SignatureError::Stale),
            None => return Err(SignatureError::Malformed),
        }
    }
    // Without the hash the token would vouch for any body: it is required.
    let hash = claims
        .get("payload_hash")
        .and_then(Value::as_str)
        .ok_or(SignatureError::Malformed)?;
    if !hex::encode(Sha256::digest(payload)).eq_ignore_ascii_case(hash) {
        return Err(SignatureError::Mismatch);
    }
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(WebhookClaims {
        iat,
        jti: text("jti"),
        api_key: text("api_key"),
        application_id: text("application_id"),
    })
}

/// The NCCO answering a call: connect its audio to the WebSocket `ws_url` as 16 kHz linear PCM,
/// with `headers` delivered in the socket's first message.
pub fn connect_ncco(ws_url: &str, headers: &[(&str, &str)]) -> String {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    serde_json::json!([{
        "action": "connect",
        "endpoint": [{
            "type": "websocket",
            "uri": ws_url,
            "content-type": "audio/l16;rate=16000",
            "headers": headers,
        }],
    }])
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_connected_with_headers() {
        let t = r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000","uuid":"u-1","tenant":"acme"}"#;
        match parse_text(t) {
            Ok(Inbound::Start {
                stream_id,
                call_id,
                format,
                params,
            }) => {
                assert_eq!(stream_id, "");
                assert_eq!(call_id, "u-1");
                assert_eq!(
                    format,
                    MediaFormat {
                        encoding: Encoding::L16,
                        sample_rate: 16000,
                        channels: 1
                    }
                );
                assert_eq!(params.get("tenant").map(String::as_str), Some("acme"));
                assert!(!params.contains_key("event"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let t8 = r#"{"event":"websocket:connected","content-type":"audio/l16;rate=8000"}"#;
        assert!(
            matches!(parse_text(t8), Ok(Inbound::Start { format, call_id, .. }) if format.sample_rate == 8000 && call_id.is_empty())
        );
    }

    #[test]
    fn parses_other_text() {
        assert_eq!(
            parse_text(r#"{"event":"websocket:dtmf","digit":"7","duration":260}"#).ok(),
            Some(Inbound::Dtmf { digit: '7' })
        );
        assert_eq!(
            parse_text(r#"{"event":"websocket:cleared"}"#).ok(),
            Some(Inbound::Ignored)
        );
        assert!(matches!(
            parse_text("[1]"),
            Err(ProtocolError::MissingField("event"))
        ));
        assert!(matches!(parse_text("{"), Err(ProtocolError::Json(_))));
        assert!(matches!(
            parse_text(r#"{"event":"x"}"#),
            Err(ProtocolError::UnknownEvent(_))
        ));
        assert!(matches!(
            parse_text(r#"{"event":"websocket:connected"}"#),
            Err(ProtocolError::MissingField("content-type"))
        ));
        assert!(matches!(
            parse_text(r#"{"event":"websocket:connected","content-type":"audio/opus"}"#),
            Err(ProtocolError::UnsupportedEncoding(_))
        ));
        assert!(matches!(
            parse_text(r#"{"event":"websocket:connected","content-type":"audio/l16;rate=abc"}"#),
            Err(ProtocolError::BadField(_))
        ));
        let big = " ".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(parse_text(&big), Err(ProtocolError::TooLarge(_))));
    }

    #[test]
    fn binary_frames() {
        let frame = vec![0u8; FRAME_BYTES_16K];
        assert_eq!(
            parse_binary(&frame).ok(),
            Some(Inbound::Media {
                payload: frame.clone(),
                seq: None,
                timestamp_ms: None
            })
        );
        assert!(matches!(
            parse_binary(&[1, 2, 3]),
            Err(ProtocolError::BadField(_))
        ));
        assert!(matches!(
            parse_binary(&vec![0; MAX_MESSAGE_BYTES + 2]),
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[test]
    fn outbound() {
        let mut out = String::new();
        clear(&mut out);
        assert_eq!(
            serde_json::from_str::<Value>(&out).ok(),
            Some(json!({"action":"clear"}))
        );
        assert_eq!(
            serde_json::from_str::<Value>(HANGUP_BODY).ok(),
            Some(json!({"action":"hangup"}))
        );
        assert_eq!(framer(16000).frame_bytes(), FRAME_BYTES_16K);
        assert_eq!(framer(8000).frame_bytes(), FRAME_BYTES_8K);
        assert_eq!(framer(0).frame_bytes(), 2);
        assert_eq!(
            call_url("https://api.nexmo.com", "abc-1"),
            "https://api.nexmo.com/v1/calls/abc-1"
        );
    }

    // Signed with PyJWT (HS256), secret below, claims {iat: 1764950400, jti, iss: "Vonage",
    // payload_hash: sha256(BODY), api_key, application_id}.
    const SECRET: &str = "vonage-signature-secret-0123456789";
    const BODY: &str = r#"{"from":"15550100123","to":"15557650000","uuid":"aaaa-bbbb","conversation_uuid":"CON-1"}"#;
    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3NjQ5NTA0MDAsImp0aSI6ImIzYzFkN2EwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMSIsImlzcyI6IlZvbmFnZSIsInBheWxvYWRfaGFzaCI6IjdlZWE0YTFmYjhiM2VmOTBkMjM5MThiM2JmYjI2ODRmN2UxNTFlNGZhNTlmY2U2OWUyOGRiOWI4ZTMwYTVkYWYiLCJhcGlfa2V5IjoiYWJjZDEyMzQiLCJhcHBsaWNhdGlvbl9pZCI6ImFwcC0xIn0.cTNJmnJYPtu79N9G9ppatoklEiVtkdX0h8M4KJAKDo8";

    #[test]
    fn a_webhook_token_signed_by_pyjwt_verifies_with_its_claims() {
        let bearer = format!("Bearer {JWT}");
        let claims = verify_signed_webhook(SECRET, Some(&bearer), BODY.as_bytes(), 1764950460)
            .expect("valid");
        assert_eq!(claims.iat, 1764950400);
        assert_eq!(
            claims.jti.as_deref(),
            Some("b3c1d7a0-0000-4000-8000-000000000001")
        );
        assert_eq!(claims.application_id.as_deref(), Some("app-1"));
    }

    #[test]
    fn a_webhook_token_fails_for_any_other_request_or_key() {
        let bearer = format!("Bearer {JWT}");
        let v = |secret: &str, auth: Option<&str>, body: &str, now: u64| {
            verify_signed_webhook(secret, auth, body.as_bytes(), now).map(|c| c.iat)
        };
        assert_eq!(
            v(
                SECRET,
                Some(&bearer),
                &BODY.replace("0123", "0199"),
                1764950460
            ),
            Err(SignatureError::Mismatch),
            "the body is not the one hashed"
        );
        assert_eq!(
            v("another-secret", Some(&bearer), BODY, 1764950460),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(SECRET, Some(&bearer), BODY, 1764950400 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v(SECRET, None, BODY, 1764950460),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            v(SECRET, Some(JWT), BODY, 1764950460),
            Err(SignatureError::Missing),
            "no Bearer"
        );
        // The same claims under "alg": "none", unsigned: refused.
        let body_part = JWT.split('.').nth(1).unwrap_or("");
        let none = format!(
            "Bearer {}.{body_part}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#)
        );
        assert_eq!(
            v(SECRET, Some(&none), BODY, 1764950460),
            Err(SignatureError::Malformed)
        );
        // A claim changed under the original signature: refused.
        let forged_claims =
            URL_SAFE_NO_PAD.encode(r#"{"iat":1764950400,"jti":"x","payload_hash":"00"}"#);
        let mut it = JWT.split('.');
        let forged = format!(
            "Bearer {}.{forged_claims}.{}",
            it.next().unwrap_or(""),
            it.nth(1).unwrap_or("")
        );
        assert_eq!(
            v(SECRET, Some(&forged), BODY, 1764950460),
            Err(SignatureError::Mismatch)
        );
        // Properly signed, but vouching for no body: refused.
        let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"iat":1764950400,"jti":"y"}"#);
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{head}.{claims}").as_bytes());
        let unhashed = format!(
            "Bearer {head}.{claims}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            v(SECRET, Some(&unhashed), BODY, 1764950460),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            v(SECRET, Some("Bearer a.b"), BODY, 1764950460),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn get_payloads_are_the_query_as_compact_json_in_order() {
        let q = vec![
            ("to".to_string(), "15557650000".to_string()),
            ("from".to_string(), "155\"501".to_string()),
        ];
        assert_eq!(
            query_payload(&q),
            r#"{"to":"15557650000","from":"155\"501"}"#
        );
        assert_eq!(query_payload(&[]), "{}");
    }

    #[test]
    fn the_answer_connects_a_websocket_with_headers() {
        let v: serde_json::Value = serde_json::from_str(&connect_ncco(
            "wss://gw/vonage/media?token=t",
            &[("uuid", "u-1")],
        ))
        .unwrap_or_default();
        assert_eq!(
            v,
            json!([{"action":"connect","endpoint":[{"type":"websocket","uri":"wss://gw/vonage/media?token=t",
                "content-type":"audio/l16;rate=16000","headers":{"uuid":"u-1"}}]}])
        );
    }
}
