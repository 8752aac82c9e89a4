//! Reports for people and machines: the terminal tables, `summary.md`, the self-contained
//! `report.html` with charts, and `junit.xml` for CI.

pub mod build;
pub mod charts;
pub mod fmt;
pub mod html;
pub mod inputs;
pub mod junit;
pub mod load_dir;
pub mod markdown;
pub mod markdown_dirs;
pub mod schemas;
pub mod table;
