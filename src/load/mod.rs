//! The load engine: schedules yield intended start times, the client sends OpenAI-compatible
//! requests at those times, and the recorder turns what came back into per-second windows.
//!
//! Latencies are always measured from the *intended* start so that a slow client can never hide
//! a slow server (no coordinated omission); the dispatch lag is reported on its own.

pub mod client;
pub mod engine;
pub mod pool;
/// The per-request record lives in a leaf module (analysis reads it too); this path still works.
pub use crate::record;
pub mod recorder;
pub mod redact;
pub mod schedule;
pub mod schedule_spec;
pub mod sse;
pub mod workload;
