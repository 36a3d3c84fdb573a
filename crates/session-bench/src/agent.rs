//! The state the benchmarks store: shaped like the seed's repair agent.

use serde::{Deserialize, Serialize};
use session_core::{Summarize, Summary};

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) role: String,
    pub(crate) content: String,
}

/// The seed's agent: a state-machine name, an attempt counter, the history and two flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Agent {
    pub(crate) state: String,
    pub(crate) current_attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) conversation_history: Vec<Message>,
    pub(crate) use_rag: bool,
    pub(crate) use_web_search: bool,
}

impl Summarize for Agent {
    fn summary(&self) -> Summary {
        Summary::new()
            .with("state", self.state.as_str())
            .with("current_attempt", self.current_attempt)
    }
}

/// A message body of exactly 200 characters, different per index.
fn content(i: usize) -> String {
    let base = format!(
        "Message {i}: the printer on floor {} shows error E{:03} after the paper tray was \
         replaced; I restarted it twice, checked the cable and the driver version, and it \
         still refuses every job. ",
        i % 7,
        i % 1000
    );
    let mut s: String = base.chars().cycle().take(200).collect();
    s.truncate(200);
    s
}

impl Agent {
    /// An agent in the middle of a conversation of `messages` messages (user and assistant
    /// alternating, ~200 characters each).
    pub(crate) fn with_messages(messages: usize) -> Self {
        Agent {
            state: "gathering_details".to_owned(),
            current_attempt: 1,
            max_attempts: 3,
            conversation_history: (0..messages)
                .map(|i| Message {
                    role: if i % 2 == 0 { "user" } else { "assistant" }.to_owned(),
                    content: content(i),
                })
                .collect(),
            use_rag: true,
            use_web_search: false,
        }
    }

    /// The change every benchmarked `modify` makes: bump the attempt counter (same size).
    pub(crate) fn bump(&mut self) {
        self.current_attempt = self.current_attempt.wrapping_add(1) % 1000;
    }
}
