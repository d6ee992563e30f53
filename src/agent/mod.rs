//! The conversation engine: the master agent, its sub-agents and everything between them.
//! Deterministic and testable without audio: text in, spoken-style text out.

pub mod agents;
pub mod bert;
pub mod caller;
pub mod clock;
pub mod data;
pub mod embed;
pub mod engine;
pub mod master;
pub mod protocol;
pub mod registry;
pub mod reliability;
pub mod remote;
pub mod remote_policy;
pub mod resolve;
pub mod router;
pub mod slots;
pub mod speech;
