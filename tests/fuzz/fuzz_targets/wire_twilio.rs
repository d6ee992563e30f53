//! Twilio media-stream frames, fed as the live driver feeds them: the input is split on newlines
//! into text frames, each parsed; a `start` starts the stream, media is queued and drained, bot
//! audio, marks and clears go out, and the stream ends with a drain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::transport::wire::{Frame, Wire};
use switchboard::transport::{Inbound, Provider};

fuzz_target!(|data: &[u8]| {
    let mut wire = Wire::new(Provider::Twilio);
    let mut out: Vec<Frame> = Vec::new();
    let pcm: Vec<f32> = data.iter().take(320).map(|b| (*b as f32 - 128.0) / 100.0).collect();
    for line in data.split(|b| *b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            let _ = wire.parse_binary(line);
            continue;
        };
        match wire.parse_text(text) {
            Ok(Inbound::Start { stream_id, format, .. }) => {
                if !wire.is_started() && wire.start(&stream_id, format).is_ok() {
                    wire.audio(&pcm, &mut out);
                    wire.mark(1, &mut out);
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
