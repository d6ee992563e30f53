//! The runtime shell: the only place that loads models, spawns, waits on the clock and does I/O
//! for calls. It drives the pure per-call core (`crate::call`) with the speech engines and the
//! conversation engine.
//!
//! - [`speech`]: the loaded speech stack (ASR worker pool, TTS) shared by all calls.
//! - [`replay`]: runs a recorded or scripted call through the whole pipeline without a network,
//!   on a virtual clock (deterministic) or at real-time pace.

pub mod calls;
pub mod live;
pub mod replay;
pub mod speech;
