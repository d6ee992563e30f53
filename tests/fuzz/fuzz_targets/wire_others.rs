//! The other providers' wire parsers: the first byte picks the provider (Telnyx, Plivo, Exotel,
//! Vonage, or Twilio), the rest is split on newlines into frames; a frame that starts with 0x00 is
//! sent as binary (Vonage's audio), the others as text. Frames drive the wire as `runtime::live`
//! does: start, queue/reorder media, drain at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::transport::wire::{Frame, Wire};
use switchboard::transport::{Inbound, Provider};

const PROVIDERS: [Provider; 5] = [
    Provider::Telnyx,
    Provider::Plivo,
    Provider::Exotel,
    Provider::Vonage,
    Provider::Twilio,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut wire = Wire::new(PROVIDERS[pick as usize % PROVIDERS.len()]);
    let mut out: Vec<Frame> = Vec::new();
    let pcm: Vec<f32> = rest.iter().take(640).map(|b| (*b as f32 - 128.0) / 100.0).collect();
    for frame in rest.split(|b| *b == b'\n') {
        let parsed = match frame.split_first() {
            Some((0, bin)) => wire.parse_binary(bin),
            _ => match std::str::from_utf8(frame) {
                Ok(text) => wire.parse_text(text),
                Err(_) => wire.parse_binary(frame),
            },
        };
        match parsed {
            Ok(Inbound::Start { stream_id, format, .. }) => {
                if !wire.is_started() && wire.start(&stream_id, format).is_ok() {
                    wire.audio(&pcm, &mut out);
                    wire.mark(1, &mut out);
                    wire.audio(&pcm, &mut out);
                    wire.idle(&mut out);
                }
            }
            Ok(Inbound::Media { payload, seq, .. }) if wire.is_started() => {
                wire.push_media(payload, seq);
                while wire.next_media().is_some() {}
            }
            Ok(Inbound::Mark { .. }) if wire.is_started() => {
                wire.clear(&mut out);
                wire.idle(&mut out);
            }
            Ok(Inbound::Stop) => {
                wire.drain_media();
                while wire.next_media().is_some() {}
            }
            _ => {}
        }
        out.clear();
    }
});
