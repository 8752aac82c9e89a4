//! faultline: steady, realistic LLM-serving load while faults fire, and numbers you can trust
//! about what users saw. See DESIGN notes in README.md.

pub mod analysis;
pub mod cli;
pub mod common;
pub mod duration;
pub mod fault;
pub mod limits;
pub mod load;
pub mod record;
pub mod report;
pub mod runner;
pub mod sim;
pub mod tls;
pub mod version;
pub mod yaml;
