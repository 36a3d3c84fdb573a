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

/// Words for [`Agent::with_varied_messages`]: a support conversation's vocabulary.
const WORDS: &str = "\
     the printer on floor shows error after paper tray was replaced I restarted it twice \
     checked cable and driver version still refuses every job please try to open settings \
     menu then select network reset wireless connection laptop cannot find device list \
     shared queue office admin password update firmware download from vendor site install \
     reboot again light blinks orange green status page prints blank toner cartridge low \
     replace order ticket number escalate technician visit tomorrow morning thanks that \
     worked partly now scanner is slow when sending email attachments large files timeout \
     server logs show warning spooler service";

/// A message body of about 200 characters of words drawn pseudo-randomly (deterministic per
/// index): text that compresses like prose, unlike [`content`]'s repeated sentence.
fn varied_content(i: usize) -> String {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut state = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = format!("Message {i}:");
    while s.len() < 200 {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        s.push(' ');
        s.push_str(words[(state % words.len() as u64) as usize]);
        if state.is_multiple_of(11) {
            s.push_str(&format!(" {}", state % 10_000));
        }
    }
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

    /// Like [`with_messages`](Self::with_messages), with message bodies of varied words (for
    /// compression ratios closer to a real conversation's).
    pub(crate) fn with_varied_messages(messages: usize) -> Self {
        let mut agent = Self::with_messages(messages);
        for (i, m) in agent.conversation_history.iter_mut().enumerate() {
            m.content = varied_content(i);
        }
        agent
    }

    /// The change every benchmarked `modify` makes: bump the attempt counter (same size).
    pub(crate) fn bump(&mut self) {
        self.current_attempt = self.current_attempt.wrapping_add(1) % 1000;
    }
}

#[cfg(test)]
mod tests {
    use super::Agent;

    #[test]
    fn varied_messages_are_200_characters_of_different_text() {
        let a = Agent::with_varied_messages(100);
        let b = Agent::with_varied_messages(100);
        assert!(
            a.conversation_history
                .iter()
                .all(|m| m.content.len() == 200)
        );
        assert_eq!(
            a.conversation_history[7].content,
            b.conversation_history[7].content
        );
        assert_ne!(
            a.conversation_history[1].content[12..],
            a.conversation_history[2].content[12..]
        );
    }
}
