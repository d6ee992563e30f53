//! Speech recognition at run time (installing the models is `crate::models`' job:
//! `models::whisper` and `models::convert`).
//!
//! - [`whisper`]: transcription with whisper.cpp and the hallucination filter.
//! - [`pool`]: the bounded worker pool that runs it off the async workers.

pub mod pool;
pub mod whisper;
