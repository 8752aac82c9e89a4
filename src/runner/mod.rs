//! The runner: drives an experiment's timeline, probes and stop conditions against the load.
//!
//! [`spec`] turns experiment and fault-definition files into checked values before anything
//! runs; the driving loop builds on those.

mod drive;
pub mod execute;
pub mod probes;
pub mod result;
mod shared;
pub mod spec;
mod watch;
