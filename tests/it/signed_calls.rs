//! Calls as each provider makes them, against the real binary on loopback: the provider's answer
//! webhook signed with its own scheme (Twilio HMAC-SHA1, Telnyx Ed25519, Plivo V3, Vonage's HS256
//! JWT), the gateway's answer naming a media URL, then the media stream. The caller is the number
//! the provider signed — a stream that names another caller does not change it — and every
//! unsigned, forged, tampered or replayed webhook is refused.

use crate::security::{ADMIN, CLIENT, Server, serve};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures_util::SinkExt;
use hmac::{KeyInit, Mac};
use ring::signature::KeyPair;
use serde_json::{Value, json};
use sha2::Digest;
use std::time::{Duration, Instant};
use switchboard::transport::{plivo, twilio};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TWILIO: &str = "twilio-auth-token-0001";
const PLIVO: &str = "plivo-auth-token-0001";
const VONAGE: &str = "vonage-signature-secret-0001";
/// The demo's number for user_789, who owns records.
const OWNER: &str = "+15550100789";
/// The demo's number for user_321: what a stream poses as.
const POSED: &str = "+15550100321";

fn telnyx_keys() -> ring::signature::Ed25519KeyPair {
    ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn gateway() -> Server {
    let telnyx_public = STANDARD.encode(telnyx_keys().public_key().as_ref());
    serve(
        |c| c,
        &[
            ("SWITCHBOARD_ADMIN_TOKENS", ADMIN),
            ("SWITCHBOARD_CLIENT_TOKENS", CLIENT),
            ("TWILIO_AUTH_TOKEN", TWILIO),
            ("TELNYX_PUBLIC_KEY", &telnyx_public),
            ("PLIVO_AUTH_TOKEN", PLIVO),
            ("VONAGE_SIGNATURE_SECRET", VONAGE),
        ],
    )
    .await
}

fn host(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// A POST with form `fields` and `headers`; status and body.
async fn post(url: &str, headers: &[(&str, String)], body: String, json: bool) -> (u16, String) {
    let mut r = switchboard::net::client().post(url).body(body).header(
        "content-type",
        if json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        },
    );
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn form(pairs: &[(&str, &str)]) -> (Vec<(String, String)>, String) {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = serde_urlencoded::to_string(&owned).unwrap();
    (owned, body)
}

/// The `wss://…` media URL in an answer (XML-escaped or JSON), as a `ws://` URL on loopback.
fn media_url(answer: &str) -> String {
    let at = answer
        .find("wss://")
        .unwrap_or_else(|| panic!("no media URL in {answer}"));
    let rest = &answer[at..];
    let end = rest.find(['"', '<']).unwrap_or(rest.len());
    rest[..end]
        .replace("&amp;", "&")
        .replacen("wss://", "ws://", 1)
}

fn twilio_token(twiml: &str) -> String {
    let at = twiml
        .find(r#"<Parameter name="token" value=""#)
        .unwrap_or_else(|| panic!("no token parameter in {twiml}"));
    let rest = &twiml[at + 31..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn telnyx_headers(body: &str, ts: u64) -> Vec<(&'static str, String)> {
    let sig = telnyx_keys().sign(format!("{ts}|{body}").as_bytes());
    vec![
        ("telnyx-signature-ed25519", STANDARD.encode(sig.as_ref())),
        ("telnyx-timestamp", ts.to_string()),
    ]
}

fn plivo_headers(
    url: &str,
    fields: &[(String, String)],
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let sig = plivo::v3_signature(PLIVO, &plivo::v3_signed_url(url, fields), nonce);
    vec![
        ("x-plivo-signature-v3", sig),
        ("x-plivo-signature-v3-nonce", nonce.to_string()),
    ]
}

/// `Authorization: Bearer <JWT>` as Vonage signs a callback: HS256 with the signature secret,
/// the body's SHA-256 in `payload_hash`.
fn vonage_auth(secret: &str, body: &str, iat: u64, jti: &str) -> Vec<(&'static str, String)> {
    let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"iat": iat, "jti": jti, "iss": "Vonage", "application_id": "app-1",
        "payload_hash": hex::encode(sha2::Sha256::digest(body.as_bytes()))});
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{head}.{claims}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    vec![("authorization", format!("Bearer {head}.{claims}.{sig}"))]
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(url: &str, headers: &[(&'static str, String)]) -> Result<Ws, String> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// Whom the bot has greeted so far (the `to` of agent-to-caller log lines).
async fn greeted(s: &Server) -> Vec<String> {
    let (st, v) = crate::security::call(
        reqwest::Method::GET,
        &format!("{}/v1/logs?type=agent_to_caller&limit=500", s.base),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["to"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Sends `start` on `ws` and waits until the bot has greeted one more caller; returns whom.
async fn greeting_for(s: &Server, ws: &mut Ws, start: Value) -> String {
    let before = greeted(s).await;
    ws.send(Message::Text(start.to_string().into()))
        .await
        .unwrap();
    let t0 = Instant::now();
    loop {
        let now = greeted(s).await;
        if now.len() > before.len() {
            let mut added = now.clone();
            for b in &before {
                if let Some(i) = added.iter().position(|x| x == b) {
                    added.remove(i);
                }
            }
            return added.into_iter().next().unwrap_or_default();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no greeting after the stream started:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_providers_signed_answer_names_the_caller_and_nothing_unsigned_gets_in() {
    let s = gateway().await;
    let h = host(&s);

    // --- Telnyx (TeXML webhook, Ed25519) ---
    let url = format!("{}/telnyx/voice", s.base);
    let (_, body) = form(&[
        ("CallSid", "v3:tx-1"),
        ("From", OWNER),
        ("To", "+15557650000"),
    ]);
    let (st, _) = post(&url, &[], body.clone(), false).await;
    assert_eq!(st, 403, "an unsigned Telnyx webhook");
    let ts = now_secs();
    let signed = telnyx_headers(&body, ts);
    let posed_body = body.replace("0100789", "0100321");
    let (st, _) = post(&url, &signed, posed_body, false).await;
    assert_eq!(
        st, 403,
        "a signed Telnyx webhook with another caller in its body"
    );
    let (st, _) = post(&url, &telnyx_headers(&body, ts - 600), body.clone(), false).await;
    assert_eq!(st, 403, "a Telnyx webhook signed ten minutes ago");
    let (st, answer) = post(&url, &signed, body.clone(), false).await;
    assert_eq!(st, 200, "{answer}");
    assert!(answer.contains("bidirectionalMode=\"rtp\""), "{answer}");
    let (st, _) = post(&url, &signed, body.clone(), false).await;
    assert_eq!(st, 403, "the same signed Telnyx webhook again");
    let media = media_url(&answer);
    let mut ws = open(&media, &[])
        .await
        .expect("the answer's media URL opens");
    let start = json!({"event": "start", "sequence_number": "1", "stream_id": "tx-stream",
        "start": {"call_control_id": "v3:tx-1", "custom_parameters": {"caller": POSED},
                  "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}});
    assert_eq!(greeting_for(&s, &mut ws, start).await, "user_789", "Telnyx");
    let again = open(&media, &[])
        .await
        .expect_err("the media URL opened twice");
    assert!(again.contains("403"), "{again}");
    drop(ws);

    // --- Plivo (answer URL, V3 signature) ---
    let url = format!("{}/plivo/voice", s.base);
    let signed_url = format!("https://{h}/plivo/voice");
    let (fields, body) = form(&[
        ("CallUUID", "pl-1"),
        ("Direction", "inbound"),
        ("From", OWNER),
        ("To", "+15557650000"),
    ]);
    let (st, _) = post(&url, &[], body.clone(), false).await;
    assert_eq!(st, 403, "an unsigned Plivo request");
    let (posed_fields, posed_body) = form(&[
        ("CallUUID", "pl-1"),
        ("Direction", "inbound"),
        ("From", POSED),
        ("To", "+15557650000"),
    ]);
    let signed = plivo_headers(&signed_url, &fields, "31415926535897932384");
    let (st, _) = post(&url, &signed, posed_body, false).await;
    assert_eq!(st, 403, "a Plivo signature over another caller");
    let other_url = plivo_headers(
        "https://evil.example/plivo/voice",
        &posed_fields,
        "2718281828",
    );
    let (st, _) = post(&url, &other_url, body.clone(), false).await;
    assert_eq!(st, 403, "a Plivo signature for another URL");
    let (st, answer) = post(&url, &signed, body.clone(), false).await;
    assert_eq!(st, 200, "{answer}");
    assert!(answer.contains("bidirectional=\"true\""), "{answer}");
    let (st, _) = post(&url, &signed, body.clone(), false).await;
    assert_eq!(st, 403, "the same Plivo nonce again");
    let mut ws = open(&media_url(&answer), &[]).await.expect("opens");
    let start = json!({"event": "start", "sequenceNumber": 0, "start": {"callId": "pl-1",
        "streamId": "pl-stream", "accountId": "MA1", "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
        "extra_headers": json!({"caller": POSED}).to_string()});
    assert_eq!(greeting_for(&s, &mut ws, start).await, "user_789", "Plivo");
    drop(ws);

    // --- Vonage (answer URL, signed-callback JWT) ---
    let url = format!("{}/vonage/answer", s.base);
    let body = json!({"from": OWNER.trim_start_matches('+'), "to": "15557650000",
        "uuid": "vg-1", "conversation_uuid": "CON-1"})
    .to_string();
    let (st, _) = post(&url, &[], body.clone(), true).await;
    assert_eq!(st, 403, "an unsigned Vonage request");
    let signed = vonage_auth(VONAGE, &body, now_secs(), "jti-0001");
    let (st, _) = post(&url, &signed, body.replace("0789", "0321"), true).await;
    assert_eq!(st, 403, "a Vonage JWT whose payload hash is another body's");
    let wrong_key = vonage_auth("someone-elses-secret", &body, now_secs(), "jti-0002");
    let (st, _) = post(&url, &wrong_key, body.clone(), true).await;
    assert_eq!(st, 403, "a Vonage JWT under another secret");
    let (st, answer) = post(&url, &signed, body.clone(), true).await;
    assert_eq!(st, 200, "{answer}");
    let ncco: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        ncco[0]["endpoint"][0]["headers"]["uuid"], "vg-1",
        "{answer}"
    );
    let (st, _) = post(&url, &signed, body.clone(), true).await;
    assert_eq!(st, 403, "the same Vonage JWT again");
    let mut ws = open(&media_url(&answer), &[]).await.expect("opens");
    let start = json!({"event": "websocket:connected", "content-type": "audio/l16;rate=16000",
        "uuid": "vg-1", "caller": POSED});
    assert_eq!(greeting_for(&s, &mut ws, start).await, "user_789", "Vonage");
    drop(ws);

    // --- Twilio (voice webhook HMAC-SHA1; the stream's start carries the answer's token) ---
    let url = format!("{}/twilio/voice", s.base);
    let (fields, body) = form(&[
        ("CallSid", "CA-tw-1"),
        ("From", OWNER),
        ("To", "+15557650000"),
    ]);
    let sig = twilio::signature(TWILIO, &format!("https://{h}/twilio/voice"), &fields);
    let (st, twiml) = post(&url, &[("x-twilio-signature", sig)], body, false).await;
    assert_eq!(st, 200, "{twiml}");
    let token = twilio_token(&twiml);
    let ws_sig = twilio::signature(TWILIO, &format!("wss://{h}/twilio/media"), &[]);
    let media = format!("ws://{h}/twilio/media");
    let start = |params: Value| {
        json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
            "streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA-tw-1", "tracks": ["inbound"],
            "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
    };
    let mut ws = open(&media, &[("x-twilio-signature", ws_sig.clone())])
        .await
        .expect("a signed Twilio stream opens");
    let started = start(json!({"caller": POSED, "token": token}));
    assert_eq!(
        greeting_for(&s, &mut ws, started).await,
        "user_789",
        "Twilio"
    );
    drop(ws);
    // A signed stream whose parameters pose as a caller without the gateway's token (or with
    // the token already used) is nobody.
    for params in [
        json!({"caller": POSED}),
        json!({"caller": POSED, "token": token}),
    ] {
        let mut ws = open(&media, &[("x-twilio-signature", ws_sig.clone())])
            .await
            .expect("opens");
        assert_eq!(greeting_for(&s, &mut ws, start(params)).await, "unknown");
    }

    // The operator's own answer application asks for the stream (admin), naming the caller it
    // verified: a Twilio token parameter, an Exotel URL.
    let mint_url = format!("{}/v1/stream-urls", s.base);
    let mint = |provider: &str| {
        crate::security::call(
            reqwest::Method::POST,
            &mint_url,
            Some(ADMIN),
            None,
            Some(json!({"provider": provider, "caller": OWNER})),
        )
    };
    let (st, v) = mint("twilio").await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["url"], format!("wss://{h}/twilio/media"), "{v}");
    let token = v["parameters"]["token"].as_str().unwrap().to_string();
    let mut ws = open(&media, &[("x-twilio-signature", ws_sig.clone())])
        .await
        .expect("opens");
    let started = start(json!({"caller": POSED, "token": token}));
    assert_eq!(greeting_for(&s, &mut ws, started).await, "user_789");
    drop(ws);
    let (st, v) = mint("exotel").await;
    assert_eq!(st, 201, "{v}");
    let mut ws = open(&media_url(&v["url"].to_string()), &[])
        .await
        .expect("opens");
    let start = json!({"event": "start", "sequence_number": "1", "stream_sid": "ex-1",
        "start": {"stream_sid": "ex-1", "call_sid": "ex-call", "account_sid": "ex",
                  "custom_parameters": {"caller": POSED},
                  "media_format": {"encoding": "base64", "sample_rate": "8000", "bit_rate": "128kbps"}}});
    assert_eq!(greeting_for(&s, &mut ws, start).await, "user_789", "Exotel");
    drop(ws);

    assert!(
        !greeted(&s).await.iter().any(|to| to == "user_321"),
        "no call was ever taken as the posed caller"
    );
}
