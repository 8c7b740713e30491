//! What the crash tests expect on disk: a model of the log that follows
//! the operations the child reports, with the same rules as raft-core's
//! in-memory storage.

use std::fmt;

use raft_core::{HardState, LogIndex, LogWrite, SnapshotMeta, StoredState, Term};

use crate::support::{expected_entry, Rng};

/// One mutating call of the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `write` of `count` entries from `first` in `term`, with a hard state
    /// derived from them.
    Write {
        first: LogIndex,
        count: u64,
        term: Term,
    },
    /// `install_snapshot` at `index` in `term`.
    Snapshot { index: LogIndex, term: Term },
}

impl Op {
    /// The write this operation stands for (for `Op::Write`).
    pub fn log_write(&self) -> Option<LogWrite> {
        let Op::Write { first, count, term } = *self else {
            return None;
        };
        Some(LogWrite {
            hard_state: Some(hard_state_for(first, term)),
            entries: (first..first + count)
                .map(|index| expected_entry(index, term))
                .collect(),
        })
    }

    /// Parses what [`Op`]'s `Display` wrote.
    pub fn parse(text: &str) -> Option<Op> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (kind, arguments) = words.split_first()?;
        let numbers: Vec<u64> = arguments
            .iter()
            .map(|word| word.parse().ok())
            .collect::<Option<_>>()?;
        match (*kind, numbers.as_slice()) {
            ("write", &[first, count, term]) => Some(Op::Write { first, count, term }),
            ("snapshot", &[index, term]) => Some(Op::Snapshot { index, term }),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write { first, count, term } => write!(formatter, "write {first} {count} {term}"),
            Op::Snapshot { index, term } => write!(formatter, "snapshot {index} {term}"),
        }
    }
}

/// The hard state written with entries from `first` in `term`.
fn hard_state_for(first: LogIndex, term: Term) -> HardState {
    HardState {
        term,
        vote: Some(term % 3 + 1),
        commit: first - 1,
    }
}

/// The log as the operations so far leave it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    hard_state: HardState,
    snapshot: Option<SnapshotMeta>,
    /// (index, term) of each entry after the snapshot.
    entries: Vec<(LogIndex, Term)>,
}

impl Model {
    /// The model of a stored state, which must hold only entries that
    /// [`expected_entry`] makes.
    pub fn from_stored(state: &StoredState) -> Model {
        let model = Model {
            hard_state: state.hard_state,
            snapshot: state.snapshot,
            entries: state
                .entries
                .iter()
                .map(|entry| (entry.index, entry.term))
                .collect(),
        };
        assert_eq!(
            model.stored_state(),
            *state,
            "stored entries differ from the model's"
        );
        model
    }

    /// The position of the latest snapshot, if any.
    pub fn snapshot(&self) -> Option<SnapshotMeta> {
        self.snapshot
    }

    pub fn first_index(&self) -> LogIndex {
        self.snapshot.map_or(1, |meta| meta.last_index + 1)
    }

    pub fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map_or(self.first_index() - 1, |&(index, _)| index)
    }

    fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.entries
            .iter()
            .find(|&&(stored, _)| stored == index)
            .map(|&(_, term)| term)
    }

    /// What `load` must return.
    pub fn stored_state(&self) -> StoredState {
        StoredState {
            hard_state: self.hard_state,
            snapshot: self.snapshot,
            entries: self
                .entries
                .iter()
                .map(|&(index, term)| expected_entry(index, term))
                .collect(),
        }
    }

    /// Applies `op` as the storage contract says.
    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Write { first, count, term } => {
                self.entries.retain(|&(index, _)| index < first);
                self.entries
                    .extend((first..first + count).map(|index| (index, term)));
                self.hard_state = hard_state_for(first, term);
            }
            Op::Snapshot { index, term } => {
                if self.term_at(index) == Some(term) {
                    self.entries.retain(|&(stored, _)| stored > index);
                } else {
                    self.entries.clear();
                }
                self.snapshot = Some(SnapshotMeta {
                    last_index: index,
                    last_term: term,
                });
            }
        }
    }

    /// A random next operation that the driver could issue: mostly
    /// appends, some conflicting rewrites, some snapshots.
    pub fn next_op(&self, rng: &mut Rng) -> Op {
        let first = self.first_index();
        let last = self.last_index();
        let term = self.hard_state.term.max(1);
        let count = rng.range(1, 16);
        if last >= first && rng.percent(8) {
            let index = rng.range(first, last);
            let term = self.term_at(index).unwrap_or(term);
            return Op::Snapshot { index, term };
        }
        if rng.percent(2) {
            // A snapshot past the end of the log drops all of it.
            let index = last + rng.range(1, 20);
            return Op::Snapshot { index, term };
        }
        if last >= first && rng.percent(15) {
            let from = rng.range(first.max(last.saturating_sub(8)), last);
            return Op::Write {
                first: from,
                count,
                term: term + 1,
            };
        }
        Op::Write {
            first: last + 1,
            count,
            term,
        }
    }
}

#[test]
fn ops_print_and_parse_back() {
    let ops = [
        Op::Write {
            first: 7,
            count: 3,
            term: 2,
        },
        Op::Snapshot { index: 5, term: 9 },
    ];
    for op in ops {
        assert_eq!(Op::parse(&op.to_string()), Some(op));
    }
    assert_eq!(Op::parse("write 1 2"), None);
    assert_eq!(Op::parse("erase 1 2 3"), None);
    assert_eq!(Op::parse(""), None);
}
