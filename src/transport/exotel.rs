//! Exotel voicebot streams: inbound JSON parsing, outbound `media`/`mark`/`clear`, and a chunker for
//! Exotel's outbound size rule (payloads a multiple of 320 bytes, at least 3.2 KB).
//!
//! Audio is base64 PCM16 little-endian 8 kHz mono; some accounts use μ-law, which is reported only
//! when `start.media_format.encoding` names it (Exotel usually sends `"base64"` there, read as L16).

use serde::Deserialize;

use super::{
    CowStr, Encoding, FixedChunker, FormatRules, Inbound, MediaBody, Named, ProtocolError,
    StartFormat, check_size, clear_json, dtmf_event, mark_event, mark_json, media_event,
    media_json, opt_u64,
};

/// Outbound payload sizes must be a multiple of this many bytes.
pub const CHUNK_MULTIPLE: usize = 320;
/// Smallest outbound payload Exotel accepts reliably (200 ms of PCM16 8 kHz).
pub const MIN_CHUNK_BYTES: usize = 3200;

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    event: CowStr<'a>,
    #[serde(default, deserialize_with = "opt_u64")]
    sequence_number: Option<u64>,
    #[serde(default)]
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
    #[serde(default)]
    stream_sid: Option<String>,
    #[serde(default)]
    call_sid: Option<String>,
    #[serde(default)]
    custom_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    media_format: Option<StartFormat>,
}

/// Exotel's streams are PCM16 unless `start.media_format.encoding` names μ-law.
const FORMAT: FormatRules = FormatRules {
    fallback: Some(Encoding::L16),
    ..FormatRules::SNAKE
};

/// Parses one text frame from Exotel.
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
                .ok_or(ProtocolError::MissingField("start.stream_sid"))?;
            let call_id = start
                .call_sid
                .ok_or(ProtocolError::MissingField("start.call_sid"))?;
            let format = start.media_format.unwrap_or_default().resolve(&FORMAT)?;
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

/// Writes `{"event":"media","stream_sid":…,"media":{"payload":<base64>}}` into `out` (cleared
/// first). Feed it frames from [`chunker`] so sizes follow Exotel's rule.
pub fn media(stream_sid: &str, audio: &[u8], out: &mut String) {
    media_json(out, Some(("stream_sid", stream_sid)), audio);
}

/// Writes `{"event":"mark","stream_sid":…,"mark":{"name":…}}` into `out` (cleared first).
pub fn mark(stream_sid: &str, name: &str, out: &mut String) {
    mark_json(out, Some(("stream_sid", stream_sid)), name);
}

/// Writes `{"event":"clear","stream_sid":…}` into `out` (cleared first).
pub fn clear(stream_sid: &str, out: &mut String) {
    clear_json(out, Some(("stream_sid", stream_sid)));
}

/// A chunker for outbound audio: frames of `chunk_bytes` rounded up to a multiple of
/// [`CHUNK_MULTIPLE`] and at least [`MIN_CHUNK_BYTES`]; the tail is padded with silence of `encoding`.
pub fn chunker(chunk_bytes: usize, encoding: Encoding) -> FixedChunker {
    let size = chunk_bytes.max(MIN_CHUNK_BYTES).div_ceil(CHUNK_MULTIPLE) * CHUNK_MULTIPLE;
    let pad = match encoding {
        Encoding::L16 => 0x00,
        Encoding::Mulaw => 0xFF,
        Encoding::Alaw => 0xD5,
    };
    FixedChunker::new(size, pad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::MAX_MESSAGE_BYTES;
    use crate::transport::MediaFormat;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    fn v(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or(Value::Null)
    }

    #[test]
    fn parses_messages() {
        assert_eq!(
            parse(r#"{"event":"connected"}"#).ok(),
            Some(Inbound::Connected)
        );
        let start = r#"{"event":"start","sequence_number":1,"stream_sid":"st1","start":{"stream_sid":"st1",
          "call_sid":"cs1","account_sid":"acc","from":"0999","to":"0888","custom_parameters":{"lang":"hi"},
          "media_format":{"encoding":"base64","sample_rate":"8000","bit_rate":"128kbps"}}}"#;
        assert_eq!(
            parse(start).ok(),
            Some(Inbound::Start {
                stream_id: "st1".into(),
                call_id: "cs1".into(),
                format: MediaFormat {
                    encoding: Encoding::L16,
                    sample_rate: 8000,
                    channels: 1
                },
                params: BTreeMap::from([("lang".to_owned(), "hi".to_owned())]),
            })
        );
        let media = r#"{"event":"media","sequence_number":3,"stream_sid":"st1","media":{"chunk":1,
          "timestamp":"40","payload":"AAD/fw=="}}"#;
        assert_eq!(
            parse(media).ok(),
            Some(Inbound::Media {
                payload: vec![0, 0, 0xff, 0x7f],
                seq: Some(1),
                timestamp_ms: Some(40)
            })
        );
        let dtmf = r#"{"event":"dtmf","stream_sid":"st1","sequence_number":4,"dtmf":{"duration":"120","digit":"*"}}"#;
        assert_eq!(parse(dtmf).ok(), Some(Inbound::Dtmf { digit: '*' }));
        let mark =
            r#"{"event":"mark","sequence_number":5,"stream_sid":"st1","mark":{"name":"m1"}}"#;
        assert_eq!(parse(mark).ok(), Some(Inbound::Mark { name: "m1".into() }));
        let stop = r#"{"event":"stop","sequence_number":6,"stream_sid":"st1","stop":{"call_sid":"cs1","reason":"callended"}}"#;
        assert_eq!(parse(stop).ok(), Some(Inbound::Stop));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(parse("{}"), Err(ProtocolError::Json(_))));
        assert!(matches!(
            parse(r#"{"event":"clear"}"#),
            Err(ProtocolError::UnknownEvent(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"start","start":{"stream_sid":"s"}}"#),
            Err(ProtocolError::MissingField("start.call_sid"))
        ));
        assert!(matches!(
            parse(r#"{"event":"media","media":{"payload":"A==="}}"#),
            Err(ProtocolError::BadBase64)
        ));
        let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(parse(&big), Err(ProtocolError::TooLarge(_))));
    }

    #[test]
    fn outbound_round_trips() {
        let mut out = String::new();
        media("st1", &[0, 0], &mut out);
        assert_eq!(
            v(&out),
            json!({"event":"media","stream_sid":"st1","media":{"payload":"AAA="}})
        );
        mark("st1", "m", &mut out);
        assert_eq!(
            v(&out),
            json!({"event":"mark","stream_sid":"st1","mark":{"name":"m"}})
        );
        clear("st1", &mut out);
        assert_eq!(v(&out), json!({"event":"clear","stream_sid":"st1"}));
    }

    #[test]
    fn chunker_sizes() {
        assert_eq!(chunker(0, Encoding::L16).frame_bytes(), 3200);
        assert_eq!(chunker(3201, Encoding::L16).frame_bytes(), 3520);
        assert_eq!(chunker(6400, Encoding::L16).frame_bytes(), 6400);
        let mut c = chunker(3200, Encoding::Mulaw);
        c.push(&[1u8; 5000]);
        assert_eq!(c.pop().map(<[u8]>::len), Some(3200));
        assert_eq!(c.pop(), None);
        let tail = c.flush().unwrap_or_default();
        assert_eq!(tail.len(), 3200);
        assert_eq!(tail.get(1799..1801), Some(&[1u8, 0xFF][..]));
        assert_eq!(tail.len() % CHUNK_MULTIPLE, 0);
    }
}
