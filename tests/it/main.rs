//! One integration-test binary (modules instead of one binary per file).

mod asr;
mod cdp;
mod cli;
mod common;
mod corpus;
mod engine_api;
mod http_api;
mod layers;
mod live_abuse;
mod properties;
mod providers;
mod reliability;
mod repair;
mod replay;
mod router;
mod scenarios;
mod security;
mod session;
mod signed_calls;
mod softphone;
mod tts;
mod turn_taking;
mod twilio;
mod virtual_calls;
mod voice_check;
mod webrtc;
