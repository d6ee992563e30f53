//! Twilio Media Streams: inbound JSON parsing, outbound `media`/`mark`/`clear` messages,
//! `<Connect><Stream>` TwiML, webhook signature (`X-Twilio-Signature`) and REST call-update forms.
//!
//! Marks: Twilio echoes a `mark` when all audio sent before it has played, and also echoes every
//! pending mark when a `clear` empties the buffer, so an echoed mark means "played or cleared".

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::{
    CowStr, FormatRules, Inbound, MediaBody, Named, ProtocolError, StartFormat, UrlPart, build_url,
    check_size, clear_json, dtmf_event, encode_b64_into, mark_event, mark_json, media_event,
    media_json, opt_u64, push_xml_escaped,
};

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    event: CowStr<'a>,
    #[serde(rename = "sequenceNumber", default, deserialize_with = "opt_u64")]
    sequence_number: Option<u64>,
    #[serde(rename = "streamSid", default)]
    stream_sid: Option<String>,
    #[serde(default)]
    start: Option<Start>,
    #[serde(default, borrow)]
    media: Option<MediaBody<'a>>,
    #[serde(default)]
    dtmf: Option<Named>,
    #[serde(default)]
    mark: Option<Named>,
}

#[derive(Deserialize)]
struct Start {
    #[serde(rename = "streamSid", default)]
    stream_sid: Option<String>,
    #[serde(rename = "callSid", default)]
    call_sid: Option<String>,
    #[serde(rename = "customParameters", default)]
    custom_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "mediaFormat", default)]
    media_format: Option<StartFormat>,
}

/// Parses one text frame from Twilio.
///
/// `Media::seq` is `media.chunk` (falling back to `sequenceNumber`); `timestamp_ms` is `media.timestamp`
/// (ms since the stream started).
pub fn parse(text: &str) -> Result<Inbound, ProtocolError> {
    check_size(text.len())?;
    let msg: Msg<'_> = serde_json::from_str(text)?;
    match &*msg.event {
        "connected" => Ok(Inbound::Connected),
        "start" => {
            let start = msg.start.ok_or(ProtocolError::MissingField("start"))?;
            let stream_id = start
                .stream_sid
                .or(msg.stream_sid)
                .ok_or(ProtocolError::MissingField("start.streamSid"))?;
            let call_id = start
                .call_sid
                .ok_or(ProtocolError::MissingField("start.callSid"))?;
            let format = start
                .media_format
                .ok_or(ProtocolError::MissingField("start.mediaFormat"))?
                .resolve(&FormatRules::CAMEL)?;
            Ok(Inbound::Start {
                stream_id,
                call_id,
                format,
                params: super::params_from_object(start.custom_parameters.as_ref()),
            })
        }
        "media" => media_event(msg.media, msg.sequence_number),
        "dtmf" => dtmf_event(msg.dtmf),
        "mark" => mark_event(msg.mark),
        "stop" => Ok(Inbound::Stop),
        other => Err(ProtocolError::UnknownEvent(other.to_owned())),
    }
}

/// Writes `{"event":"media","streamSid":…,"media":{"payload":<base64>}}` into `out` (cleared first).
/// `audio` is μ-law 8 kHz without a header; any length.
pub fn media(stream_sid: &str, audio: &[u8], out: &mut String) {
    media_json(out, Some(("streamSid", stream_sid)), audio);
}

/// Writes `{"event":"mark","streamSid":…,"mark":{"name":…}}` into `out` (cleared first).
pub fn mark(stream_sid: &str, name: &str, out: &mut String) {
    mark_json(out, Some(("streamSid", stream_sid)), name);
}

/// Writes `{"event":"clear","streamSid":…}` into `out` (cleared first).
pub fn clear(stream_sid: &str, out: &mut String) {
    clear_json(out, Some(("streamSid", stream_sid)));
}

/// TwiML answering a call with a bidirectional stream to `ws_url` (must be `wss://`, no query string)
/// and the given `<Parameter>`s (delivered in `start.customParameters`). Everything is XML-escaped.
pub fn connect_twiml(ws_url: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(160 + ws_url.len() + params.len() * 48);
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url=""#);
    push_xml_escaped(&mut out, ws_url);
    out.push_str("\">");
    for (name, value) in params {
        out.push_str(r#"<Parameter name=""#);
        push_xml_escaped(&mut out, name);
        out.push_str(r#"" value=""#);
        push_xml_escaped(&mut out, value);
        out.push_str("\"/>");
    }
    out.push_str("</Stream></Connect></Response>");
    out
}

/// `X-Twilio-Signature` for a request: base64(HMAC-SHA1(auth_token, url + name+value for each
/// parameter sorted by name, values of a repeated name sorted too)). For GET/WebSocket requests pass
/// no params.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut out = String::with_capacity(28);
    encode_b64_into(&signature_raw(auth_token, url, params), &mut out);
    out
}

fn signature_raw(auth_token: &str, url: &str, params: &[(String, String)]) -> [u8; 20] {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_unstable_by(|a, b| {
        a.0.as_bytes()
            .cmp(b.0.as_bytes())
            .then(a.1.as_bytes().cmp(b.1.as_bytes()))
    });
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes()) {
        Ok(m) => m,
        Err(_) => return [0; 20],
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    let mut raw = [0u8; 20];
    raw.copy_from_slice(&mac.finalize().into_bytes());
    raw
}

/// Checks `header` (the `X-Twilio-Signature` value) in constant time against `url` as given and
/// with its default port (`:443` for https/wss, `:80` for http/ws) added or removed.
pub fn verify_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: &str,
) -> bool {
    let header = header.trim().as_bytes();
    let mut ok = subtle::Choice::from(0u8);
    let mut expected = String::with_capacity(28);
    for candidate in std::iter::once(url.to_owned()).chain(url_port_variant(url)) {
        expected.clear();
        encode_b64_into(
            &signature_raw(auth_token, &candidate, params),
            &mut expected,
        );
        ok |= expected.as_bytes().ct_eq(header);
    }
    ok.into()
}

/// The same URL with its explicit default port removed, or added when absent. `None` for other ports
/// or unknown schemes.
fn url_port_variant(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => "443",
        "http" | "ws" => "80",
        _ => return None,
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let hostport = &authority[host_start..];
    // IPv6 literals: the port colon follows the closing bracket.
    let port_colon = match hostport.rfind(']') {
        Some(b) => hostport[b..].find(':').map(|i| b + i),
        None => hostport.rfind(':'),
    };
    let prefix = &url[..scheme.len() + 3 + host_start];
    match port_colon {
        Some(c) if &hostport[c + 1..] == default => {
            Some(format!("{prefix}{}{tail}", &hostport[..c]))
        }
        Some(_) => None,
        None if hostport.is_empty() => None,
        None => Some(format!("{prefix}{hostport}:{default}{tail}")),
    }
}

/// REST form that hangs up a call: `Status=completed` (POST to [`call_url`]; 404 code 20404 means
/// the call is already gone).
pub fn hangup_form() -> Vec<(&'static str, String)> {
    vec![("Status", "completed".to_owned())]
}

/// REST form that transfers a call: `Twiml=<Response><Dial>number</Dial></Response>` (escaped).
pub fn transfer_form(number: &str) -> Vec<(&'static str, String)> {
    let mut twiml = String::from("<Response><Dial>");
    push_xml_escaped(&mut twiml, number);
    twiml.push_str("</Dial></Response>");
    vec![("Twiml", twiml)]
}

/// `{api_base}/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json` (segments percent-encoded);
/// `api_base` is normally `https://api.twilio.com`. Authenticate with HTTP Basic `AccountSid:AuthToken`.
pub fn call_url(api_base: &str, account_sid: &str, call_sid: &str) -> String {
    build_url(
        api_base,
        &[
            UrlPart::Lit("/2010-04-01/Accounts/"),
            UrlPart::Seg(account_sid),
            UrlPart::Lit("/Calls/"),
            UrlPart::Seg(call_sid),
            UrlPart::Lit(".json"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::MediaFormat;
    use crate::transport::{Encoding, MAX_MESSAGE_BYTES};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    type Params = BTreeMap<String, String>;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn parses_connected() {
        let m = parse(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#);
        assert_eq!(m.ok(), Some(Inbound::Connected));
    }

    #[test]
    fn parses_start() {
        let text = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0",
          "start":{"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","accountSid":"AC123","callSid":"CA456",
          "tracks":["inbound"],"customParameters":{"tenant":"acme","lang":"en"},
          "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        let mut params = Params::new();
        params.insert("tenant".into(), "acme".into());
        params.insert("lang".into(), "en".into());
        assert_eq!(
            parse(text).ok(),
            Some(Inbound::Start {
                stream_id: "MZ18ad3ab5a668481ce02b83e7395059f0".into(),
                call_id: "CA456".into(),
                format: MediaFormat {
                    encoding: Encoding::Mulaw,
                    sample_rate: 8000,
                    channels: 1
                },
                params,
            })
        );
        let empty = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1",
          "accountSid":"AC1","callSid":"CA1","tracks":["inbound"],"customParameters":{},
          "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        assert!(matches!(parse(empty), Ok(Inbound::Start { params, .. }) if params.is_empty()));
    }

    #[test]
    fn parses_media() {
        let text = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1",
          "media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"/38AAQ=="}}"#;
        assert_eq!(
            parse(text).ok(),
            Some(Inbound::Media {
                payload: vec![0xff, 0x7f, 0x00, 0x01],
                seq: Some(1),
                timestamp_ms: Some(5)
            })
        );
        // JSON-escaped slash in the payload, numbers as numbers, empty payload.
        let esc = r#"{"event":"media","media":{"chunk":7,"timestamp":20,"payload":"\/38AAQ=="}}"#;
        assert!(
            matches!(parse(esc), Ok(Inbound::Media { payload, seq: Some(7), timestamp_ms: Some(20) }) if payload.len() == 4)
        );
        let empty = r#"{"event":"media","sequenceNumber":"9","media":{"payload":""}}"#;
        assert!(
            matches!(parse(empty), Ok(Inbound::Media { payload, seq: Some(9), timestamp_ms: None }) if payload.is_empty())
        );
    }

    #[test]
    fn parses_dtmf_mark_stop() {
        let d = r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
        assert_eq!(parse(d).ok(), Some(Inbound::Dtmf { digit: '1' }));
        let m =
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"utt-3"}}"#;
        assert_eq!(
            parse(m).ok(),
            Some(Inbound::Mark {
                name: "utt-3".into()
            })
        );
        let s = r#"{"event":"stop","sequenceNumber":"5","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#;
        assert_eq!(parse(s).ok(), Some(Inbound::Stop));
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        assert!(matches!(parse("{not json"), Err(ProtocolError::Json(_))));
        assert!(matches!(parse(""), Err(ProtocolError::Json(_))));
        assert!(matches!(parse("[]"), Err(ProtocolError::Json(_))));
        assert!(matches!(
            parse(r#"{"streamSid":"x"}"#),
            Err(ProtocolError::Json(_))
        ));
        assert!(
            matches!(parse(r#"{"event":"bogus"}"#), Err(ProtocolError::UnknownEvent(e)) if e == "bogus")
        );
        assert!(matches!(
            parse(r#"{"event":"media","media":{"payload":"!!!"}}"#),
            Err(ProtocolError::BadBase64)
        ));
        assert!(matches!(
            parse(r#"{"event":"media","media":{}}"#),
            Err(ProtocolError::MissingField("media.payload"))
        ));
        assert!(matches!(
            parse(r#"{"event":"media"}"#),
            Err(ProtocolError::MissingField("media"))
        ));
        assert!(matches!(
            parse(
                r#"{"event":"start","start":{"streamSid":"a","mediaFormat":{"encoding":"audio/x-mulaw"}}}"#
            ),
            Err(ProtocolError::MissingField("start.callSid"))
        ));
        assert!(matches!(
            parse(r#"{"event":"start","start":{"streamSid":"a","callSid":"b"}}"#),
            Err(ProtocolError::MissingField("start.mediaFormat"))
        ));
        assert!(matches!(
            parse(
                r#"{"event":"start","start":{"streamSid":"a","callSid":"b","mediaFormat":{"encoding":"audio/opus"}}}"#
            ),
            Err(ProtocolError::UnsupportedEncoding(_))
        ));
        assert!(matches!(
            parse(
                r#"{"event":"start","start":{"streamSid":"a","callSid":"b","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":99999999999}}}"#
            ),
            Err(ProtocolError::BadField(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"dtmf","dtmf":{}}"#),
            Err(ProtocolError::MissingField(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#),
            Err(ProtocolError::BadField(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"mark","mark":{}}"#),
            Err(ProtocolError::MissingField(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"media","sequenceNumber":"x1","media":{"payload":""}}"#),
            Err(ProtocolError::Json(_))
        ));
        let big = format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            "A".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(parse(&big), Err(ProtocolError::TooLarge(n)) if n == big.len()));
    }

    #[test]
    fn parse_never_panics_on_truncations() {
        let text = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":{"a":"é"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        for (i, _) in text.char_indices() {
            let _ = parse(&text[..i]);
        }
    }

    #[test]
    fn outbound_media_round_trips() {
        let mut out = String::from("stale");
        media("MZ\"1", &[0xff, 0x7f, 0, 1], &mut out);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_eq!(
            v,
            json!({"event":"media","streamSid":"MZ\"1","media":{"payload":"/38AAQ=="}})
        );
        media("MZ1", &[], &mut out);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_eq!(
            v,
            json!({"event":"media","streamSid":"MZ1","media":{"payload":""}})
        );
    }

    #[test]
    fn outbound_mark_and_clear_round_trip() {
        let mut out = String::new();
        mark("MZ1", "utt\n\"3\"", &mut out);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_eq!(
            v,
            json!({"event":"mark","streamSid":"MZ1","mark":{"name":"utt\n\"3\""}})
        );
        clear("MZ1", &mut out);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_eq!(v, json!({"event":"clear","streamSid":"MZ1"}));
        // Our own mark parses back as an inbound mark.
        mark("MZ1", "m1", &mut out);
        assert_eq!(parse(&out).ok(), Some(Inbound::Mark { name: "m1".into() }));
    }

    #[test]
    fn twiml_is_escaped() {
        let t = connect_twiml(
            "wss://sb.example.com/twilio?x=1&y=<2>",
            &[("tenant", "a\"b"), ("q'", "x&y")],
        );
        assert_eq!(
            t,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect>"#,
                r#"<Stream url="wss://sb.example.com/twilio?x=1&amp;y=&lt;2&gt;">"#,
                r#"<Parameter name="tenant" value="a&quot;b"/>"#,
                r#"<Parameter name="q&apos;" value="x&amp;y"/>"#,
                r#"</Stream></Connect></Response>"#
            )
        );
        assert!(connect_twiml("wss://h/ws", &[]).contains(r#"<Stream url="wss://h/ws"></Stream>"#));
    }

    #[test]
    fn signature_matches_twilio_docs_vector() {
        // Twilio's documented example; independently recomputed with Python's hmac/hashlib.
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            signature("12345", url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // Order of input pairs does not matter.
        let mut rev = params.clone();
        rev.reverse();
        assert_eq!(
            signature("12345", url, &rev),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify_signature(
            "12345",
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify_signature(
            "12346",
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify_signature(
            "12345",
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ"
        ));
        assert!(!verify_signature("12345", url, &params, ""));
    }

    #[test]
    fn signature_repeated_names_sorted_by_value() {
        // python3: url + "".join(k+v for k,v in sorted(pairs)), HMAC-SHA1, base64.
        let pairs = p(&[("To", "+15550001111"), ("B", "2"), ("B", "1"), ("A", "z")]);
        assert_eq!(
            signature("secret_token", "https://sb.example.com/hook?x=1", &pairs),
            "DNDPv6kjqulYTxuBU7OGhHYDe/0="
        );
        assert_eq!(
            signature(
                "secret_token",
                "https://sb.example.com:443/hook?x=1",
                &pairs
            ),
            "spatYSzKonGRGiB40rpZGjZLyGo="
        );
    }

    #[test]
    fn verify_tries_default_port_variants() {
        let pairs = p(&[("To", "+15550001111"), ("B", "2"), ("B", "1"), ("A", "z")]);
        // Signed with the port, we know the URL without it, and vice versa.
        assert!(verify_signature(
            "secret_token",
            "https://sb.example.com/hook?x=1",
            &pairs,
            "spatYSzKonGRGiB40rpZGjZLyGo="
        ));
        assert!(verify_signature(
            "secret_token",
            "https://sb.example.com:443/hook?x=1",
            &pairs,
            "DNDPv6kjqulYTxuBU7OGhHYDe/0="
        ));
        // WebSocket upgrade: wss URL, no params.
        assert!(verify_signature(
            "secret_token",
            "wss://sb.example.com/twilio/media",
            &[],
            "fkNp0j6Y919ylmrxqo2JYeil17A="
        ));
        assert!(verify_signature(
            "secret_token",
            "wss://sb.example.com/twilio/media",
            &[],
            "pGSEFhpgRtZHBMrzw7Vt2laByuI="
        ));
        assert!(!verify_signature(
            "secret_token",
            "wss://sb.example.com:8443/twilio/media",
            &[],
            "pGSEFhpgRtZHBMrzw7Vt2laByuI="
        ));
    }

    #[test]
    fn port_variants() {
        let v = |u: &str| url_port_variant(u);
        assert_eq!(
            v("https://a.b/x?y=1").as_deref(),
            Some("https://a.b:443/x?y=1")
        );
        assert_eq!(v("https://a.b:443/x").as_deref(), Some("https://a.b/x"));
        assert_eq!(v("http://a.b").as_deref(), Some("http://a.b:80"));
        assert_eq!(v("ws://a.b:80?q").as_deref(), Some("ws://a.b?q"));
        assert_eq!(v("wss://u:p@a.b/x").as_deref(), Some("wss://u:p@a.b:443/x"));
        assert_eq!(v("https://[::1]/x").as_deref(), Some("https://[::1]:443/x"));
        assert_eq!(v("https://[::1]:443/x").as_deref(), Some("https://[::1]/x"));
        assert_eq!(v("https://a.b:8443/x"), None);
        assert_eq!(v("ftp://a.b/x"), None);
        assert_eq!(v("nonsense"), None);
        assert_eq!(v("https:///x"), None);
    }

    #[test]
    fn rest_forms() {
        assert_eq!(hangup_form(), vec![("Status", "completed".to_owned())]);
        assert_eq!(
            transfer_form("+1555<0100>&"),
            vec![(
                "Twiml",
                "<Response><Dial>+1555&lt;0100&gt;&amp;</Dial></Response>".to_owned()
            )]
        );
        assert_eq!(
            call_url("https://api.twilio.com/", "AC1", "CA2"),
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls/CA2.json"
        );
        assert_eq!(
            call_url("https://api.twilio.com", "AC1", "../x"),
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls/..%2Fx.json"
        );
    }
}
