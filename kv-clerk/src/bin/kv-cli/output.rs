//! What kv-cli prints: text for people, or one JSON object per command.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use kv_clerk::{NodeStatus, ServerId};
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

/// What each node answered to a status request, or why it did not.
pub type StatusAnswers = BTreeMap<ServerId, Result<NodeStatus, String>>;

/// The JSON of `status`: `{"nodes": [...]}`, one object per node, with its
/// address and either its status (and `log_entries`) or an `error`.
pub fn status_json(endpoints: &BTreeMap<ServerId, SocketAddr>, answers: &StatusAnswers) -> Value {
    let nodes: Vec<Value> = answers
        .iter()
        .map(|(id, answer)| {
            let mut object = match answer {
                Ok(status) => {
                    let mut object = match serde_json::to_value(status) {
                        Ok(Value::Object(object)) => object,
                        _ => Map::new(),
                    };
                    object.insert("log_entries".into(), json!(status.log_entries()));
                    object
                }
                Err(error) => {
                    let mut object = Map::new();
                    object.insert("error".into(), json!(error));
                    object
                }
            };
            object.insert("id".into(), json!(id));
            object.insert("address".into(), json!(endpoints[id].to_string()));
            Value::Object(object)
        })
        .collect();
    json!({ "nodes": nodes })
}

/// The text of `status`: one line per node.
pub fn status_table(endpoints: &BTreeMap<ServerId, SocketAddr>, answers: &StatusAnswers) -> String {
    let mut text = format!(
        "{:<5} {:<22} {:<13} {:>6} {:>6} {:>9} {:>9}  {}\n",
        "node", "address", "role", "term", "leader", "commit", "applied", "log"
    );
    for (id, answer) in answers {
        let address = endpoints[id].to_string();
        let _ =
            match answer {
                Ok(status) => writeln!(
                text,
                "{:<5} {:<22} {:<13} {:>6} {:>6} {:>9} {:>9}  {} entries ({}..={}), snapshot at {}",
                id,
                address,
                status.role,
                status.term,
                status.leader.map_or("-".to_string(), |leader| leader.to_string()),
                status.commit,
                status.applied,
                status.log_entries(),
                status.first_index,
                status.last_index,
                status.snapshot_index
            ),
                Err(error) => writeln!(text, "{id:<5} {address:<22} no answer: {error}"),
            };
    }
    text
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

    fn answers() -> (BTreeMap<ServerId, SocketAddr>, StatusAnswers) {
        let endpoints = [
            (1, "127.0.0.1:7001".parse().unwrap()),
            (2, "127.0.0.1:7002".parse().unwrap()),
        ]
        .into();
        let status = NodeStatus {
            id: 1,
            role: "leader".into(),
            term: 3,
            leader: Some(1),
            commit: 130,
            applied: 129,
            first_index: 91,
            last_index: 130,
            snapshot_index: 90,
        };
        let answers = [(1, Ok(status)), (2, Err("no answer within 1s".to_string()))].into();
        (endpoints, answers)
    }

    #[test]
    fn status_json_has_every_field_and_the_error_of_a_silent_node() {
        let (endpoints, answers) = answers();
        assert_eq!(
            status_json(&endpoints, &answers),
            json!({"nodes": [
                {"id": 1, "address": "127.0.0.1:7001", "role": "leader", "term": 3,
                 "leader": 1, "commit": 130, "applied": 129, "first_index": 91,
                 "last_index": 130, "snapshot_index": 90, "log_entries": 40},
                {"id": 2, "address": "127.0.0.1:7002", "error": "no answer within 1s"},
            ]})
        );
    }

    #[test]
    fn status_table_has_a_line_per_node() {
        let (endpoints, answers) = answers();
        let table = status_table(&endpoints, &answers);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("node  address"), "{table}");
        assert!(
            lines[1].contains("leader")
                && lines[1].contains("40 entries (91..=130), snapshot at 90"),
            "{table}"
        );
        assert!(
            lines[2].contains("no answer: no answer within 1s"),
            "{table}"
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
