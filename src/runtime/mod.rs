//! The runtime shell: the only place that loads models, spawns, waits on the clock and does I/O
//! for calls. It drives the pure per-call core (`crate::call`) with the speech engines and the
//! conversation engine.
//!
//! - [`session`]: one call from "media connected" to "case closed", written once over a
//!   [`session::MediaPort`]: the core, its effects (with cancellation and apologies), the audit.
//! - The session's three drivers, which only move media and time: [`live`] (a provider's media
//!   WebSocket), [`browser`] (a WebRTC peer and its signaling socket), [`replay`] (a recorded or
//!   scripted call without a network, on a virtual clock or at real-time pace).
//! - [`speech`]: the loaded speech stack (ASR worker pool, TTS) shared by all calls.
//! - [`calls`]: admission (the cap, per-IP pending connections, draining); [`stream_token`]:
//!   one-call media stream tokens.

pub mod browser;
pub mod calls;
pub mod live;
pub mod replay;
pub mod session;
pub mod speech;
pub mod stream_token;
