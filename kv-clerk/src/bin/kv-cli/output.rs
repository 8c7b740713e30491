//! What kv-cli prints: text for people, or one JSON object per command.

use serde_json::{json, Map, Value};

/// Adds `bytes` to `object` under `name` when they are UTF-8 text, else as
/// hexadecimal under `<name>_hex`, so that JSON stays valid for any value.
pub fn insert_bytes(object: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            object.insert(name.into(), Value::Null);
        }
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => {
                object.insert(name.into(), Value::String(text.into()));
            }
            Err(_) => {
                let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
                object.insert(format!("{name}_hex"), Value::String(hex));
            }
        },
    }
}

/// The JSON object of a `get`.
pub fn get_json(key: &[u8], value: Option<&[u8]>) -> Value {
    let mut object = Map::new();
    insert_bytes(&mut object, "key", Some(key));
    object.insert("found".into(), Value::Bool(value.is_some()));
    insert_bytes(&mut object, "value", value);
    Value::Object(object)
}

/// The JSON object of a `put` or `append` that took effect.
pub fn write_json(op: &str, key: &[u8]) -> Value {
    let mut object = Map::new();
    object.insert("op".into(), json!(op));
    insert_bytes(&mut object, "key", Some(key));
    object.insert("ok".into(), Value::Bool(true));
    Value::Object(object)
}

/// How many bytes of a key a message shows.
const KEY_SHOWN_BYTES_MAX: usize = 48;

/// A key for a message: quoted when it is text, else in hexadecimal; a
/// long key is cut, with its length.
pub fn key_text(key: &[u8]) -> String {
    let (text, shown_len) = match std::str::from_utf8(key) {
        Ok(text) => {
            let mut end = text.len().min(KEY_SHOWN_BYTES_MAX);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            (format!("{:?}", &text[..end]), end)
        }
        Err(_) => {
            let shown = &key[..key.len().min(KEY_SHOWN_BYTES_MAX)];
            let hex: String = shown.iter().map(|byte| format!("{byte:02x}")).collect();
            (format!("0x{hex}"), shown.len())
        }
    };
    if shown_len < key.len() {
        format!("{text}... ({} bytes)", key.len())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_are_strings_and_binary_values_hex() {
        assert_eq!(
            get_json(b"k", Some(b"v1")),
            json!({"key": "k", "found": true, "value": "v1"})
        );
        assert_eq!(
            get_json(b"k", Some(&[0xff, 0x00])),
            json!({"key": "k", "found": true, "value_hex": "ff00"})
        );
        assert_eq!(
            get_json(b"k", None),
            json!({"key": "k", "found": false, "value": null})
        );
    }

    #[test]
    fn keys_in_messages_are_quoted_or_hex() {
        assert_eq!(key_text(b"a b"), "\"a b\"");
        assert_eq!(key_text(&[0xfe]), "0xfe");
        let long = key_text(&[b'k'; 2000]);
        assert_eq!(long, format!("{:?}... (2000 bytes)", "k".repeat(48)));
    }
}
