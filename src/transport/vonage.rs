//! Vonage WebSocket endpoint: binary frames of raw PCM16 LE (640 bytes = 20 ms at 16 kHz, 320 bytes
//! at 8 kHz) both ways, plus a few JSON text frames.
//!
//! The first text frame is `{"event":"websocket:connected","content-type":"audio/l16;rate=16000",…}`;
//! any other fields are the headers set in the NCCO `connect` action. It maps to [`Inbound::Start`]
//! with `stream_id` empty, `call_id` from a `uuid`/`call_uuid`/`conversation_uuid` header if present
//! (else empty) and every string header in `params`. Outbound audio: send frames from [`framer`]
//! as binary messages (Vonage queues at most 1024); interrupt with [`clear`] (`{"action":"clear"}`).

use serde_json::Value;

use super::{
    Encoding, FixedChunker, Inbound, MAX_MESSAGE_BYTES, MediaFormat, ProtocolError, UrlPart,
    build_url, check_size, parse_digit,
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
}
