//! Plivo audio streams: inbound JSON parsing, outbound `playAudio`/`clearAudio`/`checkpoint`, and
//! the hang-up URL.
//!
//! Inbound `playedStream` (a `checkpoint` we sent was reached) maps to [`Inbound::Mark`];
//! `clearedAudio` (acknowledges `clearAudio`) maps to [`Inbound::Ignored`]. `start.extra_headers`
//! (an object, or a string holding a JSON object) ends up in `params`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    CowStr, Encoding, FormatRules, Inbound, MediaBody, Named, ProtocolError, StartFormat, UrlPart,
    build_url, check_size, dtmf_event, encode_b64_into, media_event, opt_u64, push_json_str,
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

const FORMAT: FormatRules = FormatRules {
    encoding: "start.mediaFormat.encoding",
    sample_rate: "start.mediaFormat.sampleRate",
    channels: "start.mediaFormat.channels",
    fallback: None,
};

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
                .resolve(&FORMAT)?;
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

/// `{api_base}/v1/Account/{auth_id}/Call/{call_id}/` (DELETE, HTTP Basic `auth_id:auth_token`);
/// `api_base` is normally `https://api.plivo.com`.
pub fn hangup_url(api_base: &str, auth_id: &str, call_id: &str) -> String {
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
            hangup_url("https://api.plivo.com", "MA1", "c-1"),
            "https://api.plivo.com/v1/Account/MA1/Call/c-1/"
        );
    }
}
