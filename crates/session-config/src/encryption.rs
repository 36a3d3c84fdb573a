//! `SESSION_ENCRYPTION_KEYS` (`session.encryption_keys`): `id:base64key,id:base64key`, the
//! first key encrypting, all decrypting. A key never appears in an error: values are shown as
//! `id:***`, and an id only when it is a valid key id.

use base64::{
    Engine,
    alphabet::{STANDARD, URL_SAFE},
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use session_core::{
    EncryptionKeys, Error, InvalidEncryptionKeys, KEY_LEN, MAX_KEY_ID_LEN, is_valid_key_id,
};

use crate::sources::Given;

/// What the setting accepts, for error messages.
const EXPECTED: &str = "a comma-separated list of id:key, each id 1 to 32 characters of \
     A-Z a-z 0-9 _ . - and each key 32 bytes in base64 (e.g. `openssl rand -base64 32`); the \
     first key encrypts, every key decrypts";

/// Parses the keys; `None` for an empty value (an empty TOML string clears the setting).
pub(crate) fn encryption_keys(given: &Given) -> Result<Option<EncryptionKeys>, Error> {
    let text = given.text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let entries: Vec<&str> = text.split(',').map(str::trim).collect();
    // What an error may show of the value: the valid ids, every key masked.
    let shown = entries
        .iter()
        .map(|entry| match entry.split_once(':') {
            Some((id, _)) if is_valid_key_id(id.trim()) => format!("{}:***", id.trim()),
            _ if entry.is_empty() => String::new(),
            _ => "***".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let fail = |why: String| given.error(shown.clone(), format!("{EXPECTED} ({why})"));
    let mut keys = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter().enumerate() {
        let n = n + 1;
        if entry.is_empty() {
            return Err(fail(format!("entry {n} is empty")));
        }
        let Some((id, key)) = entry.split_once(':') else {
            return Err(fail(format!("entry {n} is not id:key")));
        };
        let id = id.trim();
        if !is_valid_key_id(id) {
            return Err(fail(format!(
                "the key id of entry {n} is not 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z \
                 0-9 _ . -"
            )));
        }
        let bytes = decode_base64(key.trim())
            .ok_or_else(|| fail(format!("the key of {id} is not base64")))?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            fail(format!(
                "the key of {id} is {} bytes, not {KEY_LEN}",
                bytes.len()
            ))
        })?;
        keys.push((id.to_owned(), key));
    }
    EncryptionKeys::from_keys(keys)
        .map(Some)
        .map_err(|e: InvalidEncryptionKeys| fail(e.to_string()))
}

/// Standard or URL-safe base64, with or without padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    [STANDARD, URL_SAFE]
        .iter()
        .find_map(|alphabet| GeneralPurpose::new(alphabet, config).decode(text).ok())
}
