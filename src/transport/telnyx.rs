//! Telnyx media streaming: inbound JSON parsing, outbound `media`/`mark`/`clear`, the hang-up URL,
//! and [`Reorder`], a bounded buffer that puts media frames back in order (Telnyx frames may arrive
//! out of order; `Inbound::Media::seq` carries `media.chunk`, falling back to `sequence_number`).
//!
//! Start carries top-level `stream_id`, `start.call_control_id` and `start.media_format`
//! (`encoding` `PCMU`/`PCMA`/`L16`, `sample_rate`, `channels`); `start.client_state` and
//! `start.custom_parameters` (if any) end up in `params`.
//!
//! A call reaches the gateway through a TeXML application: Telnyx posts the call's webhook (form
//! fields `From`, `To`, `CallSid`, …) signed with Ed25519 ([`verify_webhook`]) and the gateway
//! answers [`stream_texml`], which connects the call's audio to a media URL carrying a one-call
//! token.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    CowStr, FormatRules, Inbound, MediaBody, Named, ProtocolError, SignatureError, StartFormat,
    UrlPart, WEBHOOK_TOLERANCE_SECS, build_url, check_size, clear_json, decode_b64, dtmf_event,
    mark_event, mark_json, media_event, media_json, opt_u64, push_xml_escaped,
};

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow)]
    event: CowStr<'a>,
    #[serde(default, deserialize_with = "opt_u64")]
    sequence_number: Option<u64>,
    #[serde(default)]
    stream_id: Option<String>,
    #[serde(default)]
    start: Option<Start>,
    #[serde(default, borrow)]
    media: Option<MediaBody<'a>>,
    #[serde(default)]
    dtmf: Option<Named>,
    #[serde(default)]
    mark: Option<Named>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Start {
    #[serde(default)]
    call_control_id: Option<String>,
    #[serde(default)]
    client_state: Option<String>,
    #[serde(default)]
    custom_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    media_format: Option<StartFormat>,
}

/// Parses one text frame from Telnyx. `media` frames whose `track` is `outbound` (our own audio,
/// when both tracks are streamed) are [`Inbound::Ignored`]; an `error` event becomes
/// [`ProtocolError::Provider`].
pub fn parse(text: &str) -> Result<Inbound, ProtocolError> {
    check_size(text.len())?;
    let msg: Msg<'_> = serde_json::from_str(text)?;
    match &*msg.event {
        "connected" => Ok(Inbound::Connected),
        "start" => {
            let stream_id = msg
                .stream_id
                .ok_or(ProtocolError::MissingField("stream_id"))?;
            let start = msg.start.ok_or(ProtocolError::MissingField("start"))?;
            let call_id = start
                .call_control_id
                .ok_or(ProtocolError::MissingField("start.call_control_id"))?;
            let format = start
                .media_format
                .ok_or(ProtocolError::MissingField("start.media_format"))?
                .resolve(&FormatRules::SNAKE)?;
            let mut params: BTreeMap<String, String> =
                super::params_from_object(start.custom_parameters.as_ref());
            if let Some(cs) = start.client_state {
                params.insert("client_state".to_owned(), cs);
            }
            Ok(Inbound::Start {
                stream_id,
                call_id,
                format,
                params,
            })
        }
        "media" => media_event(msg.media, msg.sequence_number),
        "dtmf" => dtmf_event(msg.dtmf),
        "mark" => mark_event(msg.mark),
        "stop" => Ok(Inbound::Stop),
        "error" => Err(ProtocolError::Provider(
            msg.payload.map(|p| p.to_string()).unwrap_or_default(),
        )),
        other => Err(ProtocolError::UnknownEvent(other.to_owned())),
    }
}

/// Writes `{"event":"media","media":{"payload":<base64>}}` into `out` (cleared first). `audio` is in
/// the stream's codec (PCMU/PCMA 8 kHz); in RTP mode send 20 ms..30 s per message.
pub fn media(audio: &[u8], out: &mut String) {
    media_json(out, None, audio);
}

/// Writes `{"event":"mark","mark":{"name":…}}` into `out` (cleared first).
pub fn mark(name: &str, out: &mut String) {
    mark_json(out, None, name);
}

/// Writes `{"event":"clear"}` into `out` (cleared first).
pub fn clear(out: &mut String) {
    clear_json(out, None);
}

/// `{api_base}/v2/calls/{call_control_id}/actions/hangup` (POST, `Authorization: Bearer <api key>`);
/// `api_base` is normally `https://api.telnyx.com`.
pub fn hangup_url(api_base: &str, call_control_id: &str) -> String {
    build_url(
        api_base,
        &[
            UrlPart::Lit("/v2/calls/"),
            UrlPart::Seg(call_control_id),
            UrlPart::Lit("/actions/hangup"),
        ],
    )
}

/// `{api_base}/v2/calls/{call_control_id}/actions/transfer` (POST `{"to": number}`, Bearer).
pub fn transfer_url(api_base: &str, call_control_id: &str) -> String {
    build_url(
        api_base,
        &[
            UrlPart::Lit("/v2/calls/"),
            UrlPart::Seg(call_control_id),
            UrlPart::Lit("/actions/transfer"),
        ],
    )
}

/// Checks a Telnyx webhook: `signature` (header `telnyx-signature-ed25519`, base64) must be an
/// Ed25519 signature by `public_key` (the account's key from the portal, base64 of 32 bytes) of
/// `"{timestamp}|{body}"`, where `timestamp` is the `telnyx-timestamp` header (Unix seconds) and
/// `body` the raw request body; and the timestamp must be within [`WEBHOOK_TOLERANCE_SECS`] of
/// `now_secs`.
pub fn verify_webhook(
    public_key: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_secs: u64,
) -> Result<(), SignatureError> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(SignatureError::Missing);
    };
    let key = decode_b64(public_key).map_err(|_| SignatureError::Malformed)?;
    let sig = decode_b64(signature).map_err(|_| SignatureError::Malformed)?;
    let at: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    if key.len() != 32 || sig.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'|');
    signed.extend_from_slice(body);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key)
        .verify(&signed, &sig)
        .map_err(|_| SignatureError::Mismatch)?;
    if now_secs.abs_diff(at) > WEBHOOK_TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// TeXML answering a call with a bidirectional RTP stream (PCMU) to `ws_url`, XML-escaped.
pub fn stream_texml(ws_url: &str) -> String {
    let mut out = String::with_capacity(200 + ws_url.len());
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url=""#);
    push_xml_escaped(&mut out, ws_url);
    out.push_str(r#"" bidirectionalMode="rtp" bidirectionalCodec="PCMU"/></Connect></Response>"#);
    out
}

/// Puts sequence-numbered frames back in order within a bounded window.
///
/// `push` frames as they arrive, then `pop` until `None`. A frame older than the next expected one
/// (late or duplicate) is dropped. When a gap cannot be filled because more than `window` frames are
/// waiting behind it, the missing frames are skipped. `flush` (e.g. on stop) yields everything left
/// in order.
#[derive(Debug, Clone)]
pub struct Reorder<T = Vec<u8>> {
    next: Option<u64>,
    pending: BTreeMap<u64, T>,
    window: usize,
    dropped: u64,
    skipped: u64,
}

impl<T> Reorder<T> {
    /// A buffer holding at most `window` (≥ 1) out-of-order frames.
    pub fn new(window: usize) -> Self {
        Self {
            next: None,
            pending: BTreeMap::new(),
            window: window.max(1),
            dropped: 0,
            skipped: 0,
        }
    }

    /// Adds a frame. Returns `false` if it was dropped as late or duplicate.
    pub fn push(&mut self, seq: u64, item: T) -> bool {
        let next = *self.next.get_or_insert(seq);
        if seq < next || self.pending.contains_key(&seq) {
            self.dropped += 1;
            return false;
        }
        self.pending.insert(seq, item);
        // Too many waiting behind a gap: give up on the missing frames.
        if self.pending.len() > self.window
            && let Some((&first, _)) = self.pending.first_key_value()
            && first > next
        {
            self.skipped += first - next;
            self.next = Some(first);
        }
        true
    }

    /// The next in-order frame, if available.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        let next = self.next?;
        let item = self.pending.remove(&next)?;
        self.next = next.checked_add(1);
        Some((next, item))
    }

    /// The lowest buffered frame regardless of gaps (call repeatedly to drain). Skipped sequence
    /// numbers are counted.
    pub fn flush(&mut self) -> Option<(u64, T)> {
        let (seq, item) = self.pending.pop_first()?;
        if let Some(next) = self.next
            && seq > next
        {
            self.skipped += seq - next;
        }
        self.next = seq.checked_add(1);
        Some((seq, item))
    }

    /// Frames waiting for a gap to fill.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Frames dropped as late or duplicate.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sequence numbers given up on (never received in time).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::MediaFormat;

    // Signed with PyNaCl (libsodium), the library Telnyx's own Python SDK verifies with: the key
    // pair from seed bytes 0..32, over "1764950400|" + BODY.
    const PUBLIC_KEY: &str = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    const SIGNATURE: &str =
        "IngX8JjiTE0YxG4PZgT/jw4hU2gkKcgvCo7818qt5DZz4Om/NY17AIVEaZK84GQrsYmQILsH9Nw2ZaobGFQFDA==";
    const BODY: &str = "AccountSid=AC1&CallSid=v3%3Aabc&From=%2B15550100123&To=%2B15557650000";

    #[test]
    fn a_webhook_signed_by_telnyxs_library_verifies_and_nothing_else_does() {
        let ok = |sig: Option<&str>, ts: Option<&str>, body: &str, now: u64| {
            verify_webhook(PUBLIC_KEY, sig, ts, body.as_bytes(), now)
        };
        assert_eq!(
            ok(Some(SIGNATURE), Some("1764950400"), BODY, 1764950410),
            Ok(())
        );
        assert_eq!(
            ok(
                Some(SIGNATURE),
                Some("1764950400"),
                &BODY.replace("0123", "0124"),
                1764950410
            ),
            Err(SignatureError::Mismatch),
            "another caller's number"
        );
        assert_eq!(
            ok(Some(SIGNATURE), Some("1764950401"), BODY, 1764950410),
            Err(SignatureError::Mismatch),
            "another time"
        );
        assert_eq!(
            ok(Some(SIGNATURE), Some("1764950400"), BODY, 1764950400 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            ok(None, Some("1764950400"), BODY, 1764950410),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            ok(Some(SIGNATURE), None, BODY, 1764950410),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            ok(Some("not base64!"), Some("1764950400"), BODY, 1764950410),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            ok(Some(SIGNATURE), Some("soon"), BODY, 1764950410),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_webhook(
                "AAAA",
                Some(SIGNATURE),
                Some("1764950400"),
                BODY.as_bytes(),
                1764950410
            ),
            Err(SignatureError::Malformed),
            "a key that is not 32 bytes"
        );
    }

    #[test]
    fn the_answer_streams_to_the_escaped_url() {
        assert_eq!(
            stream_texml("wss://gw.example.com/telnyx/media?token=1.a&b"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect><Stream url=\"wss://gw.example.com/telnyx/media?token=1.a&amp;b\" bidirectionalMode=\"rtp\" bidirectionalCodec=\"PCMU\"/></Connect></Response>"
        );
    }
    use crate::transport::{Encoding, MAX_MESSAGE_BYTES};
    use serde_json::{Value, json};

    #[test]
    fn parses_documented_messages() {
        assert_eq!(
            parse(r#"{"event":"connected","version":"1.0.0"}"#).ok(),
            Some(Inbound::Connected)
        );
        let start = r#"{"event":"start","sequence_number":"1","start":{"user_id":"u1",
          "call_control_id":"v3:abc","client_state":"aGk=","media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}},
          "stream_id":"32de0dea-53cb-4b21-89a4-9e1819c043bc"}"#;
        let mut params = BTreeMap::new();
        params.insert("client_state".to_owned(), "aGk=".to_owned());
        assert_eq!(
            parse(start).ok(),
            Some(Inbound::Start {
                stream_id: "32de0dea-53cb-4b21-89a4-9e1819c043bc".into(),
                call_id: "v3:abc".into(),
                format: MediaFormat {
                    encoding: Encoding::Alaw,
                    sample_rate: 8000,
                    channels: 1
                },
                params
            })
        );
        let media = r#"{"event":"media","sequence_number":"4","media":{"track":"inbound","chunk":"2",
          "timestamp":"5","payload":"1dU="},"stream_id":"s"}"#;
        assert_eq!(
            parse(media).ok(),
            Some(Inbound::Media {
                payload: vec![0xd5, 0xd5],
                seq: Some(2),
                timestamp_ms: Some(5)
            })
        );
        let outbound =
            r#"{"event":"media","media":{"track":"outbound","chunk":"2","payload":"1dU="}}"#;
        assert_eq!(parse(outbound).ok(), Some(Inbound::Ignored));
        let dtmf =
            r##"{"event":"dtmf","stream_id":"s","sequence_number":"6","dtmf":{"digit":"#"}}"##;
        assert_eq!(parse(dtmf).ok(), Some(Inbound::Dtmf { digit: '#' }));
        let mark = r#"{"event":"mark","sequence_number":"7","stream_id":"s","mark":{"name":"m"}}"#;
        assert_eq!(parse(mark).ok(), Some(Inbound::Mark { name: "m".into() }));
        let stop = r#"{"event":"stop","sequence_number":"8","stop":{"user_id":"u","call_control_id":"v3:abc"},"stream_id":"s"}"#;
        assert_eq!(parse(stop).ok(), Some(Inbound::Stop));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(parse("{"), Err(ProtocolError::Json(_))));
        assert!(matches!(
            parse(r#"{"event":"x"}"#),
            Err(ProtocolError::UnknownEvent(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"error","payload":{"code":100002,"title":"Unknown error"}}"#),
            Err(ProtocolError::Provider(s)) if s.contains("100002")
        ));
        assert!(matches!(
            parse(r#"{"event":"start","start":{"call_control_id":"c"}}"#),
            Err(ProtocolError::MissingField("stream_id"))
        ));
        assert!(matches!(
            parse(
                r#"{"event":"start","stream_id":"s","start":{"media_format":{"encoding":"PCMU"}}}"#
            ),
            Err(ProtocolError::MissingField("start.call_control_id"))
        ));
        assert!(matches!(
            parse(
                r#"{"event":"start","stream_id":"s","start":{"call_control_id":"c","media_format":{"encoding":"OPUS"}}}"#
            ),
            Err(ProtocolError::UnsupportedEncoding(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"media","media":{"payload":"%%"}}"#),
            Err(ProtocolError::BadBase64)
        ));
        let big = " ".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(parse(&big), Err(ProtocolError::TooLarge(_))));
    }

    #[test]
    fn outbound_round_trips() {
        let mut out = String::new();
        media(&[0xff, 0x7f], &mut out);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_eq!(v, json!({"event":"media","media":{"payload":"/38="}}));
        mark("a\"b", &mut out);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_eq!(v, json!({"event":"mark","mark":{"name":"a\"b"}}));
        clear(&mut out);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_eq!(v, json!({"event":"clear"}));
        assert_eq!(
            hangup_url("https://api.telnyx.com/", "v3:a/b"),
            "https://api.telnyx.com/v2/calls/v3:a%2Fb/actions/hangup"
        );
    }

    fn drain(r: &mut Reorder<u8>) -> Vec<u64> {
        std::iter::from_fn(|| r.pop()).map(|(s, _)| s).collect()
    }

    #[test]
    fn reorder_in_order_and_swapped() {
        let mut r = Reorder::new(4);
        assert!(r.push(1, 0));
        assert_eq!(drain(&mut r), vec![1]);
        assert!(r.push(3, 0));
        assert_eq!(drain(&mut r), Vec::<u64>::new());
        assert!(r.push(2, 0));
        assert_eq!(drain(&mut r), vec![2, 3]);
        // Late and duplicate frames are dropped.
        assert!(!r.push(2, 0));
        assert!(r.push(5, 0));
        assert!(!r.push(5, 0));
        assert_eq!(r.dropped(), 2);
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn reorder_skips_gap_when_window_full() {
        let mut r = Reorder::new(2);
        r.push(10, 0);
        assert_eq!(drain(&mut r), vec![10]);
        // 11 is lost.
        r.push(12, 0);
        r.push(13, 0);
        assert_eq!(drain(&mut r), Vec::<u64>::new());
        r.push(14, 0);
        assert_eq!(drain(&mut r), vec![12, 13, 14]);
        assert_eq!(r.skipped(), 1);
        // 11 arriving now is late.
        assert!(!r.push(11, 0));
        assert!(r.pending() <= 2);
    }

    #[test]
    fn reorder_flush_drains_everything_in_order() {
        let mut r = Reorder::new(8);
        r.push(1, 0);
        r.push(4, 0);
        r.push(3, 0);
        let out: Vec<u64> = std::iter::from_fn(|| r.flush()).map(|(s, _)| s).collect();
        assert_eq!(out, vec![1, 3, 4]);
        assert_eq!(r.skipped(), 1);
        assert_eq!(r.pending(), 0);
        let mut e: Reorder = Reorder::new(0);
        assert!(e.push(u64::MAX, vec![1]));
        assert_eq!(e.pop(), Some((u64::MAX, vec![1])));
        assert_eq!(e.pop(), None);
    }
}
