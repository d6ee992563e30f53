//! Plivo audio streams: inbound JSON parsing, outbound `playAudio`/`clearAudio`/`checkpoint`, and
//! the hang-up URL.
//!
//! Inbound `playedStream` (a `checkpoint` we sent was reached) maps to [`Inbound::Mark`];
//! `clearedAudio` (acknowledges `clearAudio`) maps to [`Inbound::Ignored`]. `start.extra_headers`
//! (an object, or a string holding a JSON object) ends up in `params`.
//!
//! A call reaches the gateway through Plivo's answer URL: Plivo's request carries a V3 signature
//! ([`verify_v3`]) and the gateway answers [`stream_xml`], which connects the call's audio to a
//! media URL carrying a one-call token.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{
    CowStr, Encoding, FormatRules, Inbound, MediaBody, Named, ProtocolError, SignatureError,
    StartFormat, UrlPart, build_url, check_size, dtmf_event, encode_b64_into, media_event, opt_u64,
    push_json_str, push_xml_escaped,
};

/// `contentType` for μ-law audio.
pub const CONTENT_MULAW: &str = "audio/x-mulaw";
/// `contentType` for 16-bit linear PCM audio (8000 or 16000 Hz).
pub const CONTENT_L16: &str = "audio/x-l16";

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    event: CowStr<'a>,
    #[serde(rename = "sequenceNumber", default, deserialize_with = "opt_u64")]
    sequence_number: Option<u64>,
    #[serde(rename = "streamId", default)]
    stream_id: Option<String>,
    #[serde(default)]
    start: Option<Start>,
    #[serde(default, borrow)]
    media: Option<MediaBody<'a>>,
    #[serde(default)]
    dtmf: Option<Named>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    extra_headers: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Start {
    #[serde(rename = "streamId", default)]
    stream_id: Option<String>,
    #[serde(rename = "callId", default)]
    call_id: Option<String>,
    #[serde(rename = "mediaFormat", default)]
    media_format: Option<StartFormat>,
}

fn extra_params(v: Option<serde_json::Value>) -> BTreeMap<String, String> {
    match v {
        Some(serde_json::Value::Object(m)) => super::params_from_object(Some(&m)),
        Some(serde_json::Value::String(s)) => {
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&s) {
                Ok(m) => super::params_from_object(Some(&m)),
                Err(_) if s.trim().is_empty() => BTreeMap::new(),
                Err(_) => BTreeMap::from([("extra_headers".to_owned(), s)]),
            }
        }
        _ => BTreeMap::new(),
    }
}

/// Parses one text frame from Plivo.
pub fn parse(text: &str) -> Result<Inbound, ProtocolError> {
    check_size(text.len())?;
    let msg: Msg<'_> = serde_json::from_str(text)?;
    match &*msg.event {
        "connected" => Ok(Inbound::Connected),
        "start" => {
            let start = msg.start.ok_or(ProtocolError::MissingField("start"))?;
            let stream_id = start
                .stream_id
                .or(msg.stream_id)
                .ok_or(ProtocolError::MissingField("start.streamId"))?;
            let call_id = start
                .call_id
                .ok_or(ProtocolError::MissingField("start.callId"))?;
            let format = start
                .media_format
                .ok_or(ProtocolError::MissingField("start.mediaFormat"))?
                .resolve(&FormatRules::CAMEL)?;
            Ok(Inbound::Start {
                stream_id,
                call_id,
                format,
                params: extra_params(msg.extra_headers),
            })
        }
        "media" => media_event(msg.media, msg.sequence_number),
        "dtmf" => dtmf_event(msg.dtmf),
        "playedStream" => Ok(Inbound::Mark {
            name: msg.name.ok_or(ProtocolError::MissingField("name"))?,
        }),
        "clearedAudio" => Ok(Inbound::Ignored),
        "stop" => Ok(Inbound::Stop),
        other => Err(ProtocolError::UnknownEvent(other.to_owned())),
    }
}

/// The `contentType` Plivo uses for `encoding`, if it plays that encoding.
pub fn content_type(encoding: Encoding) -> Option<&'static str> {
    match encoding {
        Encoding::Mulaw => Some(CONTENT_MULAW),
        Encoding::L16 => Some(CONTENT_L16),
        Encoding::Alaw => None,
    }
}

/// Writes `{"event":"playAudio","media":{"contentType":…,"sampleRate":…,"payload":<base64>}}` into
/// `out` (cleared first). Use [`CONTENT_MULAW`] at 8000 Hz or [`CONTENT_L16`] at 8000/16000 Hz.
pub fn play_audio(content_type: &str, sample_rate: u32, audio: &[u8], out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    out.reserve(96 + audio.len().div_ceil(3) * 4);
    out.push_str(r#"{"event":"playAudio","media":{"contentType":"#);
    push_json_str(out, content_type);
    let _ = write!(out, r#","sampleRate":{sample_rate},"payload":""#);
    encode_b64_into(audio, out);
    out.push_str("\"}}");
}

/// Writes `{"event":"clearAudio","streamId":…}` into `out` (cleared first); Plivo answers `clearedAudio`.
pub fn clear_audio(stream_id: &str, out: &mut String) {
    out.clear();
    out.push_str(r#"{"event":"clearAudio","streamId":"#);
    push_json_str(out, stream_id);
    out.push('}');
}

/// Writes `{"event":"checkpoint","streamId":…,"name":…}` into `out` (cleared first); Plivo answers
/// `playedStream` with the same name once the audio queued before it has played.
pub fn checkpoint(stream_id: &str, name: &str, out: &mut String) {
    out.clear();
    out.push_str(r#"{"event":"checkpoint","streamId":"#);
    push_json_str(out, stream_id);
    out.push_str(r#","name":"#);
    push_json_str(out, name);
    out.push('}');
}

/// `{api_base}/v1/Account/{auth_id}/Call/{call_id}/`, HTTP Basic `auth_id:auth_token`: DELETE
/// hangs the call up, POST with [`transfer_body`] transfers it. `api_base` is normally
/// `https://api.plivo.com`.
pub fn call_url(api_base: &str, auth_id: &str, call_id: &str) -> String {
    build_url(
        api_base,
        &[
            UrlPart::Lit("/v1/Account/"),
            UrlPart::Seg(auth_id),
            UrlPart::Lit("/Call/"),
            UrlPart::Seg(call_id),
            UrlPart::Lit("/"),
        ],
    )
}

/// The JSON body of Plivo's transfer request (POST to [`call_url`]): the caller's leg fetches its
/// next instructions (Plivo XML) from `xml_url` with GET. Plivo has no transfer-to-number call:
/// `xml_url` serves [`dial_xml`].
pub fn transfer_body(xml_url: &str) -> String {
    serde_json::json!({"legs": "aleg", "aleg_url": xml_url, "aleg_method": "GET"}).to_string()
}

/// Plivo XML dialling `to`: a phone number, or a SIP endpoint (`sip:…`) as `<User>`.
pub fn dial_xml(to: &str) -> String {
    let (tag, end) = if to.starts_with("sip:") {
        ("<User>", "</User>")
    } else {
        ("<Number>", "</Number>")
    };
    let mut out = String::with_capacity(96 + to.len());
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial>"#);
    out.push_str(tag);
    push_xml_escaped(&mut out, to);
    out.push_str(end);
    out.push_str("</Dial></Response>");
    out
}

/// The signature that makes a transfer URL ours: hex HMAC-SHA256 of the destination, keyed with
/// the account's auth token. The gateway serves [`dial_xml`] only for a destination it signed, so
/// its transfer endpoint cannot be used to dial anywhere else.
pub fn transfer_signature(auth_token: &str, to: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(to.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `sig` is [`transfer_signature`] of `to` (compared in constant time).
pub fn verify_transfer_signature(auth_token: &str, to: &str, sig: &str) -> bool {
    !auth_token.is_empty()
        && bool::from(
            transfer_signature(auth_token, to)
                .as_bytes()
                .ct_eq(sig.trim().as_bytes()),
        )
}

/// `{base}/plivo/transfer?to=…&sig=…`: where Plivo fetches the XML of a transfer to `to`.
pub fn transfer_xml_url(base: &str, auth_token: &str, to: &str) -> String {
    let sig = transfer_signature(auth_token, to);
    let query =
        serde_urlencoded::to_string([("to", to), ("sig", sig.as_str())]).unwrap_or_default();
    format!("{}/plivo/transfer?{query}", base.trim_end_matches('/'))
}

/// The text Plivo's V3 scheme signs for a request to `url` (as Plivo called it, query included)
/// with form parameters `params` (POST; pass none for GET, whose parameters are in the query):
/// the URL without its query, then `?` and the query's parameters sorted (`k=v` joined by `&`,
/// percent-decoded, values of one name sorted), then — for a POST with parameters — `.` (after a
/// non-empty query) and each parameter's name and value concatenated in sorted order.
pub fn v3_signed_url(url: &str, params: &[(String, String)]) -> String {
    let url = url.split('#').next().unwrap_or("");
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut q: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    q.sort_unstable();
    let mut p: Vec<&(String, String)> = params.iter().collect();
    p.sort_unstable();
    let mut out = String::with_capacity(url.len() + 64 * params.len());
    out.push_str(base);
    if !q.is_empty() || !p.is_empty() {
        out.push('?');
        for (i, (k, v)) in q.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
    }
    if !q.is_empty() && !p.is_empty() {
        out.push('.');
    }
    for (k, v) in p {
        out.push_str(k);
        out.push_str(v);
    }
    out
}

/// `X-Plivo-Signature-V3` of [`v3_signed_url`] with the request's nonce: base64(HMAC-SHA256(
/// auth_token, signed_url + "." + nonce)).
pub fn v3_signature(auth_token: &str, signed_url: &str, nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(signed_url.as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    let mut out = String::with_capacity(44);
    encode_b64_into(&mac.finalize().into_bytes(), &mut out);
    out
}

/// Checks Plivo's V3 signature of a request to `url` (query included) with form `params` (POST)
/// or none (GET): `header` (`X-Plivo-Signature-V3`, one signature per active auth token,
/// comma-separated) must hold [`v3_signature`] for `nonce` (`X-Plivo-Signature-V3-Nonce`).
/// Compared in constant time.
pub fn verify_v3(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    nonce: Option<&str>,
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let (Some(nonce), Some(header)) = (nonce, header) else {
        return Err(SignatureError::Missing);
    };
    if auth_token.is_empty() || nonce.trim().is_empty() {
        return Err(SignatureError::Malformed);
    }
    let want = v3_signature(auth_token, &v3_signed_url(url, params), nonce.trim());
    let mut ok = subtle::Choice::from(0u8);
    for got in header.split(',') {
        ok |= want.as_bytes().ct_eq(got.trim().as_bytes());
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Plivo XML answering a call with a bidirectional μ-law stream to `ws_url` that keeps the call
/// up while it lasts; XML-escaped.
pub fn stream_xml(ws_url: &str) -> String {
    let mut out = String::with_capacity(200 + ws_url.len());
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000">"#);
    push_xml_escaped(&mut out, ws_url);
    out.push_str("</Stream></Response>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::MAX_MESSAGE_BYTES;
    use crate::transport::MediaFormat;
    use serde_json::{Value, json};

    fn v(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or(Value::Null)
    }

    #[test]
    fn parses_messages() {
        let start = r#"{"event":"start","sequenceNumber":0,"start":{"callId":"c-1","streamId":"s-1",
          "accountId":"MA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000}},
          "extra_headers":"{\"tenant\":\"acme\"}"}"#;
        assert_eq!(
            parse(start).ok(),
            Some(Inbound::Start {
                stream_id: "s-1".into(),
                call_id: "c-1".into(),
                format: MediaFormat {
                    encoding: Encoding::L16,
                    sample_rate: 16000,
                    channels: 1
                },
                params: BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]),
            })
        );
        let media = r#"{"event":"media","sequenceNumber":3,"streamId":"s-1","media":{"track":"inbound",
          "timestamp":"1700000000123","chunk":2,"payload":"/w=="},"extra_headers":"{}"}"#;
        assert_eq!(
            parse(media).ok(),
            Some(Inbound::Media {
                payload: vec![0xff],
                seq: Some(2),
                timestamp_ms: Some(1_700_000_000_123)
            })
        );
        let dtmf = r#"{"event":"dtmf","streamId":"s-1","dtmf":{"track":"inbound","digit":"9"}}"#;
        assert_eq!(parse(dtmf).ok(), Some(Inbound::Dtmf { digit: '9' }));
        let played =
            r#"{"event":"playedStream","sequenceNumber":5,"streamId":"s-1","name":"cp-1"}"#;
        assert_eq!(
            parse(played).ok(),
            Some(Inbound::Mark {
                name: "cp-1".into()
            })
        );
        let cleared = r#"{"event":"clearedAudio","sequenceNumber":6,"streamId":"s-1"}"#;
        assert_eq!(parse(cleared).ok(), Some(Inbound::Ignored));
        assert_eq!(parse(r#"{"event":"stop"}"#).ok(), Some(Inbound::Stop));
    }

    #[test]
    fn extra_headers_forms() {
        assert!(extra_params(None).is_empty());
        assert!(extra_params(Some(json!(""))).is_empty());
        assert_eq!(
            extra_params(Some(json!({"a":"b"}))),
            BTreeMap::from([("a".to_owned(), "b".to_owned())])
        );
        assert_eq!(
            extra_params(Some(json!("k=v"))),
            BTreeMap::from([("extra_headers".to_owned(), "k=v".to_owned())])
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(parse("nope"), Err(ProtocolError::Json(_))));
        assert!(matches!(
            parse(r#"{"event":"playAudio"}"#),
            Err(ProtocolError::UnknownEvent(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"playedStream"}"#),
            Err(ProtocolError::MissingField("name"))
        ));
        assert!(matches!(
            parse(r#"{"event":"start","start":{"streamId":"s"}}"#),
            Err(ProtocolError::MissingField("start.callId"))
        ));
        assert!(matches!(
            parse(r#"{"event":"media","media":{"payload":"a"}}"#),
            Err(ProtocolError::BadBase64)
        ));
        let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(parse(&big), Err(ProtocolError::TooLarge(_))));
    }

    #[test]
    fn outbound_round_trips() {
        let mut out = String::new();
        play_audio(CONTENT_MULAW, 8000, &[0xff, 0xff, 0xff], &mut out);
        assert_eq!(
            v(&out),
            json!({"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":8000,"payload":"////"}})
        );
        clear_audio("s-1", &mut out);
        assert_eq!(v(&out), json!({"event":"clearAudio","streamId":"s-1"}));
        checkpoint("s-1", "cp\"1", &mut out);
        assert_eq!(
            v(&out),
            json!({"event":"checkpoint","streamId":"s-1","name":"cp\"1"})
        );
        assert_eq!(content_type(Encoding::L16), Some(CONTENT_L16));
        assert_eq!(content_type(Encoding::Alaw), None);
        assert_eq!(
            call_url("https://api.plivo.com", "MA1", "c-1"),
            "https://api.plivo.com/v1/Account/MA1/Call/c-1/"
        );
    }

    #[test]
    fn a_transfer_dials_only_what_the_gateway_signed() {
        assert_eq!(
            dial_xml("+15005550006"),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Number>+15005550006</Number></Dial></Response>"#
        );
        assert!(
            dial_xml("sip:desk@pbx.example.com").contains("<User>sip:desk@pbx.example.com</User>")
        );
        assert!(dial_xml("+1</Number><Hangup/>").contains("+1&lt;/Number&gt;&lt;Hangup/&gt;"));
        let url = transfer_xml_url("https://gw.example.com/", "tok", "+15005550006");
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://gw.example.com/plivo/transfer");
        let q: BTreeMap<String, String> = serde_urlencoded::from_str(query).unwrap();
        assert_eq!(q["to"], "+15005550006");
        assert_eq!(q["sig"].len(), 64);
        assert!(verify_transfer_signature("tok", "+15005550006", &q["sig"]));
        assert!(!verify_transfer_signature("tok", "+15005550007", &q["sig"]));
        assert!(!verify_transfer_signature(
            "other",
            "+15005550006",
            &q["sig"]
        ));
        assert!(!verify_transfer_signature(
            "",
            "+15005550006",
            &transfer_signature("", "+15005550006")
        ));
        assert!(!verify_transfer_signature("tok", "+15005550006", ""));
        assert_eq!(
            v(&transfer_body("https://x/y?a=1&b=2")),
            json!({"legs": "aleg", "aleg_url": "https://x/y?a=1&b=2", "aleg_method": "GET"})
        );
    }

    // Computed with Plivo's Python SDK (plivo.utils.signature_v3: construct_post_url,
    // construct_get_url, get_signature_v3), auth token "pl-token", nonce below.
    const NONCE: &str = "12345678901234567890";

    fn form() -> Vec<(String, String)> {
        [
            ("From", "+15550100123"),
            ("To", "+15557650000"),
            ("CallUUID", "c0ffee"),
            ("Direction", "inbound"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn v3_signatures_match_plivos_sdk_for_post_and_get() {
        let url = "https://gw.example.com/plivo/voice?tenant=acme";
        assert_eq!(
            v3_signed_url(url, &form()),
            "https://gw.example.com/plivo/voice?tenant=acme.CallUUIDc0ffeeDirectioninboundFrom+15550100123To+15557650000"
        );
        let post = "ZBMt4kpjlF3WSV+rIkm3sshTA+8kXrVK31Pc0eGNnyY=";
        assert_eq!(
            verify_v3("pl-token", url, &form(), Some(NONCE), Some(post)),
            Ok(())
        );
        // One signature per active token: any one of them may match.
        let two = format!("c29tZXRoaW5nIGVsc2U=, {post}");
        assert_eq!(
            verify_v3("pl-token", url, &form(), Some(NONCE), Some(&two)),
            Ok(())
        );

        let get_url = "https://gw.example.com/plivo/voice?From=%2B15550100123&CallUUID=c0ffee";
        assert_eq!(
            v3_signed_url(get_url, &[]),
            "https://gw.example.com/plivo/voice?CallUUID=c0ffee&From=+15550100123"
        );
        let get = "7SybPki2G0sYxt8RUQGEE64LeGlO9jqcLHXS5zv6kIM=";
        assert_eq!(
            verify_v3("pl-token", get_url, &[], Some(NONCE), Some(get)),
            Ok(())
        );
    }

    #[test]
    fn a_v3_signature_fails_for_any_other_request() {
        let url = "https://gw.example.com/plivo/voice?tenant=acme";
        let post = "ZBMt4kpjlF3WSV+rIkm3sshTA+8kXrVK31Pc0eGNnyY=";
        let mut other = form();
        other[0].1 = "+15550100199".into();
        let check = |token: &str,
                     url: &str,
                     f: &[(String, String)],
                     nonce: Option<&str>,
                     h: Option<&str>| { verify_v3(token, url, f, nonce, h) };
        assert_eq!(
            check("pl-token", url, &other, Some(NONCE), Some(post)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(
                "pl-token",
                url,
                &form(),
                Some("12345678901234567891"),
                Some(post)
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check("another", url, &form(), Some(NONCE), Some(post)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(
                "pl-token",
                "https://evil.example.com/plivo/voice?tenant=acme",
                &form(),
                Some(NONCE),
                Some(post)
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check("pl-token", url, &form(), None, Some(post)),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check("pl-token", url, &form(), Some(NONCE), None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check("", url, &form(), Some(NONCE), Some(post)),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_answer_streams_mulaw_both_ways() {
        assert_eq!(
            stream_xml("wss://gw/plivo/media?token=a&b"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Stream bidirectional=\"true\" keepCallAlive=\"true\" contentType=\"audio/x-mulaw;rate=8000\">wss://gw/plivo/media?token=a&amp;b</Stream></Response>"
        );
    }
}
