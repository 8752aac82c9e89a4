//! Reports for people and machines. For now: the terminal summary of a load run.

pub mod table;
