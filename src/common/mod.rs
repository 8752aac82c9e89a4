//! Leaf types shared by several layers, importing nothing of the project: a fault kind and the
//! sim both speak them, and neither may import the other (imports run downward: see the
//! architecture paragraph in README.md).

pub mod compute_mode;
pub mod selector;
pub mod sim_names;

pub use compute_mode::ComputeMode;
pub use selector::Selector;
