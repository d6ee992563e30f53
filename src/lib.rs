//! Switchboard: a voice call-center gateway. Callers reach a master agent that recognises what
//! they want, delegates to sub-agents over a structured JSON protocol and answers in short
//! spoken sentences.
//!
//! # Code map
//! - `config`: typed configuration, templates (app variants) and demo data; embedded defaults.
//! - `agent::protocol`: the master ↔ sub-agent JSON protocol (seed 000) and its validation.
//! - `agent::master`: the master agent — one caller turn in, one reply out; owns every word said.
//! - `agent::router`: intent recognition — keyword fast path, MiniLM semantic path (`agent::embed`).
//! - `agent::slots`: spoken slot extraction ("A B C one two three" → ABC123, dates, names, …).
//! - `agent::registry`: the `SubAgent` trait, registry, health, dispatch with retries/timeouts.
//! - `agent::reliability`: backoff policy and circuit breaker (pure, time passed in).
//! - `agent::agents`, `agent::remote`: in-process sub-agents and HTTP sub-agents.
//! - `agent::data`: the `DataSource` trait and the demo systems of record.
//! - `agent::engine`: conversations across turns and restarts, persisted per turn.
//! - `store`: SQLite — sessions, cases with an append-only audit trail, the central log.
//! - `http`: the REST API (axum), the softphone page and its signaling socket.
//! - `webrtc`: the browser softphone — WebRTC media (webrtc-rs + Opus) and its per-call driver.
//! - `models`: installing and verifying models from registry packages.
//!
//! # Invariants
//! - Nothing from outside (HTTP bodies, sub-agent answers, config) can panic the process:
//!   it is parsed into types or rejected with an error that says what is wrong.
//! - No lock is held across an `.await`; SQLite runs on the blocking pool (`Store::run`).
//! - The reliability policies and the store never read the clock: time is passed in.

pub mod agent;
pub mod asr;
pub mod audio;
pub mod call;
pub mod config;
pub mod corpus;
pub mod http;
pub mod loadtest;
pub mod models;
pub mod runtime;
pub mod simcall;
pub mod store;
pub mod transport;
pub mod tts;
pub mod turn;
pub mod webrtc;
