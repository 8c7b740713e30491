//! The sequential specification of one key, as the checker sees it.
//!
//! A key's state is its value, with the absent key and the empty value
//! treated as one (`get` of an absent key reads `""`, see HISTORY.md). States
//! are interned: the search stores small ids, and the text of each distinct
//! value is kept once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::history::{OpKind, Output, Status};

/// Index of an interned state.
pub(crate) type StateId = u32;

/// One operation of one key, reduced to what the model needs.
#[derive(Clone, Debug)]
pub(crate) struct KeyOp {
    /// Position of the operation in the whole history (0-based).
    pub(crate) history_index: usize,
    /// What it does.
    pub(crate) kind: OpKind,
    /// `put`, `append`, `cas`: the value or suffix.
    pub(crate) value: Arc<str>,
    /// `cas`: the value that must be current.
    pub(crate) expected: Arc<str>,
    /// The answer, when the operation completed (`status == ok`).
    pub(crate) output: Option<Output>,
    /// When it was called.
    pub(crate) call: u64,
    /// When it returned; `None` for an operation of unknown outcome, which
    /// counts as returning after everything else.
    pub(crate) return_at: Option<u64>,
    /// How it ended (never `fail`: those are left out before the search).
    pub(crate) status: Status,
}

impl KeyOp {
    /// Whether the search must place this operation. An operation of
    /// unknown outcome need not be placed: "never took effect" explains it.
    pub(crate) fn is_required(&self) -> bool {
        self.status == Status::Ok
    }
}

/// The interned values of one key.
#[derive(Debug)]
pub(crate) struct States {
    /// The text of each state, by id.
    texts: Vec<Arc<str>>,
    /// The id of each text.
    ids: HashMap<Arc<str>, StateId>,
}

impl States {
    /// A table holding only the empty value, with id 0.
    pub(crate) fn new() -> States {
        let mut states = States {
            texts: Vec::new(),
            ids: HashMap::new(),
        };
        let empty = states.intern("");
        debug_assert_eq!(empty, States::EMPTY);
        states
    }

    /// The id of the empty (or absent) value.
    pub(crate) const EMPTY: StateId = 0;

    /// The text of state `id`.
    pub(crate) fn text(&self, id: StateId) -> &str {
        &self.texts[id as usize]
    }

    fn intern(&mut self, text: &str) -> StateId {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = StateId::try_from(self.texts.len()).expect("fewer than 2^32 states per key");
        let text: Arc<str> = Arc::from(text);
        self.texts.push(text.clone());
        self.ids.insert(text, id);
        id
    }

    /// Applies `op` to state `current`: the next state, or `None` when the
    /// operation's recorded output contradicts `current`.
    pub(crate) fn step(&mut self, current: StateId, op: &KeyOp) -> Option<StateId> {
        match op.kind {
            OpKind::Get => match &op.output {
                Some(Output::Text(read)) if read.as_str() == self.text(current) => Some(current),
                Some(_) => None,
                // A get without an answer says nothing; the checker drops
                // such gets before the search, but stay correct anyway.
                None => Some(current),
            },
            OpKind::Put => Some(self.intern(&op.value)),
            OpKind::Append => {
                if op.value.is_empty() {
                    return Some(current);
                }
                let mut text = String::with_capacity(self.text(current).len() + op.value.len());
                text.push_str(self.text(current));
                text.push_str(&op.value);
                Some(self.intern(&text))
            }
            OpKind::Delete => Some(States::EMPTY),
            OpKind::Cas => {
                let swapped = self.text(current) == &*op.expected;
                match &op.output {
                    Some(Output::Bool(answer)) if *answer != swapped => None,
                    Some(Output::Text(_)) => None,
                    _ if swapped => Some(self.intern(&op.value)),
                    _ => Some(current),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, value: &str, output: Option<Output>) -> KeyOp {
        KeyOp {
            history_index: 0,
            kind,
            value: Arc::from(value),
            expected: Arc::from("a"),
            output,
            call: 0,
            return_at: Some(1),
            status: Status::Ok,
        }
    }

    #[test]
    fn append_to_absent_key_acts_as_put() {
        let mut states = States::new();
        let next = states
            .step(States::EMPTY, &op(OpKind::Append, "x", None))
            .unwrap();
        assert_eq!(states.text(next), "x");
    }

    #[test]
    fn get_must_read_the_current_value() {
        let mut states = States::new();
        let a = states
            .step(States::EMPTY, &op(OpKind::Put, "a", None))
            .unwrap();
        let read_a = op(OpKind::Get, "", Some(Output::Text("a".into())));
        let read_empty = op(OpKind::Get, "", Some(Output::Text(String::new())));
        assert_eq!(states.step(a, &read_a), Some(a));
        assert_eq!(states.step(a, &read_empty), None);
        assert_eq!(states.step(States::EMPTY, &read_empty), Some(States::EMPTY));
    }

    #[test]
    fn cas_swaps_only_on_the_expected_value() {
        let mut states = States::new();
        let a = states
            .step(States::EMPTY, &op(OpKind::Put, "a", None))
            .unwrap();
        let swap_true = op(OpKind::Cas, "b", Some(Output::Bool(true)));
        let swap_false = op(OpKind::Cas, "b", Some(Output::Bool(false)));
        let b = states.step(a, &swap_true).unwrap();
        assert_eq!(states.text(b), "b");
        assert_eq!(states.step(a, &swap_false), None);
        assert_eq!(states.step(b, &swap_false), Some(b));
        assert_eq!(states.step(b, &swap_true), None);
    }

    #[test]
    fn delete_makes_the_key_read_empty() {
        let mut states = States::new();
        let a = states
            .step(States::EMPTY, &op(OpKind::Put, "a", None))
            .unwrap();
        assert_eq!(
            states.step(a, &op(OpKind::Delete, "", None)),
            Some(States::EMPTY)
        );
    }
}
