//! Reports for people and machines: the terminal tables, `summary.md`.

pub mod markdown;
pub mod table;
