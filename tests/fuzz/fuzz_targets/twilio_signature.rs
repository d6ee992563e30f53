//! Webhook signatures. The input is split on 0xFF into token, URL, then name/value pairs; the
//! signature computed for them must verify, and must stop verifying when one byte of the URL, of a
//! parameter, or of the signature changes. Plivo's transfer signature must reject the raw input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::transport::{plivo, twilio};

/// Byte `i` (mod the length) changed to another ASCII byte; `None` when that byte is not ASCII
/// (changing it could break UTF-8) or the string is empty.
fn flip(s: &str, i: usize) -> Option<String> {
    let mut b = s.as_bytes().to_vec();
    let i = i % b.len().max(1);
    let c = *b.get(i)?;
    if !c.is_ascii() {
        return None;
    }
    b[i] = (c + 1) % 0x80;
    String::from_utf8(b).ok()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data
        .split(|b| *b == 0xff)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let token = parts.next().unwrap_or_default();
    let url = parts.next().unwrap_or_default();
    let rest: Vec<String> = parts.collect();
    let params: Vec<(String, String)> = rest
        .chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
        .collect();

    let sig = twilio::signature(&token, &url, &params);
    assert!(twilio::verify_signature(&token, &url, &params, &sig));
    let at = data.len();
    // Same length, one byte different: neither the URL nor its default-port variant matches.
    if let Some(bad) = flip(&url, at) {
        assert!(!twilio::verify_signature(&token, &bad, &params, &sig), "url {bad:?}");
    }
    if !params.is_empty() {
        let k = at % params.len();
        let mut bad = params.clone();
        if let Some(v) = flip(&bad[k].1, at / 3) {
            bad[k].1 = v;
            assert!(!twilio::verify_signature(&token, &url, &bad, &sig), "params {bad:?}");
        }
    }
    if let Some(bad) = flip(&sig, at) {
        if bad.trim().len() == sig.len() {
            assert!(!twilio::verify_signature(&token, &url, &params, &bad));
        }
    }
    // An arbitrary header never verifies (unless it is the signature itself).
    let raw = String::from_utf8_lossy(data);
    if raw.trim() != sig {
        assert!(!twilio::verify_signature(&token, &url, &params, &raw));
    }

    let good = plivo::transfer_signature(&token, &url);
    if raw.trim() != good {
        assert!(!plivo::verify_transfer_signature(&token, &url, &raw));
    }
});
