//! The answer webhooks of Telnyx (TeXML), Plivo and Vonage: each checks the provider's own
//! request signature (Telnyx Ed25519, Plivo V3, Vonage's signed JWT), then answers with the
//! provider's instruction connecting the call's audio to the gateway's media URL, carrying a
//! one-call token bound to the caller's number as the provider signed it. The media socket is
//! then authenticated by that token, and the call's caller comes from it — never from what the
//! media stream says.
//!
//! Without the provider's key configured these webhooks answer only in development mode (no API
//! token and no provider credential), like the unsigned media sockets.

use super::{ApiError, AppState, called_urls, dev_mode, no_speech, one_call_stream, parse_form};
use crate::runtime::live::LiveDeps;
use crate::runtime::stream_token::now_ms;
use crate::transport::{SignatureError, WEBHOOK_TOLERANCE_SECS, plivo, telnyx, vonage};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// How long the token in an answer stays valid: the provider opens the stream within a second
/// or two of our answer.
pub const TOKEN_TTL_MS: u64 = 60_000;

/// What a caller hears when the gateway is shutting down.
pub const DRAINING: &str = "We cannot take your call right now. Please call again shortly.";

/// The webhook's fields, in the order they came.
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|h| h.to_str().ok())
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

/// The 403 for a webhook whose signature failed; the reason goes to the log only.
fn refused(provider: &str, why: SignatureError) -> Response {
    tracing::warn!(provider, reason = %why, "answer webhook refused: bad signature");
    ApiError::new(
        StatusCode::FORBIDDEN,
        "BAD_SIGNATURE",
        format!("the request does not carry a valid {provider} signature"),
    )
    .into_response()
}

/// The 403 for an unsigned webhook when no key is configured outside development mode.
fn unconfigured(provider: &str, setting: &str) -> Response {
    tracing::warn!(
        provider,
        "answer webhook refused: {setting} is not configured"
    );
    ApiError::new(
        StatusCode::FORBIDDEN,
        "NOT_CONFIGURED",
        format!("set {setting} to accept {provider} calls"),
    )
    .into_response()
}

/// The 403 for a signed request seen before (a replay must not open a second stream).
fn replayed(provider: &str) -> Response {
    tracing::warn!(provider, "answer webhook refused: a replayed request");
    ApiError::new(
        StatusCode::FORBIDDEN,
        "REPLAYED",
        "this signed request was already answered",
    )
    .into_response()
}

/// The live deps, or the response that says why there are none.
#[allow(clippy::result_large_err)]
fn live(s: &AppState) -> Result<Arc<LiveDeps>, Response> {
    s.live.clone().ok_or_else(no_speech)
}

/// Remembers a signed request's unique part until it could no longer verify; `false` if seen.
fn first_time(live: &LiveDeps, key: &str) -> bool {
    let now = now_ms();
    let until = now + 2 * WEBHOOK_TOLERANCE_SECS * 1000;
    live.stream_tokens.first_use(key, until, now)
}

/// The call a verified webhook is about: the provider (as in the media path), its call id and the
/// caller's number as the provider signed it.
struct Answered<'a> {
    provider: &'a str,
    call: &'a str,
    caller: &'a str,
}

/// What every answer does once the request is verified: the `draining` reply while the gateway
/// shuts down, else `reply` with a one-call media URL bound to the caller.
fn answer(
    s: &AppState,
    live: &LiveDeps,
    headers: &HeaderMap,
    a: Answered<'_>,
    draining: impl FnOnce() -> Response,
    reply: impl FnOnce(&str) -> Response,
) -> Response {
    if live.registry.is_draining() {
        return draining();
    }
    match one_call_stream(s, live, headers, a.provider, TOKEN_TTL_MS, a.caller) {
        Ok(stream) => {
            tracing::info!(
                provider = a.provider,
                call = a.call,
                caller = %crate::runtime::session::shown_caller(a.caller),
                "call answered"
            );
            reply(&stream.url)
        }
        Err(e) => e.into_response(),
    }
}

fn xml(body: String) -> Response {
    ([(CONTENT_TYPE, "application/xml")], body).into_response()
}

/// A body of form fields, or a JSON object's string and number fields.
#[allow(clippy::result_large_err)]
fn fields_of(headers: &HeaderMap, body: &[u8]) -> Result<Fields, Response> {
    let json = header(headers, CONTENT_TYPE.as_str()).is_some_and(|c| c.contains("json"));
    if !json {
        return parse_form(body).map_err(IntoResponse::into_response);
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            format!("JSON body: {e}"),
        )
        .into_response()
    })?;
    Ok(v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                    serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

fn query_fields(uri: &Uri) -> Fields {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Telnyx TeXML's call webhook (`POST /telnyx/voice`): checks the Ed25519 signature against the
/// configured public key and answers TeXML streaming the call to a one-call media URL.
pub async fn telnyx_voice(
    axum::extract::State(s): axum::extract::State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let live = match live(&s) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let key = live.telnyx.public_key.as_str();
    if key.is_empty() {
        if !dev_mode(&s, &live) {
            return unconfigured("Telnyx", "telnyx.public_key (TELNYX_PUBLIC_KEY)");
        }
    } else {
        let sig = header(&headers, "telnyx-signature-ed25519");
        let ts = header(&headers, "telnyx-timestamp");
        if let Err(e) = telnyx::verify_webhook(key, sig, ts, &body, now_secs()) {
            return refused("Telnyx", e);
        }
        if !first_time(&live, &format!("hook:telnyx:{}", sig.unwrap_or(""))) {
            return replayed("Telnyx");
        }
    }
    let fields = match fields_of(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let call = Answered {
        provider: "telnyx",
        call: field(&fields, "CallSid"),
        caller: field(&fields, "From"),
    };
    answer(
        &s,
        &live,
        &headers,
        call,
        || {
            xml(format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>{DRAINING}</Say><Hangup/></Response>"#
            ))
        },
        |url| xml(telnyx::stream_texml(url)),
    )
}

/// Plivo's answer URL (`GET` or `POST /plivo/voice`): checks the V3 signature with the account's
/// auth token and answers Plivo XML streaming the call to a one-call media URL.
pub async fn plivo_voice(
    axum::extract::State(s): axum::extract::State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let live = match live(&s) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let post = method == Method::POST;
    let form = if post {
        match parse_form(&body) {
            Ok(f) => f,
            Err(e) => return e.into_response(),
        }
    } else {
        Vec::new()
    };
    let token = live.plivo.auth_token.as_str();
    if token.is_empty() {
        if !dev_mode(&s, &live) {
            return unconfigured("Plivo", "plivo.auth_token (PLIVO_AUTH_TOKEN)");
        }
    } else {
        let nonce = header(&headers, "x-plivo-signature-v3-nonce");
        let sig = header(&headers, "x-plivo-signature-v3");
        let mut result = Err(SignatureError::Missing);
        for url in called_urls(s.public_url.as_deref(), &headers, &uri) {
            result = plivo::verify_v3(token, &url, &form, nonce, sig);
            if result.is_ok() {
                break;
            }
        }
        if let Err(e) = result {
            return refused("Plivo", e);
        }
        if !first_time(&live, &format!("hook:plivo:{}", nonce.unwrap_or(""))) {
            return replayed("Plivo");
        }
    }
    let fields = if post { form } else { query_fields(&uri) };
    let call = Answered {
        provider: "plivo",
        call: field(&fields, "CallUUID"),
        caller: field(&fields, "From"),
    };
    answer(
        &s,
        &live,
        &headers,
        call,
        || {
            xml(format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Speak>{DRAINING}</Speak><Hangup/></Response>"#
            ))
        },
        |url| xml(plivo::stream_xml(url)),
    )
}

/// Vonage's answer URL (`GET` or `POST /vonage/answer`): checks the signed-callback JWT with the
/// account's signature secret (and its payload hash) and answers an NCCO connecting the call to
/// a one-call media URL, passing the call's `uuid` so the gateway can hang it up.
pub async fn vonage_answer(
    axum::extract::State(s): axum::extract::State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let live = match live(&s) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let post = method == Method::POST;
    let query = query_fields(&uri);
    let secret = live.vonage.signature_secret.as_str();
    if secret.is_empty() {
        if !dev_mode(&s, &live) {
            return unconfigured(
                "Vonage",
                "vonage.signature_secret (VONAGE_SIGNATURE_SECRET)",
            );
        }
    } else {
        let payload = if post {
            body.to_vec()
        } else {
            vonage::query_payload(&query).into_bytes()
        };
        let auth = header(&headers, AUTHORIZATION.as_str());
        match vonage::verify_signed_webhook(secret, auth, &payload, now_secs()) {
            Ok(claims) => {
                // A token without an id cannot be told from its replay: its signature is its id.
                let id = claims
                    .jti
                    .unwrap_or_else(|| auth.unwrap_or("").rsplit('.').next().unwrap_or("").into());
                if !first_time(&live, &format!("hook:vonage:{id}")) {
                    return replayed("Vonage");
                }
            }
            Err(e) => return refused("Vonage", e),
        }
    }
    let fields = if post {
        match fields_of(&headers, &body) {
            Ok(f) => f,
            Err(r) => return r,
        }
    } else {
        query
    };
    let json = |b: String| ([(CONTENT_TYPE, "application/json")], b).into_response();
    let uuid = field(&fields, "uuid");
    let call = Answered {
        provider: "vonage",
        call: uuid,
        caller: field(&fields, "from"),
    };
    answer(
        &s,
        &live,
        &headers,
        call,
        || json(serde_json::json!([{"action": "talk", "text": DRAINING}]).to_string()),
        |url| json(vonage::connect_ncco(url, &[("uuid", uuid)])),
    )
}
