//! Telephony WebSocket protocol framing (sans-I/O).
//!
//! Each provider module turns one WebSocket frame into a provider-neutral [`Inbound`] and writes
//! outbound control/media messages into caller-provided buffers. Nothing here owns a socket, a clock
//! or any policy (pacing, retries, barge-in): callers decide; these modules only frame.
//!
//! Conventions shared by every provider module:
//! - `parse` rejects text larger than [`MAX_MESSAGE_BYTES`] before touching JSON, never panics and
//!   returns a [`ProtocolError`] for malformed input.
//! - [`Inbound::Media::seq`] is the provider's per-media-frame counter (`chunk`) when it sends one
//!   (contiguous among media frames, suitable for gap detection/reordering), otherwise its message
//!   sequence number.
//! - Outbound builders clear `out` and then write exactly one message into it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserializer;
use serde::de::{self, Visitor};

pub mod exotel;
pub mod plivo;
pub mod telnyx;
pub mod twilio;
pub mod vonage;
pub mod wire;

/// Largest inbound frame (text or binary) accepted by any parser.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Audio sample encoding of a media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// G.711 μ-law, one byte per sample.
    Mulaw,
    /// G.711 A-law, one byte per sample.
    Alaw,
    /// Signed 16-bit linear PCM, little-endian on the wire for every provider here.
    L16,
}

/// Format of a media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaFormat {
    /// Sample encoding.
    pub encoding: Encoding,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
}

impl MediaFormat {
    /// 8 kHz mono μ-law, the usual telephone format.
    pub const MULAW_8K: MediaFormat = MediaFormat {
        encoding: Encoding::Mulaw,
        sample_rate: 8000,
        channels: 1,
    };
}

/// What a provider told us, provider-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// The WebSocket is connected; no call data yet.
    Connected,
    /// The media stream started.
    Start {
        /// Provider stream identifier (needed by outbound builders).
        stream_id: String,
        /// Provider call identifier (needed for REST hang-up/transfer).
        call_id: String,
        /// Format of inbound audio.
        format: MediaFormat,
        /// Custom parameters passed when the stream was set up.
        params: BTreeMap<String, String>,
    },
    /// A chunk of inbound audio.
    Media {
        /// Raw audio bytes (base64-decoded), in the stream's [`MediaFormat`].
        payload: Vec<u8>,
        /// Per-media-frame counter (see module docs).
        seq: Option<u64>,
        /// Provider timestamp in milliseconds, when sent.
        timestamp_ms: Option<u64>,
    },
    /// A DTMF key press.
    Dtmf {
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
    },
    /// A mark/checkpoint we sent earlier was reached (played or cleared).
    Mark {
        /// The name we gave it.
        name: String,
    },
    /// The stream stopped.
    Stop,
    /// A known message that carries nothing the caller needs.
    Ignored,
}

/// Why an inbound frame could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Not valid JSON, or a field has the wrong type.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The `event` is not one this provider defines.
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    /// The media payload is not valid base64.
    #[error("media payload is not valid base64")]
    BadBase64,
    /// A required field is absent.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field is present but its value is not acceptable.
    #[error("invalid value for field {0}")]
    BadField(&'static str),
    /// The stream uses an audio encoding we do not handle.
    #[error("unsupported audio encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The frame exceeds [`MAX_MESSAGE_BYTES`]; carries its size.
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// A binary frame arrived where the protocol only uses text.
    #[error("binary frame where text was expected")]
    Binary,
    /// The provider reported an error on the stream.
    #[error("provider error: {0}")]
    Provider(String),
}

/// How far a signed webhook's own time may be from the gateway's (the providers' SDKs use 300 s).
pub const WEBHOOK_TOLERANCE_SECS: u64 = 300;

/// Why a provider's webhook signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carries no signature (or no timestamp/nonce the scheme needs).
    #[error("the request is not signed")]
    Missing,
    /// The signature, its timestamp or the configured key cannot be decoded.
    #[error("the signature or its key is malformed")]
    Malformed,
    /// A well-formed signature that does not match the request.
    #[error("the signature does not match the request")]
    Mismatch,
    /// Signed, but too long ago (or too far ahead) to be this request's.
    #[error("the signature is too old")]
    Stale,
}

/// Telephony provider behind a media WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Twilio Media Streams.
    Twilio,
    /// Telnyx media streaming.
    Telnyx,
    /// Plivo audio streams.
    Plivo,
    /// Exotel voicebot/stream applet.
    Exotel,
    /// Vonage WebSocket endpoint.
    Vonage,
}

/// Detects the provider from a parsed `start` message (or Vonage's `websocket:connected` frame).
///
/// Twilio: `start.streamSid` + `start.callSid`; Telnyx: top-level `stream_id` + `start.call_control_id`;
/// Plivo: `start.streamId` + `start.callId`; Exotel: `start.stream_sid` + `start.call_sid`
/// (or top-level `stream_sid` + `start.call_sid`); Vonage: `event == "websocket:connected"`.
pub fn detect(start_json: &serde_json::Value) -> Option<Provider> {
    let has_str = |v: Option<&serde_json::Value>| v.is_some_and(serde_json::Value::is_string);
    if start_json.get("event").and_then(serde_json::Value::as_str) == Some("websocket:connected") {
        return Some(Provider::Vonage);
    }
    let start = start_json.get("start")?;
    if has_str(start.get("streamSid")) && has_str(start.get("callSid")) {
        Some(Provider::Twilio)
    } else if has_str(start_json.get("stream_id")) && has_str(start.get("call_control_id")) {
        Some(Provider::Telnyx)
    } else if has_str(start.get("streamId")) && has_str(start.get("callId")) {
        Some(Provider::Plivo)
    } else if (has_str(start.get("stream_sid")) || has_str(start_json.get("stream_sid")))
        && has_str(start.get("call_sid"))
    {
        Some(Provider::Exotel)
    } else {
        None
    }
}

/// Splits audio into fixed-size frames for providers that want exact sizes (Exotel, Vonage).
///
/// `push` buffers bytes, `pop` yields full frames, `flush` yields the tail padded with `pad`.
#[derive(Debug, Clone)]
pub struct FixedChunker {
    buf: Vec<u8>,
    start: usize,
    frame: usize,
    pad: u8,
}

impl FixedChunker {
    /// A chunker producing frames of `frame_bytes` (at least 1), padding the tail with `pad`.
    pub fn new(frame_bytes: usize, pad: u8) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            frame: frame_bytes.max(1),
            pad,
        }
    }

    /// Frame size in bytes.
    pub fn frame_bytes(&self) -> usize {
        self.frame
    }

    /// Bytes buffered but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends audio.
    pub fn push(&mut self, audio: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(audio);
    }

    /// The next full frame, if one is buffered.
    pub fn pop(&mut self) -> Option<&[u8]> {
        if self.buffered() < self.frame {
            return None;
        }
        let s = self.start;
        self.start += self.frame;
        self.buf.get(s..s + self.frame)
    }

    /// The remaining bytes padded to a full frame, or `None` if nothing is buffered. Resets the buffer.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.buffered() == 0 {
            self.clear();
            return None;
        }
        let mut tail = self.buf.split_off(self.start);
        tail.resize(
            self.frame.max(tail.len().div_ceil(self.frame) * self.frame),
            self.pad,
        );
        self.clear();
        Some(tail)
    }

    /// Drops everything buffered (e.g. on barge-in).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }
}

pub(crate) fn check_size(len: usize) -> Result<(), ProtocolError> {
    if len > MAX_MESSAGE_BYTES {
        Err(ProtocolError::TooLarge(len))
    } else {
        Ok(())
    }
}

pub(crate) fn decode_b64(s: &str) -> Result<Vec<u8>, ProtocolError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| ProtocolError::BadBase64)
}

pub(crate) fn encode_b64_into(audio: &[u8], out: &mut String) {
    base64::engine::general_purpose::STANDARD.encode_string(audio, out);
}

/// Maps a provider's encoding name (MIME type or codec name) to an [`Encoding`].
pub(crate) fn encoding_from_name(name: &str) -> Option<Encoding> {
    let n = name.to_ascii_lowercase();
    if n.contains("mulaw") || n.contains("ulaw") || n.contains("pcmu") {
        Some(Encoding::Mulaw)
    } else if n.contains("alaw") || n.contains("pcma") {
        Some(Encoding::Alaw)
    } else if n.contains("l16") || n.contains("pcm16") || n.contains("linear16") {
        Some(Encoding::L16)
    } else {
        None
    }
}

pub(crate) fn parse_digit(s: &str) -> Result<char, ProtocolError> {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d') => {
            Ok(c.to_ascii_uppercase())
        }
        _ => Err(ProtocolError::BadField("dtmf.digit")),
    }
}

/// Appends `s` as a JSON string literal (with quotes).
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                use fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `s` escaped for XML text or a double-quoted attribute. Characters XML 1.0 forbids are dropped.
pub(crate) fn push_xml_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// Appends `s` percent-encoded as one URL path segment (RFC 3986 unreserved characters kept).
pub(crate) fn push_path_segment(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            use fmt::Write as _;
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A piece of a REST URL: literal text or a percent-encoded path segment.
pub(crate) enum UrlPart<'a> {
    Lit(&'a str),
    Seg(&'a str),
}

/// `base` without trailing slashes followed by `parts`.
pub(crate) fn build_url(base: &str, parts: &[UrlPart<'_>]) -> String {
    let mut out = String::from(base.trim_end_matches('/'));
    for p in parts {
        match p {
            UrlPart::Lit(s) => out.push_str(s),
            UrlPart::Seg(s) => push_path_segment(&mut out, s),
        }
    }
    out
}

/// Deserializes an optional unsigned integer sent either as a JSON number or as a decimal string.
/// `null`, absent and `""` give `None`.
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an unsigned integer or a decimal string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 {
                Ok(Some(v as u64))
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse()
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

/// Keeps string values of a JSON object as parameters; other values are rendered as JSON text.
pub(crate) fn params_from_object(
    obj: Option<&serde_json::Map<String, serde_json::Value>>,
) -> BTreeMap<String, String> {
    obj.map(|m| {
        m.iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The media format object of a JSON `start` event (`mediaFormat` or `media_format`; the rate as
/// `sampleRate` or `sample_rate`), resolved by [`StartFormat::resolve`].
#[derive(serde::Deserialize, Default)]
pub(crate) struct StartFormat {
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default, alias = "sampleRate", deserialize_with = "opt_u64")]
    sample_rate: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    channels: Option<u64>,
}

/// How one provider names the format's fields in errors, and what it means by an encoding it
/// does not name.
pub(crate) struct FormatRules {
    pub encoding: &'static str,
    pub sample_rate: &'static str,
    pub channels: &'static str,
    /// `Some`: a missing or unrecognised encoding is this one (Exotel streams are PCM16 unless
    /// they say μ-law). `None`: missing is an error, unrecognised is unsupported.
    pub fallback: Option<Encoding>,
}

impl FormatRules {
    /// `start.mediaFormat` with `sampleRate` (Twilio, Plivo); a missing encoding is an error.
    pub(crate) const CAMEL: FormatRules = FormatRules {
        encoding: "start.mediaFormat.encoding",
        sample_rate: "start.mediaFormat.sampleRate",
        channels: "start.mediaFormat.channels",
        fallback: None,
    };
    /// `start.media_format` with `sample_rate` (Telnyx, Exotel); a missing encoding is an error.
    pub(crate) const SNAKE: FormatRules = FormatRules {
        encoding: "start.media_format.encoding",
        sample_rate: "start.media_format.sample_rate",
        channels: "start.media_format.channels",
        fallback: None,
    };
}

impl StartFormat {
    /// The stream's format: the rate defaults to 8 kHz and the channels to 1; zero is an error.
    pub(crate) fn resolve(self, rules: &FormatRules) -> Result<MediaFormat, ProtocolError> {
        let encoding = match (self.encoding, rules.fallback) {
            (Some(name), None) => {
                encoding_from_name(&name).ok_or(ProtocolError::UnsupportedEncoding(name))?
            }
            (None, None) => return Err(ProtocolError::MissingField(rules.encoding)),
            (name, Some(fallback)) => name
                .as_deref()
                .and_then(encoding_from_name)
                .unwrap_or(fallback),
        };
        let sample_rate = u32::try_from(self.sample_rate.unwrap_or(8000))
            .ok()
            .filter(|r| *r > 0)
            .ok_or(ProtocolError::BadField(rules.sample_rate))?;
        let channels = u16::try_from(self.channels.unwrap_or(1))
            .ok()
            .filter(|c| *c > 0)
            .ok_or(ProtocolError::BadField(rules.channels))?;
        Ok(MediaFormat {
            encoding,
            sample_rate,
            channels,
        })
    }
}

/// Borrowed-or-owned string for zero-copy JSON field access.
pub(crate) type CowStr<'a> = Cow<'a, str>;

/// The `media` object of the Twilio-style JSON protocols (Twilio, Telnyx, Plivo, Exotel).
#[derive(serde::Deserialize)]
pub(crate) struct MediaBody<'a> {
    #[serde(default, borrow)]
    payload: Option<CowStr<'a>>,
    #[serde(default, deserialize_with = "opt_u64")]
    chunk: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    timestamp: Option<u64>,
    #[serde(default)]
    track: Option<String>,
}

/// Starts `{"event":<event>` plus `,"<key>":<id>` when the protocol names the stream, in `out`
/// (cleared first). The Twilio-style outbound messages differ only in that key.
fn open_event(out: &mut String, event: &str, stream: Option<(&str, &str)>) {
    out.clear();
    out.push_str(r#"{"event":"#);
    push_json_str(out, event);
    if let Some((key, id)) = stream {
        out.push(',');
        push_json_str(out, key);
        out.push(':');
        push_json_str(out, id);
    }
}

/// `{"event":"media"[,stream],"media":{"payload":<base64>}}`.
pub(crate) fn media_json(out: &mut String, stream: Option<(&str, &str)>, audio: &[u8]) {
    out.reserve(64 + audio.len().div_ceil(3) * 4);
    open_event(out, "media", stream);
    out.push_str(r#","media":{"payload":""#);
    encode_b64_into(audio, out);
    out.push_str("\"}}");
}

/// `{"event":"mark"[,stream],"mark":{"name":…}}`.
pub(crate) fn mark_json(out: &mut String, stream: Option<(&str, &str)>, name: &str) {
    open_event(out, "mark", stream);
    out.push_str(r#","mark":{"name":"#);
    push_json_str(out, name);
    out.push_str("}}");
}

/// `{"event":"clear"[,stream]}`.
pub(crate) fn clear_json(out: &mut String, stream: Option<(&str, &str)>) {
    open_event(out, "clear", stream);
    out.push('}');
}

/// The `dtmf` / `mark` objects of the same protocols.
#[derive(serde::Deserialize)]
pub(crate) struct Named {
    #[serde(default)]
    digit: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// A `media` event: base64 audio, numbered by its chunk (else the message's sequence number).
/// Frames of the bot's own (outbound) track are not caller audio.
pub(crate) fn media_event(
    media: Option<MediaBody<'_>>,
    sequence_number: Option<u64>,
) -> Result<Inbound, ProtocolError> {
    let media = media.ok_or(ProtocolError::MissingField("media"))?;
    if media.track.as_deref() == Some("outbound") {
        return Ok(Inbound::Ignored);
    }
    let payload = media
        .payload
        .ok_or(ProtocolError::MissingField("media.payload"))?;
    Ok(Inbound::Media {
        payload: decode_b64(&payload)?,
        seq: media.chunk.or(sequence_number),
        timestamp_ms: media.timestamp,
    })
}

pub(crate) fn dtmf_event(dtmf: Option<Named>) -> Result<Inbound, ProtocolError> {
    let digit = dtmf
        .and_then(|d| d.digit)
        .ok_or(ProtocolError::MissingField("dtmf.digit"))?;
    Ok(Inbound::Dtmf {
        digit: parse_digit(&digit)?,
    })
}

pub(crate) fn mark_event(mark: Option<Named>) -> Result<Inbound, ProtocolError> {
    let name = mark
        .and_then(|m| m.name)
        .ok_or(ProtocolError::MissingField("mark.name"))?;
    Ok(Inbound::Mark { name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detect_each_provider() {
        let tw = json!({"event":"start","start":{"streamSid":"MZ1","callSid":"CA1"}});
        let tx = json!({"event":"start","stream_id":"s","start":{"call_control_id":"v3:x"}});
        let pl = json!({"event":"start","start":{"streamId":"s","callId":"c"}});
        let ex =
            json!({"event":"start","stream_sid":"s","start":{"stream_sid":"s","call_sid":"c"}});
        let vo = json!({"event":"websocket:connected","content-type":"audio/l16;rate=16000"});
        assert_eq!(detect(&tw), Some(Provider::Twilio));
        assert_eq!(detect(&tx), Some(Provider::Telnyx));
        assert_eq!(detect(&pl), Some(Provider::Plivo));
        assert_eq!(detect(&ex), Some(Provider::Exotel));
        assert_eq!(detect(&vo), Some(Provider::Vonage));
        assert_eq!(detect(&json!({"event":"start","start":{}})), None);
        assert_eq!(detect(&json!([1, 2])), None);
        assert_eq!(detect(&json!({"start":{"streamSid":1,"callSid":2}})), None);
    }

    #[test]
    fn a_start_format_resolves_with_defaults_and_rejects_zero() {
        const STRICT: FormatRules = FormatRules {
            encoding: "enc",
            sample_rate: "rate",
            channels: "ch",
            fallback: None,
        };
        const LENIENT: FormatRules = FormatRules {
            fallback: Some(Encoding::L16),
            ..STRICT
        };
        let f = |v: serde_json::Value| serde_json::from_value::<StartFormat>(v).unwrap();
        assert_eq!(
            f(json!({"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}))
                .resolve(&STRICT)
                .unwrap(),
            MediaFormat::MULAW_8K
        );
        let l16 = f(json!({"encoding":"L16","sample_rate":"16000"}))
            .resolve(&STRICT)
            .unwrap();
        assert_eq!(
            (l16.encoding, l16.sample_rate, l16.channels),
            (Encoding::L16, 16_000, 1)
        );
        assert!(matches!(
            f(json!({"encoding":"PCMA","sampleRate":0})).resolve(&STRICT),
            Err(ProtocolError::BadField("rate"))
        ));
        assert!(matches!(
            f(json!({"encoding":"PCMA","channels":0})).resolve(&STRICT),
            Err(ProtocolError::BadField("ch"))
        ));
        assert!(matches!(
            f(json!({"encoding":"PCMA","sampleRate":5_000_000_000u64})).resolve(&STRICT),
            Err(ProtocolError::BadField("rate"))
        ));
        assert!(matches!(
            f(json!({})).resolve(&STRICT),
            Err(ProtocolError::MissingField("enc"))
        ));
        assert!(matches!(
            f(json!({"encoding":"opus"})).resolve(&STRICT),
            Err(ProtocolError::UnsupportedEncoding(n)) if n == "opus"
        ));
        // Exotel: "base64" (or nothing) is its PCM16; μ-law only when named.
        for v in [json!({}), json!({"encoding":"base64"})] {
            assert_eq!(f(v).resolve(&LENIENT).unwrap().encoding, Encoding::L16);
        }
        assert_eq!(
            f(json!({"encoding":"ulaw"}))
                .resolve(&LENIENT)
                .unwrap()
                .encoding,
            Encoding::Mulaw
        );
    }

    #[test]
    fn no_parser_panics_on_truncated_or_mangled_input() {
        let samples = [
            r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":{"a":"é"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            r#"{"event":"start","stream_id":"s","start":{"call_control_id":"c","media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}}}"#,
            r#"{"event":"start","start":{"callId":"c","streamId":"s","mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000}},"extra_headers":"{\"k\":\"v\"}"}"#,
            r#"{"event":"media","sequence_number":"4","media":{"chunk":"2","timestamp":"5","payload":"/38AAQ=="}}"#,
            r#"{"event":"dtmf","dtmf":{"digit":"1"}}"#,
            r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000","uuid":"u"}"#,
        ];
        type Parse = fn(&str) -> Result<Inbound, ProtocolError>;
        let parsers: [Parse; 5] = [
            twilio::parse,
            telnyx::parse,
            plivo::parse,
            exotel::parse,
            vonage::parse_text,
        ];
        for s in samples {
            for (i, _) in s.char_indices() {
                for p in parsers {
                    let _ = p(&s[..i]);
                    let _ = p(&s[i..]);
                }
            }
            let bytes = s.as_bytes();
            for i in 0..bytes.len() {
                let mut m = bytes.to_vec();
                m[i] = b'"';
                if let Ok(t) = std::str::from_utf8(&m) {
                    for p in parsers {
                        let _ = p(t);
                    }
                }
                let _ = vonage::parse_binary(&bytes[..i]);
            }
        }
    }

    #[test]
    fn chunker_frames_and_pads() {
        let mut c = FixedChunker::new(4, 0);
        c.push(&[1, 2, 3]);
        assert_eq!(c.pop(), None);
        c.push(&[4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(c.pop(), Some(&[1, 2, 3, 4][..]));
        assert_eq!(c.pop(), Some(&[5, 6, 7, 8][..]));
        assert_eq!(c.pop(), None);
        c.push(&[11]);
        assert_eq!(c.flush(), Some(vec![9, 10, 11, 0]));
        assert_eq!(c.flush(), None);
        assert_eq!(c.buffered(), 0);
        for i in 0..1000u32 {
            c.push(&i.to_le_bytes());
            assert_eq!(c.pop().map(<[u8]>::to_vec), Some(i.to_le_bytes().to_vec()));
        }
        assert!(c.buf.len() <= 8);
    }

    #[test]
    fn escapes() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\n\u{1}é");
        assert_eq!(
            serde_json::from_str::<String>(&s).ok().as_deref(),
            Some("a\"b\\c\n\u{1}é")
        );
        let mut x = String::new();
        push_xml_escaped(&mut x, "<a href='x'>&\"\u{0}\n");
        assert_eq!(x, "&lt;a href=&apos;x&apos;&gt;&amp;&quot;&#10;");
        assert_eq!(
            build_url("https://h/", &[UrlPart::Lit("/v/"), UrlPart::Seg("a/b c")]),
            "https://h/v/a%2Fb%20c"
        );
    }

    #[test]
    fn digits_and_encodings() {
        assert_eq!(parse_digit("5").ok(), Some('5'));
        assert_eq!(parse_digit("#").ok(), Some('#'));
        assert!(parse_digit("").is_err());
        assert!(parse_digit("12").is_err());
        assert!(parse_digit("x").is_err());
        assert_eq!(encoding_from_name("audio/x-mulaw"), Some(Encoding::Mulaw));
        assert_eq!(encoding_from_name("PCMA"), Some(Encoding::Alaw));
        assert_eq!(
            encoding_from_name("audio/l16;rate=16000"),
            Some(Encoding::L16)
        );
        assert_eq!(encoding_from_name("opus"), None);
    }
}
