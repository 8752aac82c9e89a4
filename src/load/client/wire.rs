//! The OpenAI wire formats: the request body, and chunks and responses parsed with borrowed
//! structs that look only at what is measured (content or not, finish reason, usage, error).

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

#[derive(Serialize)]
pub(super) struct RequestBody<'a> {
    pub(super) model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) messages: Option<&'a [Message<'a>; 1]>,
    pub(super) max_tokens: u32,
    pub(super) stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) stream_options: Option<StreamOptions>,
    pub(super) temperature: u32,
}

#[derive(Serialize)]
pub(super) struct Message<'a> {
    pub(super) role: &'static str,
    pub(super) content: &'a str,
}

#[derive(Serialize)]
pub(super) struct StreamOptions {
    pub(super) include_usage: bool,
}

#[derive(Deserialize)]
pub(super) struct ModelList {
    pub(super) data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
pub(super) struct ModelEntry {
    pub(super) id: String,
}

/// A streamed chunk or a whole response: only what is measured.
#[derive(Deserialize)]
pub(super) struct Chunk<'a> {
    #[serde(borrow, default)]
    pub(super) choices: Option<Choices<'a>>,
    #[serde(default)]
    pub(super) usage: Option<Usage>,
    #[serde(default)]
    pub(super) error: Option<ErrorField>,
    #[serde(borrow, default)]
    pub(super) object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) message: Option<Cow<'a, str>>,
}

impl Chunk<'_> {
    /// The message of an error object (`{"error":…}` or `{"object":"error",…}`), if this is one.
    pub(super) fn error_message(&self) -> Option<String> {
        match &self.error {
            Some(ErrorField::Object { message }) => {
                return Some(message.clone().unwrap_or_else(|| "(no message)".into()));
            }
            Some(ErrorField::Text(t)) => return Some(t.clone()),
            Some(ErrorField::Other(v)) => return Some(v.to_string()),
            None => {}
        }
        if self.object.as_deref() == Some("error") {
            return Some(self.message.as_deref().unwrap_or("(no message)").to_owned());
        }
        None
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ErrorField {
    Object {
        #[serde(default)]
        message: Option<String>,
    },
    Text(String),
    Other(serde_json::Value),
}

#[derive(Deserialize)]
pub(super) struct Usage {
    #[serde(default)]
    pub(super) prompt_tokens: Option<u64>,
    #[serde(default)]
    pub(super) completion_tokens: Option<u64>,
}

/// `choices`, folded while parsing (no `Vec`): did any choice carry content, and the last
/// finish reason given.
#[derive(Default)]
pub(super) struct Choices<'a> {
    pub(super) content: bool,
    pub(super) finish_reason: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Choices<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Choices<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices<'a>, A::Error> {
                let mut out = Choices::default();
                while let Some(c) = seq.next_element::<Choice<'de>>()? {
                    out.content |= c.has_content();
                    if c.finish_reason.is_some() {
                        out.finish_reason = c.finish_reason;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
pub(super) struct Choice<'a> {
    /// `/v1/completions`.
    #[serde(default)]
    pub(super) text: Option<NonEmpty>,
    /// Streamed chat.
    #[serde(default)]
    pub(super) delta: Option<Delta>,
    /// Whole chat response.
    #[serde(default)]
    pub(super) message: Option<Delta>,
    #[serde(borrow, default)]
    pub(super) finish_reason: Option<Cow<'a, str>>,
}

impl Choice<'_> {
    pub(super) fn has_content(&self) -> bool {
        self.text.is_some_and(|t| t.0)
            || self.delta.as_ref().is_some_and(Delta::has_content)
            || self.message.as_ref().is_some_and(Delta::has_content)
    }
}

#[derive(Deserialize)]
pub(super) struct Delta {
    #[serde(default)]
    pub(super) content: Option<NonEmpty>,
    #[serde(default)]
    pub(super) reasoning_content: Option<NonEmpty>,
    #[serde(default)]
    pub(super) reasoning: Option<NonEmpty>,
}

impl Delta {
    pub(super) fn has_content(&self) -> bool {
        [self.content, self.reasoning_content, self.reasoning]
            .iter()
            .any(|c| c.is_some_and(|c| c.0))
    }
}

/// Whether a string (or content-part array) is non-empty, without keeping it.
#[derive(Clone, Copy)]
pub(super) struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!v.is_empty()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }
        }
        d.deserialize_any(V)
    }
}
