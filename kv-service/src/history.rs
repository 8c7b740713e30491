//! Operation histories in the JSON Lines format of `shared/HISTORY.md`.
//!
//! One [`Operation`] per line. [`read_history`] parses and validates a whole
//! history; [`HistoryWriter`] appends operations as they end, one line each,
//! flushing after every line so that a crash of the test harness loses at
//! most the operations still in flight.
//!
//! ```
//! use kv_service::history::{read_history, OpKind, Status};
//!
//! let text = r#"{"client": 1, "op": "put", "key": "k", "value": "v1", "expected": null,
//!   "output": null, "call": 10, "return": 20, "status": "ok"}
//! {"client": 2, "op": "get", "key": "k", "value": null, "expected": null,
//!   "output": "v1", "call": 30, "return": 40, "status": "ok"}"#;
//! // Each operation must sit on one line; join the wrapped lines first.
//! let joined = text.replace("\n  ", " ");
//! let history = read_history(joined.as_bytes()).unwrap();
//! assert_eq!(history.len(), 2);
//! assert_eq!(history[0].op, OpKind::Put);
//! assert_eq!(history[1].status, Status::Ok);
//! ```

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// What an operation does (`op` in the format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Read the current value; `""` when the key is absent.
    Get,
    /// Replace the value.
    Put,
    /// Concatenate a suffix; on an absent key, acts as `put`.
    Append,
    /// Compare and swap: set `value` iff the current value equals `expected`.
    Cas,
    /// Remove the key.
    Delete,
}

/// How an operation ended (`status` in the format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Completed; `output` is the answer.
    Ok,
    /// Certainly did not take effect.
    Fail,
    /// Unknown: it may have taken effect at any moment after `call`, or never.
    Info,
}

/// The answer an operation produced (`output` in the format): a string for
/// `get`, a boolean for `cas`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Output {
    /// The result of a `cas`.
    Bool(bool),
    /// The value a `get` read (`""` for an absent key).
    Text(String),
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The client that issued the operation; one client has at most one
    /// operation in flight.
    pub client: u64,
    /// What the operation does.
    pub op: OpKind,
    /// The key it works on.
    pub key: String,
    /// `put`, `cas`: the new value; `append`: the suffix; else `None`.
    #[serde(default)]
    pub value: Option<String>,
    /// `cas` only: the value that must be current for the swap.
    #[serde(default)]
    pub expected: Option<String>,
    /// The answer: a string for `get`, a boolean for `cas`, else `None`.
    #[serde(default)]
    pub output: Option<Output>,
    /// Nanoseconds on the history's clock just before the request was sent.
    pub call: u64,
    /// Nanoseconds on the same clock just after the answer arrived; `None`
    /// when no answer came.
    #[serde(rename = "return", default)]
    pub return_at: Option<u64>,
    /// How the operation ended.
    pub status: Status,
}

/// Why a history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading or writing the underlying file failed.
    #[error("history i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a JSON operation of the format.
    #[error("history line {line}: not an operation: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// A line parses but breaks a rule of the format.
    #[error("history line {line}: {reason}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// Which rule it breaks.
        reason: String,
    },
}

impl Operation {
    /// Checks the rules of the format that JSON alone cannot express: which
    /// fields each kind needs, and that an answered operation returned no
    /// earlier than it was called.
    pub fn validate(&self) -> Result<(), String> {
        let needs_value = matches!(self.op, OpKind::Put | OpKind::Append | OpKind::Cas);
        if needs_value && self.value.is_none() {
            return Err(format!("{:?} needs a value", self.op));
        }
        if self.op == OpKind::Cas && self.expected.is_none() {
            return Err("cas needs an expected value".into());
        }
        if let Some(return_at) = self.return_at {
            if return_at < self.call {
                return Err(format!(
                    "returns at {return_at}, before its call at {}",
                    self.call
                ));
            }
        }
        if self.status != Status::Ok {
            return Ok(());
        }
        if self.return_at.is_none() {
            return Err("an ok operation needs a return time".into());
        }
        match (self.op, &self.output) {
            (OpKind::Get, Some(Output::Text(_))) => Ok(()),
            (OpKind::Get, _) => Err("an ok get needs a string output".into()),
            (OpKind::Cas, Some(Output::Bool(_))) => Ok(()),
            (OpKind::Cas, _) => Err("an ok cas needs a boolean output".into()),
            _ => Ok(()),
        }
    }
}

/// Reads a whole history, one operation per non-blank line, and validates
/// each operation ([`Operation::validate`]).
pub fn read_history(reader: impl BufRead) -> Result<Vec<Operation>, HistoryError> {
    let mut operations = Vec::new();
    for (line_index, line) in reader.lines().enumerate() {
        let line = line?;
        let line_number = line_index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let operation: Operation =
            serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
                line: line_number,
                source,
            })?;
        operation
            .validate()
            .map_err(|reason| HistoryError::Invalid {
                line: line_number,
                reason,
            })?;
        operations.push(operation);
    }
    Ok(operations)
}

/// Reads the history in the file at `path`.
pub fn read_history_file(
    path: impl AsRef<std::path::Path>,
) -> Result<Vec<Operation>, HistoryError> {
    let file = std::fs::File::open(path)?;
    read_history(std::io::BufReader::new(file))
}

/// Writes operations as JSON Lines, flushing after each line.
#[derive(Debug)]
pub struct HistoryWriter<W: Write> {
    /// Where the lines go.
    sink: W,
}

impl<W: Write> HistoryWriter<W> {
    /// A writer that appends to `sink`.
    pub fn new(sink: W) -> HistoryWriter<W> {
        HistoryWriter { sink }
    }

    /// Writes one operation as one line and flushes.
    pub fn write(&mut self, operation: &Operation) -> Result<(), HistoryError> {
        let line = serde_json::to_string(operation).map_err(std::io::Error::from)?;
        self.sink.write_all(line.as_bytes())?;
        self.sink.write_all(b"\n")?;
        self.sink.flush()?;
        Ok(())
    }

    /// Gives back the sink.
    pub fn into_inner(self) -> W {
        self.sink
    }
}

/// Writes a whole history to the file at `path`, replacing it.
pub fn write_history_file(
    path: impl AsRef<std::path::Path>,
    operations: &[Operation],
) -> Result<(), HistoryError> {
    let file = std::fs::File::create(path)?;
    let mut writer = HistoryWriter::new(std::io::BufWriter::new(file));
    for operation in operations {
        writer.write(operation)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(call: u64, return_at: u64) -> Operation {
        Operation {
            client: 3,
            op: OpKind::Put,
            key: "k1".into(),
            value: Some("x7".into()),
            expected: None,
            output: None,
            call,
            return_at: Some(return_at),
            status: Status::Ok,
        }
    }

    #[test]
    fn written_history_reads_back_identical() {
        let mut info_get = put(5, 0);
        info_get.op = OpKind::Get;
        info_get.value = None;
        info_get.return_at = None;
        info_get.status = Status::Info;
        let mut cas = put(7, 9);
        cas.op = OpKind::Cas;
        cas.expected = Some("x7".into());
        cas.output = Some(Output::Bool(true));
        let operations = vec![put(1, 2), info_get, cas];

        let mut writer = HistoryWriter::new(Vec::new());
        for operation in &operations {
            writer.write(operation).unwrap();
        }
        let bytes = writer.into_inner();

        assert_eq!(read_history(&bytes[..]).unwrap(), operations);
    }

    #[test]
    fn format_example_from_the_spec_parses() {
        let line = r#"{"client": 3, "op": "append", "key": "k1", "value": "x7", "expected": null, "output": null, "call": 1200450, "return": 1730022, "status": "ok"}"#;
        let history = read_history(line.as_bytes()).unwrap();
        assert_eq!(history[0].op, OpKind::Append);
        assert_eq!(history[0].return_at, Some(1730022));
    }

    #[test]
    fn serialized_line_uses_the_field_names_of_the_format() {
        let line = serde_json::to_string(&put(1, 2)).unwrap();
        assert!(line.contains(r#""return":2"#), "{line}");
        assert!(line.contains(r#""op":"put""#), "{line}");
        assert!(line.contains(r#""status":"ok""#), "{line}");
    }

    #[test]
    fn ok_operation_without_return_is_refused_with_its_line() {
        let text = r#"{"client": 1, "op": "put", "key": "k", "value": "v", "call": 1, "return": null, "status": "ok"}"#;
        let error = read_history(format!("\n{text}").as_bytes()).unwrap_err();
        assert!(
            matches!(error, HistoryError::Invalid { line: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn ok_get_without_output_is_refused() {
        let text =
            r#"{"client": 1, "op": "get", "key": "k", "call": 1, "return": 2, "status": "ok"}"#;
        assert!(matches!(
            read_history(text.as_bytes()),
            Err(HistoryError::Invalid { line: 1, .. })
        ));
    }

    #[test]
    fn return_before_call_is_refused() {
        let text = r#"{"client": 1, "op": "put", "key": "k", "value": "v", "call": 5, "return": 2, "status": "ok"}"#;
        assert!(matches!(
            read_history(text.as_bytes()),
            Err(HistoryError::Invalid { line: 1, .. })
        ));
    }

    #[test]
    fn garbage_line_is_a_parse_error() {
        let error = read_history("not json".as_bytes()).unwrap_err();
        assert!(
            matches!(error, HistoryError::Parse { line: 1, .. }),
            "{error}"
        );
    }
}
