//! Turning recorded requests into numbers: per-second windows of HDR histograms that merge
//! exactly into any time range (or across load-generator shards), and the run summary.

pub mod baseline;
pub mod bottleneck;
pub mod cost;
pub mod hist;
pub mod phases;
pub mod prometheus;
pub mod saturation;
pub mod sla;
pub mod summary;
pub mod window;
