//! The repair agent: a deterministic state machine (no model, no network) whose state the
//! library keeps.
//!
//! ```text
//!  new_problem --(problem)--> diagnosing --(details)--> awaiting_feedback --(success)--> resolved
//!                                                         |      ^
//!                                                (failure, attempts left: next fix)
//!                                                         |
//!                                          (failure on the last attempt)--> escalated
//! ```
//!
//! - `new_problem`: the first message describes the problem; the agent asks for details and
//!   moves to `diagnosing`.
//! - `diagnosing`: the next message gives the details; the agent proposes fix 1 and moves to
//!   `awaiting_feedback` (`current_attempt` = 1).
//! - `awaiting_feedback`: the message is feedback on the last fix ([`Feedback::classify`]):
//!   success ends in `resolved`; failure proposes the next fix (`current_attempt` + 1) or,
//!   when `current_attempt` has reached `max_attempts` (3), ends in `escalated`; anything
//!   else is unclear and the agent asks again, without using up an attempt.
//! - `resolved` and `escalated` are final: the agent answers, and nothing changes.
//!
//! Every message and every reply is appended to `conversation_history`, so a conversation of
//! `n` messages has `2n` entries.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};
use session_core::{Summarize, Summary};

/// Fix attempts before the agent escalates (the seed's `max_attempts`).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The fixes the agent proposes, in order: attempt `n` proposes `FIXES[n - 1]` (cycling when
/// `max_attempts` is larger).
const FIXES: &[&str] = &[
    "Restart the device, wait ten seconds, and try again.",
    "Check every cable and connection, then power-cycle the device and anything it depends on.",
    "Update the software or firmware to the latest version and reset its settings to the defaults.",
    "Reinstall the software from scratch.",
];

/// Where a conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for the problem's description.
    #[default]
    NewProblem,
    /// Waiting for details about the problem.
    Diagnosing,
    /// A fix was proposed; waiting to hear whether it worked.
    AwaitingFeedback,
    /// A fix worked. Final.
    Resolved,
    /// Every attempt failed; handed to a person. Final.
    Escalated,
}

impl State {
    /// The state's name, as JSON and listings spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewProblem => "new_problem",
            Self::Diagnosing => "diagnosing",
            Self::AwaitingFeedback => "awaiting_feedback",
            Self::Resolved => "resolved",
            Self::Escalated => "escalated",
        }
    }

    /// Whether the conversation is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Resolved | Self::Escalated)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who said something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person asking for help.
    User,
    /// The agent.
    Assistant,
}

/// One entry of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

/// What a user's answer to a proposed fix means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// The fix worked.
    Success,
    /// The fix did not work.
    Failure,
    /// Neither: the agent asks again.
    Unclear,
}

/// Words that make an answer a failure. Checked first, so "not fixed" or "yes, still broken"
/// are failures.
const FAILURE_WORDS: &[&str] = &[
    "no", "nope", "not", "still", "broken", "didn't", "didnt", "doesn't", "doesnt", "failed",
    "fails", "worse", "isn't", "isnt",
];
/// Words that make an answer a success (when no failure word is present).
const SUCCESS_WORDS: &[&str] = &[
    "yes", "yep", "yeah", "fixed", "works", "worked", "working", "solved", "resolved", "thanks",
];

impl Feedback {
    /// Classifies an answer word by word (case-insensitive, punctuation ignored): any of
    /// `no nope not still broken didn't doesn't isn't failed fails worse` makes it a
    /// [`Failure`](Self::Failure); otherwise any of `yes yep yeah fixed works worked working
    /// solved resolved thanks` makes it a [`Success`](Self::Success); anything else is
    /// [`Unclear`](Self::Unclear).
    pub fn classify(message: &str) -> Self {
        let lower = message.to_lowercase().replace('\u{2019}', "'");
        let words: Vec<&str> = lower
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
            .collect();
        if words.iter().any(|w| FAILURE_WORDS.contains(w)) {
            Self::Failure
        } else if words.iter().any(|w| SUCCESS_WORDS.contains(w)) {
            Self::Success
        } else {
            Self::Unclear
        }
    }
}

/// One conversation's agent: the state the library keeps per session.
///
/// Every field has a serde default, so sessions written by an older version stay readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Agent {
    /// Where the conversation stands.
    pub state: State,
    /// The fix being tried (0 before the first one).
    pub current_attempt: u32,
    /// Fixes tried before escalating.
    pub max_attempts: u32,
    /// Every message and reply, in order.
    pub conversation_history: Vec<Turn>,
    /// Whether replies draw on the knowledge base (a flag the seed kept; here it only shows in
    /// the reply).
    pub use_rag: bool,
    /// Whether replies draw on a web search (likewise).
    pub use_web_search: bool,
    /// The problem as first described.
    pub problem: Option<String>,
    /// The idempotency keys of the last [`REMEMBERED_REQUESTS`] messages handled, with their
    /// replies, oldest first: a client that resends a message with the same key (after a lost
    /// response) gets the first reply again, and the message is not handled twice. Kept in the
    /// state, so the check and the change are one compare-and-set.
    pub recent_requests: VecDeque<HandledRequest>,
}

/// How many idempotency keys an agent remembers.
pub const REMEMBERED_REQUESTS: usize = 32;

/// A message handled under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandledRequest {
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// The reply it got.
    pub reply: String,
}

impl Default for Agent {
    fn default() -> Self {
        Self {
            state: State::NewProblem,
            current_attempt: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            conversation_history: Vec::new(),
            use_rag: false,
            use_web_search: false,
            problem: None,
            recent_requests: VecDeque::new(),
        }
    }
}

/// A message to the agent, with the flags it may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// What the user said.
    pub text: &'a str,
    /// Sets `use_rag` when given.
    pub use_rag: Option<bool>,
    /// Sets `use_web_search` when given.
    pub use_web_search: Option<bool>,
}

impl<'a> Message<'a> {
    /// A message that leaves the flags as they are.
    pub fn text(text: &'a str) -> Self {
        Self {
            text,
            use_rag: None,
            use_web_search: None,
        }
    }
}

impl Agent {
    /// A new conversation, waiting for a problem.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`handle`](Self::handle) under an idempotency key: a key seen before returns the reply
    /// it got then and changes nothing (`true`: a replay); a new key handles the message and
    /// remembers the key with its reply. Without a key, the same as `handle`.
    pub fn handle_once(&mut self, key: Option<&str>, message: Message<'_>) -> (String, bool) {
        let Some(key) = key else {
            return (self.handle(message), false);
        };
        if let Some(done) = self.recent_requests.iter().find(|r| r.key == key) {
            return (done.reply.clone(), true);
        }
        let reply = self.handle(message);
        if self.recent_requests.len() >= REMEMBERED_REQUESTS {
            self.recent_requests.pop_front();
        }
        self.recent_requests.push_back(HandledRequest {
            key: key.to_owned(),
            reply: reply.clone(),
        });
        (reply, false)
    }

    /// Handles one message: updates flags, moves the state machine, records the message and
    /// the reply in the history, and returns the reply.
    pub fn handle(&mut self, message: Message<'_>) -> String {
        if let Some(flag) = message.use_rag {
            self.use_rag = flag;
        }
        if let Some(flag) = message.use_web_search {
            self.use_web_search = flag;
        }
        let text = message.text.trim();
        self.conversation_history.push(Turn {
            role: Role::User,
            content: text.to_owned(),
        });
        let reply = self.step(text);
        self.conversation_history.push(Turn {
            role: Role::Assistant,
            content: reply.clone(),
        });
        reply
    }

    fn step(&mut self, text: &str) -> String {
        match self.state {
            State::NewProblem => {
                self.problem = Some(text.to_owned());
                self.state = State::Diagnosing;
                "Let's fix that. Tell me more: what exactly happens, since when, and what \
                 changed just before?"
                    .to_owned()
            }
            State::Diagnosing => {
                self.state = State::AwaitingFeedback;
                self.current_attempt = 1;
                self.propose()
            }
            State::AwaitingFeedback => match Feedback::classify(text) {
                Feedback::Success => {
                    self.state = State::Resolved;
                    format!(
                        "Great, glad attempt {} worked. The problem is resolved.",
                        self.current_attempt
                    )
                }
                Feedback::Failure if self.current_attempt >= self.max_attempts => {
                    self.state = State::Escalated;
                    format!(
                        "I'm sorry: {} attempts did not fix it. I'm escalating this \
                         conversation to a human technician, who will pick it up from here.",
                        self.current_attempt
                    )
                }
                Feedback::Failure => {
                    self.current_attempt += 1;
                    self.propose()
                }
                Feedback::Unclear => format!(
                    "Did attempt {} fix the problem? Please answer \"yes\" or \"no\".",
                    self.current_attempt
                ),
            },
            State::Resolved => "This problem is resolved. For a new problem, please start a \
                                new conversation."
                .to_owned(),
            State::Escalated => "This conversation has been escalated; a human technician \
                                 will follow up."
                .to_owned(),
        }
    }

    /// The reply proposing fix `current_attempt`.
    fn propose(&self) -> String {
        let index = (self.current_attempt.max(1) - 1) as usize % FIXES.len();
        let mut sources = Vec::new();
        if self.use_rag {
            sources.push("the knowledge base");
        }
        if self.use_web_search {
            sources.push("a web search");
        }
        let based_on = if sources.is_empty() {
            String::new()
        } else {
            format!(" (based on {})", sources.join(" and "))
        };
        format!(
            "Attempt {}/{}{based_on}: {} Did that fix it?",
            self.current_attempt, self.max_attempts, FIXES[index]
        )
    }
}

impl Summarize for Agent {
    /// What listings show: `state`, `current_attempt`, `max_attempts`.
    fn summary(&self) -> Summary {
        Summary::new()
            .with("state", self.state.as_str())
            .with("current_attempt", self.current_attempt)
            .with("max_attempts", self.max_attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_in(state: State, attempt: u32) -> Agent {
        Agent {
            state,
            current_attempt: attempt,
            ..Agent::new()
        }
    }

    fn say(agent: &mut Agent, text: &str) -> String {
        agent.handle(Message::text(text))
    }

    #[test]
    fn new_problem_moves_to_diagnosing_and_keeps_the_problem() {
        let mut agent = Agent::new();
        let reply = say(&mut agent, "  my printer is offline ");
        assert_eq!(agent.state, State::Diagnosing);
        assert_eq!(agent.current_attempt, 0);
        assert_eq!(agent.problem.as_deref(), Some("my printer is offline"));
        assert!(reply.contains("Tell me more"), "{reply}");
    }

    #[test]
    fn diagnosing_proposes_the_first_fix() {
        let mut agent = agent_in(State::Diagnosing, 0);
        let reply = say(&mut agent, "since this morning");
        assert_eq!(agent.state, State::AwaitingFeedback);
        assert_eq!(agent.current_attempt, 1);
        assert!(
            reply.starts_with("Attempt 1/3: Restart the device"),
            "{reply}"
        );
    }

    #[test]
    fn success_feedback_resolves() {
        for answer in ["yes", "Yes!", "it works now", "Fixed, thanks."] {
            let mut agent = agent_in(State::AwaitingFeedback, 2);
            let reply = say(&mut agent, answer);
            assert_eq!(agent.state, State::Resolved, "{answer}");
            assert_eq!(agent.current_attempt, 2);
            assert!(reply.contains("attempt 2 worked"), "{reply}");
        }
    }

    #[test]
    fn failure_feedback_proposes_the_next_fix() {
        let mut agent = agent_in(State::AwaitingFeedback, 1);
        let reply = say(&mut agent, "no, still broken");
        assert_eq!(agent.state, State::AwaitingFeedback);
        assert_eq!(agent.current_attempt, 2);
        assert!(
            reply.starts_with("Attempt 2/3: Check every cable"),
            "{reply}"
        );
    }

    #[test]
    fn failure_on_the_last_attempt_escalates() {
        let mut agent = agent_in(State::AwaitingFeedback, 3);
        let reply = say(&mut agent, "nope");
        assert_eq!(agent.state, State::Escalated);
        assert_eq!(agent.current_attempt, 3);
        assert!(reply.contains("escalating"), "{reply}");
    }

    #[test]
    fn unclear_feedback_asks_again_without_using_an_attempt() {
        let mut agent = agent_in(State::AwaitingFeedback, 2);
        let reply = say(&mut agent, "hmm, let me check");
        assert_eq!(agent.state, State::AwaitingFeedback);
        assert_eq!(agent.current_attempt, 2);
        assert!(reply.contains("Did attempt 2 fix"), "{reply}");
    }

    #[test]
    fn final_states_stay_final() {
        for state in [State::Resolved, State::Escalated] {
            let mut agent = agent_in(state, 2);
            say(&mut agent, "no");
            say(&mut agent, "yes");
            assert_eq!(agent.state, state);
            assert_eq!(agent.current_attempt, 2);
            assert!(state.is_final());
        }
    }

    #[test]
    fn a_whole_conversation_to_escalation_records_every_turn() {
        let mut agent = Agent::new();
        for text in ["wifi drops", "every hour", "no", "no", "still broken"] {
            say(&mut agent, text);
        }
        assert_eq!(agent.state, State::Escalated);
        assert_eq!(agent.current_attempt, 3);
        assert_eq!(agent.conversation_history.len(), 10);
        assert_eq!(agent.conversation_history[0].role, Role::User);
        assert_eq!(agent.conversation_history[1].role, Role::Assistant);
    }

    #[test]
    fn feedback_is_classified_word_by_word_failure_first() {
        use Feedback::*;
        for (text, expected) in [
            ("yes", Success),
            ("YES", Success),
            ("works", Success),
            ("that worked, thanks", Success),
            ("no", Failure),
            ("not fixed", Failure),
            ("yes, but it is still broken", Failure),
            ("It didn\u{2019}t work", Failure),
            ("doesn't work", Failure),
            ("", Unclear),
            ("maybe", Unclear),
            ("nothing changed", Unclear),
            ("know", Unclear),
        ] {
            assert_eq!(Feedback::classify(text), expected, "{text:?}");
        }
    }

    #[test]
    fn flags_change_only_when_given_and_show_in_proposals() {
        let mut agent = agent_in(State::Diagnosing, 0);
        let reply = agent.handle(Message {
            text: "details",
            use_rag: Some(true),
            use_web_search: Some(true),
        });
        assert!(agent.use_rag && agent.use_web_search);
        assert!(
            reply.contains("(based on the knowledge base and a web search)"),
            "{reply}"
        );
        agent.handle(Message::text("no"));
        assert!(agent.use_rag && agent.use_web_search);
    }

    #[test]
    fn more_attempts_than_fixes_cycle_through_them() {
        let mut agent = Agent {
            max_attempts: 6,
            ..agent_in(State::AwaitingFeedback, 4)
        };
        let reply = say(&mut agent, "no");
        assert!(reply.starts_with("Attempt 5/6: Restart"), "{reply}");
    }

    #[test]
    fn the_summary_shows_state_and_attempts() {
        let summary = agent_in(State::AwaitingFeedback, 2).summary();
        assert_eq!(
            summary.get("state").and_then(|v| v.as_str()),
            Some("awaiting_feedback")
        );
        assert_eq!(
            summary.get("current_attempt").and_then(|v| v.as_i64()),
            Some(2)
        );
        assert_eq!(
            summary.get("max_attempts").and_then(|v| v.as_i64()),
            Some(3)
        );
    }

    #[test]
    fn old_sessions_without_new_fields_still_decode() {
        let agent: Agent = serde_json::from_str(r#"{"state":"diagnosing"}"#).unwrap();
        assert_eq!(agent.state, State::Diagnosing);
        assert_eq!(agent.max_attempts, 3);
    }
}
