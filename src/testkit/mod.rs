//! The far end of a call, for tests and measurement: drivers that play a telephony provider or a
//! browser against a running gateway over real sockets. Nothing in the serving path (`http`,
//! `runtime`, `webrtc`) uses them; they are compiled into the library so that the integration
//! tests, the benches and `switchboard load` share one implementation.
//!
//! - [`simcall`]: a scripted Twilio Media Streams caller (WebSocket, μ-law, marks, DTMF).
//! - [`loadtest`]: `switchboard load` — N concurrent `simcall` callers and their latency report.
//! - [`rtc_client`]: a Rust WebRTC peer that calls the softphone's signaling socket.
//! - [`vnet`]: an in-memory network, for calls on a virtual clock.
//! - [`vbrowser`]: a softphone page and its media on that network, for browser calls on a
//!   virtual clock.
//! - [`turn_path`]: one caller turn through the call core on a virtual clock, with whisper and
//!   the end-of-turn model run for real (the turn-taking tests, `switchboard corpus transcribe`).

pub mod loadtest;
pub mod rtc_client;
pub mod simcall;
pub mod turn_path;
pub mod vbrowser;
pub mod vnet;
