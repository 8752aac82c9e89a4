//! The runner: drives an experiment's timeline, probes and stop conditions against the load.
//!
//! [`spec`] turns experiment and fault-definition files into checked values before anything
//! runs; the driving loop builds on those.

pub mod bench;
mod conclude;
mod drive;
pub mod execute;
pub mod live;
pub mod probes;
pub mod ramp;
pub mod result;
mod setup;
mod shared;
pub mod sla;
pub mod spec;
mod tasks;
mod watch;
