//! Inputs the fuzz targets in `fuzz/` found (see fuzz/README.md), kept as tests beside the code
//! they concern.

use serde::Deserialize;
use session_core::{Codec, Error, SessionId};

/// A state type with one variant, as a stored session might name another.
#[derive(Debug, Deserialize)]
enum Phase {
    New,
}

/// codec_decode: a session whose state names an unknown variant `a<ESC>[2Jb` (found as
/// `Escalat\x1ad` in the fuzzer's own state type). `Codec::decode` puts serde's message into
/// the `Corrupt` reason unescaped, so the terminal escape reaches every log line and error body
/// that shows the error. Fixed: codec.rs escapes control characters in the reason.
#[test]
fn corrupt_state_text_has_no_control_characters() {
    let id = SessionId::new("user-1").unwrap();
    // The envelope header, then the MessagePack string "a\x1b[2Jb" where a `Phase` belongs.
    let bytes = [0xc1, 0x01, 0x00, 0xa6, b'a', 0x1b, b'[', b'2', b'J', b'b'];
    let err = Codec::default().decode::<Phase>(&id, &bytes).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
}

/// The same envelope is refused as corrupt today (only its text is at fault).
#[test]
fn unknown_variant_is_corrupt() {
    let id = SessionId::new("user-1").unwrap();
    let bytes = [0xc1, 0x01, 0x00, 0xa6, b'a', 0x1b, b'[', b'2', b'J', b'b'];
    let err = Codec::default().decode::<Phase>(&id, &bytes).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        Codec::default()
            .decode::<Phase>(&id, &[0xc1, 0x01, 0x00, 0xa3, b'N', b'e', b'w'])
            .is_ok()
    );
}
