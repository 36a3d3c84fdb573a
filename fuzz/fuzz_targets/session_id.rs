//! `SessionId::new` on arbitrary text.
//!
//! Invariants: an id is accepted exactly when it is 1 to `MAX_ID_LEN` bytes of
//! `[A-Za-z0-9_.:@-]` (checked against a spelled-out copy of the charset, and against
//! `is_id_byte`); an accepted id is the input unchanged through `as_str`, `Display`, `FromStr`
//! and serde; a refusal names the right reason, and its text is safe to log (no control
//! characters, bounded length).
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::{InvalidIdReason, MAX_ID_LEN, SessionId, is_id_byte};

/// The documented charset, spelled out independently of `is_id_byte`.
fn documented(b: u8) -> bool {
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@-".contains(&b)
}

fuzz_target!(|data: &[u8]| {
    for &b in data {
        assert_eq!(is_id_byte(b), documented(b), "is_id_byte({b:#04x})");
    }
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let valid = !text.is_empty() && text.len() <= MAX_ID_LEN && text.bytes().all(documented);
    let from_json = serde_json::to_string(text)
        .ok()
        .and_then(|json| serde_json::from_str::<SessionId>(&json).ok());
    match SessionId::new(text) {
        Ok(id) => {
            assert!(valid, "accepted {text:?}");
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
            assert_eq!(format!("{id:?}"), format!("{text:?}"));
            assert_eq!(text.parse::<SessionId>().ok().as_ref(), Some(&id));
            assert_eq!(from_json.as_ref(), Some(&id));
            let json = serde_json::to_string(&id).unwrap_or_default();
            assert_eq!(json, serde_json::to_string(text).unwrap_or_default());
        }
        Err(e) => {
            assert!(!valid, "refused {text:?}: {e}");
            assert!(from_json.is_none(), "serde accepted {text:?}");
            match e.reason() {
                InvalidIdReason::Empty => assert!(text.is_empty()),
                InvalidIdReason::TooLong { len } => {
                    assert_eq!(*len, text.len());
                    assert!(text.len() > MAX_ID_LEN);
                }
                InvalidIdReason::Char { ch, index } => {
                    assert!(!text.is_empty() && text.len() <= MAX_ID_LEN);
                    assert_eq!(text[*index..].chars().next(), Some(*ch));
                    assert!(!(ch.is_ascii() && documented(*ch as u8)), "{ch:?}");
                    assert!(text.as_bytes()[..*index].iter().all(|&b| documented(b)));
                }
                other => panic!("unknown reason {other:?}"),
            }
            let shown = e.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
            // The input is quoted cut to 64 characters, each escaped to at most 10 (`\u{10ffff}`).
            assert!(
                shown.chars().count() <= 64 * 10 + 200,
                "{} chars",
                shown.len()
            );
        }
    }
});
