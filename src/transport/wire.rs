//! One media stream's framing state, for any provider: the provider-neutral face the live call
//! driver talks to (sans-I/O, like the provider modules it wraps).
//!
//! In: WebSocket frames → [`Inbound`], with media frames put back in order (Telnyx) and held in a
//! small queue. Out: the core's audio (f32 at [`Wire::out_rate`]), marks and clears → the provider's
//! messages ([`Frame`]s), encoded in the stream's format. Providers that want fixed-size payloads
//! (Exotel: multiples of 320 bytes, at least 3.2 KB; Vonage: 20 ms binary frames) get them from a
//! chunker; a mark is then held back until the audio before it has left, and [`Wire::idle`] sends
//! a padded tail once no more audio is coming. Vonage has no marks at all
//! ([`Wire::native_marks`] is false): the driver echoes them on its own playout clock.

use std::collections::VecDeque;

use super::telnyx::Reorder;
use super::{
    Encoding, FixedChunker, Inbound, MediaFormat, ProtocolError, Provider, exotel, plivo, telnyx,
    twilio, vonage,
};
use crate::audio::g711::{encode_alaw_from, encode_l16le_from, encode_ulaw_from};

/// One outbound WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// Out-of-order media frames Telnyx may send before a gap is given up on.
const REORDER_WINDOW: usize = 8;
/// Inbound media frames held before the oldest is dropped (the driver drains after every frame).
const MAX_QUEUED_MEDIA: usize = 64;

/// Framing state of one media stream.
#[derive(Debug)]
pub struct Wire {
    provider: Provider,
    started: bool,
    stream_id: String,
    format: MediaFormat,
    out_encoding: Encoding,
    out_rate: u32,
    reorder: Option<Reorder<Vec<u8>>>,
    media: VecDeque<Vec<u8>>,
    chunker: Option<FixedChunker>,
    /// Marks waiting for the audio before them to leave the chunker: (byte position, id).
    held_marks: VecDeque<(u64, u64)>,
    pushed_bytes: u64,
    sent_bytes: u64,
    pushed_since_idle: bool,
    bytes: Vec<u8>,
    text: String,
}

impl Wire {
    pub fn new(provider: Provider) -> Wire {
        Wire {
            provider,
            started: false,
            stream_id: String::new(),
            format: MediaFormat::MULAW_8K,
            out_encoding: Encoding::Mulaw,
            out_rate: 8000,
            reorder: (provider == Provider::Telnyx).then(|| Reorder::new(REORDER_WINDOW)),
            media: VecDeque::with_capacity(8),
            chunker: None,
            held_marks: VecDeque::new(),
            pushed_bytes: 0,
            sent_bytes: 0,
            pushed_since_idle: false,
            bytes: Vec::with_capacity(4096),
            text: String::with_capacity(8192),
        }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Whether `start` has been accepted.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The inbound audio format (valid after [`Wire::start`]).
    pub fn format(&self) -> MediaFormat {
        self.format
    }

    /// Sample rate the core should produce bot audio at for this stream.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// Whether the provider echoes marks itself (all but Vonage).
    pub fn native_marks(&self) -> bool {
        self.provider != Provider::Vonage
    }

    /// Parses a text frame.
    pub fn parse_text(&mut self, text: &str) -> Result<Inbound, ProtocolError> {
        match self.provider {
            Provider::Twilio => twilio::parse(text),
            Provider::Telnyx => telnyx::parse(text),
            Provider::Plivo => plivo::parse(text),
            Provider::Exotel => exotel::parse(text),
            Provider::Vonage => vonage::parse_text(text),
        }
    }

    /// Parses a binary frame (only Vonage sends them).
    pub fn parse_binary(&mut self, frame: &[u8]) -> Result<Inbound, ProtocolError> {
        match self.provider {
            Provider::Vonage => vonage::parse_binary(frame),
            _ => Err(ProtocolError::Binary),
        }
    }

    /// Accepts the stream's `start`: checks the format is one we decode and picks the outbound one.
    pub fn start(&mut self, stream_id: &str, format: MediaFormat) -> Result<(), ProtocolError> {
        if self.started {
            return Err(ProtocolError::BadField("second start"));
        }
        let rate_ok = match format.encoding {
            Encoding::Mulaw | Encoding::Alaw => format.sample_rate == 8000,
            Encoding::L16 => format.sample_rate == 8000 || format.sample_rate == 16000,
        };
        if !rate_ok || format.channels != 1 {
            return Err(ProtocolError::UnsupportedEncoding(format!(
                "{:?} at {} Hz, {} channel(s)",
                format.encoding, format.sample_rate, format.channels
            )));
        }
        // Bot audio goes back in the caller's format, except Plivo, which plays μ-law 8 kHz
        // whatever it streams to us.
        let (enc, rate) = match self.provider {
            Provider::Plivo => (Encoding::Mulaw, 8000),
            _ => (format.encoding, format.sample_rate),
        };
        self.out_encoding = enc;
        self.out_rate = rate;
        let bytes_per_sample = if enc == Encoding::L16 { 2 } else { 1 };
        self.chunker = match self.provider {
            // 200 ms per message: Exotel's smallest reliable payload.
            Provider::Exotel => Some(exotel::chunker(rate as usize / 5 * bytes_per_sample, enc)),
            Provider::Vonage => Some(vonage::framer(rate)),
            _ => None,
        };
        self.stream_id = stream_id.to_owned();
        self.format = format;
        self.started = true;
        Ok(())
    }

    /// Queues an inbound media payload (reordered by `seq` for Telnyx).
    pub fn push_media(&mut self, payload: Vec<u8>, seq: Option<u64>) {
        match (&mut self.reorder, seq) {
            (Some(r), Some(seq)) => {
                r.push(seq, payload);
                while let Some((_, p)) = r.pop() {
                    Self::enqueue(&mut self.media, p);
                }
            }
            _ => Self::enqueue(&mut self.media, payload),
        }
    }

    fn enqueue(q: &mut VecDeque<Vec<u8>>, p: Vec<u8>) {
        if q.len() >= MAX_QUEUED_MEDIA {
            q.pop_front();
        }
        q.push_back(p);
    }

    /// The next in-order inbound payload.
    pub fn next_media(&mut self) -> Option<Vec<u8>> {
        self.media.pop_front()
    }

    /// At the end of the stream: whatever the reorder buffer still holds, in order.
    pub fn drain_media(&mut self) {
        if let Some(r) = &mut self.reorder {
            while let Some((_, p)) = r.flush() {
                Self::enqueue(&mut self.media, p);
            }
        }
    }

    /// Encodes bot audio (f32 at [`Wire::out_rate`]) into provider messages appended to `out`.
    pub fn audio(&mut self, pcm: &[f32], out: &mut Vec<Frame>) {
        if pcm.is_empty() {
            return;
        }
        let bps = if self.out_encoding == Encoding::L16 {
            2
        } else {
            1
        };
        self.bytes.resize(pcm.len() * bps, 0);
        match self.out_encoding {
            Encoding::Mulaw => encode_ulaw_from(pcm, &mut self.bytes),
            Encoding::Alaw => encode_alaw_from(pcm, &mut self.bytes),
            Encoding::L16 => encode_l16le_from(pcm, &mut self.bytes),
        };
        self.pushed_bytes += self.bytes.len() as u64;
        self.pushed_since_idle = true;
        if let Some(ch) = &mut self.chunker {
            ch.push(&self.bytes);
            while let Some(frame) = ch.pop() {
                self.sent_bytes += frame.len() as u64;
                out.push(match self.provider {
                    Provider::Vonage => Frame::Binary(frame.to_vec()),
                    _ => {
                        exotel::media(&self.stream_id, frame, &mut self.text);
                        Frame::Text(self.text.clone())
                    }
                });
            }
            self.release_marks(out);
            return;
        }
        self.sent_bytes += self.bytes.len() as u64;
        match self.provider {
            Provider::Twilio => twilio::media(&self.stream_id, &self.bytes, &mut self.text),
            Provider::Telnyx => telnyx::media(&self.bytes, &mut self.text),
            Provider::Plivo => plivo::play_audio(
                plivo::CONTENT_MULAW,
                self.out_rate,
                &self.bytes,
                &mut self.text,
            ),
            Provider::Exotel | Provider::Vonage => unreachable!("chunked providers return above"),
        }
        out.push(Frame::Text(self.text.clone()));
    }

    /// A mark after the audio sent so far. With a chunker it waits until that audio has left.
    /// Does nothing for providers without marks (see [`Wire::native_marks`]).
    pub fn mark(&mut self, id: u64, out: &mut Vec<Frame>) {
        if !self.native_marks() {
            return;
        }
        self.held_marks.push_back((self.pushed_bytes, id));
        self.release_marks(out);
    }

    fn release_marks(&mut self, out: &mut Vec<Frame>) {
        while let Some(&(pos, id)) = self.held_marks.front() {
            if pos > self.sent_bytes {
                break;
            }
            self.held_marks.pop_front();
            let mut name = itoa_buf(id);
            let name = name.as_str();
            match self.provider {
                Provider::Twilio => twilio::mark(&self.stream_id, name, &mut self.text),
                Provider::Telnyx => telnyx::mark(name, &mut self.text),
                Provider::Plivo => plivo::checkpoint(&self.stream_id, name, &mut self.text),
                Provider::Exotel => exotel::mark(&self.stream_id, name, &mut self.text),
                Provider::Vonage => continue,
            }
            out.push(Frame::Text(self.text.clone()));
        }
    }

    /// Barge-in: tells the provider to drop what it has buffered, and drops what we hold.
    pub fn clear(&mut self, out: &mut Vec<Frame>) {
        if let Some(ch) = &mut self.chunker {
            ch.clear();
        }
        // Held marks were never sent, so they will never echo: the core counts them unheard.
        self.held_marks.clear();
        self.sent_bytes = self.pushed_bytes;
        match self.provider {
            Provider::Twilio => twilio::clear(&self.stream_id, &mut self.text),
            Provider::Telnyx => telnyx::clear(&mut self.text),
            Provider::Plivo => plivo::clear_audio(&self.stream_id, &mut self.text),
            Provider::Exotel => exotel::clear(&self.stream_id, &mut self.text),
            Provider::Vonage => vonage::clear(&mut self.text),
        }
        out.push(Frame::Text(self.text.clone()));
    }

    /// Whether audio or marks are held back waiting for [`Wire::idle`] (a chunker's partial tail):
    /// the driver then calls `idle` every frame until they are gone.
    pub fn needs_idle(&self) -> bool {
        self.chunker.is_some()
            && (self.pushed_bytes > self.sent_bytes || !self.held_marks.is_empty())
    }

    /// Called on every pacing tick: if no audio arrived since the last one, the reply's audio is
    /// finished, so a chunker's partial tail is sent padded with silence, and its marks follow.
    pub fn idle(&mut self, out: &mut Vec<Frame>) {
        if std::mem::take(&mut self.pushed_since_idle) {
            return;
        }
        let Some(ch) = &mut self.chunker else { return };
        if let Some(tail) = ch.flush() {
            self.sent_bytes = self.pushed_bytes;
            out.push(match self.provider {
                Provider::Vonage => Frame::Binary(tail),
                _ => {
                    exotel::media(&self.stream_id, &tail, &mut self.text);
                    Frame::Text(self.text.clone())
                }
            });
        }
        self.release_marks(out);
    }
}

/// A mark id as text without allocating.
struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    fn as_str(&mut self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

fn itoa_buf(mut n: u64) -> Itoa {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn text(f: &Frame) -> Value {
        match f {
            Frame::Text(t) => serde_json::from_str(t).unwrap(),
            Frame::Binary(_) => panic!("binary frame"),
        }
    }

    fn started(p: Provider, format: MediaFormat) -> Wire {
        let mut w = Wire::new(p);
        w.start("S1", format).unwrap();
        w
    }

    #[test]
    fn twilio_media_mark_clear_in_order() {
        let mut w = started(Provider::Twilio, MediaFormat::MULAW_8K);
        let mut out = vec![];
        w.audio(&[0.0; 160], &mut out);
        w.mark(7, &mut out);
        w.clear(&mut out);
        let v: Vec<Value> = out.iter().map(text).collect();
        assert_eq!(v[0]["event"], "media");
        assert_eq!(v[0]["streamSid"], "S1");
        assert_eq!(v[1]["event"], "mark");
        assert_eq!(v[1]["mark"]["name"], "7");
        assert_eq!(v[2]["event"], "clear");
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn exotel_sends_whole_chunks_and_holds_marks_until_their_audio_left() {
        let l16 = MediaFormat {
            encoding: Encoding::L16,
            sample_rate: 8000,
            channels: 1,
        };
        let mut w = started(Provider::Exotel, l16);
        let mut out = vec![];
        // 100 ms of audio: below Exotel's 3.2 KB minimum, so nothing leaves yet, nor the mark.
        w.audio(&[0.1; 800], &mut out);
        w.mark(1, &mut out);
        assert!(out.is_empty());
        // Another 100 ms completes one 3200-byte chunk; mark 1 follows it, and mark 2 too (it
        // sits exactly at the chunk's end).
        w.audio(&[0.1; 800], &mut out);
        w.mark(2, &mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        let v = text(&out[0]);
        let payload = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            v["media"]["payload"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(payload.len(), 3200);
        assert_eq!(text(&out[1])["mark"]["name"], "1");
        assert_eq!(text(&out[2])["mark"]["name"], "2");
        // 50 ms more and a mark: held until the tail leaves, padded, on the second idle tick
        // (the first only notes that audio came since the last one).
        out.clear();
        w.audio(&[0.1; 400], &mut out);
        w.mark(3, &mut out);
        assert!(out.is_empty());
        w.idle(&mut out);
        assert!(out.is_empty(), "first idle only notes the audio");
        w.idle(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(text(&out[1])["mark"]["name"], "3");
    }

    #[test]
    fn exotel_tail_is_padded_to_a_whole_chunk_when_idle() {
        let l16 = MediaFormat {
            encoding: Encoding::L16,
            sample_rate: 8000,
            channels: 1,
        };
        let mut w = started(Provider::Exotel, l16);
        let mut out = vec![];
        w.audio(&[0.1; 100], &mut out);
        w.mark(9, &mut out);
        w.idle(&mut out);
        w.idle(&mut out);
        assert_eq!(out.len(), 2);
        let v = text(&out[0]);
        let payload = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            v["media"]["payload"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(payload.len(), 3200);
        assert!(
            payload[200..].iter().all(|b| *b == 0),
            "padded with silence"
        );
        assert_eq!(text(&out[1])["event"], "mark");
    }

    #[test]
    fn vonage_sends_binary_20ms_frames_and_no_marks() {
        let l16 = MediaFormat {
            encoding: Encoding::L16,
            sample_rate: 16000,
            channels: 1,
        };
        let mut w = started(Provider::Vonage, l16);
        assert_eq!(w.out_rate(), 16000);
        assert!(!w.native_marks());
        let mut out = vec![];
        w.audio(&[0.2; 800], &mut out); // 50 ms
        w.mark(1, &mut out);
        assert_eq!(out.len(), 2);
        assert!(
            out.iter()
                .all(|f| matches!(f, Frame::Binary(b) if b.len() == 640))
        );
        out.clear();
        w.idle(&mut out);
        w.idle(&mut out);
        assert!(matches!(&out[..], [Frame::Binary(b)] if b.len() == 640));
        out.clear();
        w.clear(&mut out);
        assert_eq!(text(&out[0])["action"], "clear");
    }

    #[test]
    fn telnyx_media_is_put_back_in_order() {
        let mut w = started(Provider::Telnyx, MediaFormat::MULAW_8K);
        w.push_media(vec![1], Some(1));
        w.push_media(vec![3], Some(3));
        w.push_media(vec![2], Some(2));
        let got: Vec<u8> = std::iter::from_fn(|| w.next_media())
            .map(|p| p[0])
            .collect();
        assert_eq!(got, [1, 2, 3]);
    }

    #[test]
    fn plivo_plays_mulaw_and_checkpoints() {
        let l16 = MediaFormat {
            encoding: Encoding::L16,
            sample_rate: 16000,
            channels: 1,
        };
        let mut w = started(Provider::Plivo, l16);
        assert_eq!(w.out_rate(), 8000);
        let mut out = vec![];
        w.audio(&[0.0; 160], &mut out);
        w.mark(3, &mut out);
        w.clear(&mut out);
        let v: Vec<Value> = out.iter().map(text).collect();
        assert_eq!(v[0]["event"], "playAudio");
        assert_eq!(v[0]["media"]["contentType"], "audio/x-mulaw");
        assert_eq!(v[1]["event"], "checkpoint");
        assert_eq!(v[1]["name"], "3");
        assert_eq!(v[2]["event"], "clearAudio");
    }

    #[test]
    fn formats_we_cannot_decode_and_a_second_start_are_refused() {
        let mut w = Wire::new(Provider::Twilio);
        let odd = MediaFormat {
            encoding: Encoding::Mulaw,
            sample_rate: 16000,
            channels: 1,
        };
        assert!(w.start("S", odd).is_err());
        w.start("S", MediaFormat::MULAW_8K).unwrap();
        assert!(w.start("S", MediaFormat::MULAW_8K).is_err());
        assert!(w.parse_binary(&[0, 0]).is_err());
    }

    #[test]
    fn mark_names_are_decimal_ids() {
        for n in [0u64, 7, 10, 123_456_789, u64::MAX] {
            assert_eq!(itoa_buf(n).as_str(), n.to_string());
        }
    }
}
