//! The browser softphone's media and page: calls from a web page over WebRTC. The call itself
//! is driven by `runtime::browser`, into the same session as phone calls.
//!
//! - [`peer`]: the media leg on webrtc-rs 0.21 + libopus — `accept(offer)` answers a browser's
//!   offer (non-trickle: every candidate is in the answer), decodes its Opus straight to 16 kHz
//!   20 ms frames, and encodes bot audio back to Opus 20 ms frames.
//! - [`signal`]: the `/webrtc/signal` WebSocket protocol (JSON messages both ways).
//! - [`assets`]: the softphone page, built into the binary.

pub mod peer;
pub mod signal;

use crate::config::WebRtcConfig;
use std::time::Duration;

/// The media settings of the gateway's calls, from `[webrtc]`.
pub fn settings(cfg: &WebRtcConfig) -> peer::RtcSettings {
    let mut s = peer::RtcSettings::loopback();
    s.bind_ip = cfg.bind;
    s.ice_servers = cfg
        .ice_servers
        .iter()
        .map(|i| peer::IceServer {
            urls: i.urls.clone(),
            username: i.username.clone(),
            credential: i.credential.clone(),
        })
        .collect();
    s.media_timeout = Some(Duration::from_millis(cfg.media_timeout_ms));
    s.connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1000));
    s
}

/// The softphone page and its assets (no CDN, works offline).
pub mod assets {
    pub const HTML: &str = include_str!("assets/softphone.html");
    pub const CSS: &str = include_str!("assets/softphone.css");
    pub const JS: &str = include_str!("assets/softphone.js");
}
