//! Request generator. TODO(helper): mixes, corpus files.

use std::sync::Arc;

/// One request to send, generated ahead of its intended start (CPU work stays off the request
/// path).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    /// Workload class (`chat`, `code`, `summarization`, `corpus`, `trace`).
    pub class: Arc<str>,
    /// Prompt text (for the chat API it becomes one user message).
    pub prompt: String,
    /// Approximate prompt length in tokens (what the generator aimed for).
    pub input_tokens: u32,
    /// `max_tokens` to ask for.
    pub max_tokens: u32,
}
