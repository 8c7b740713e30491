//! The in-memory Raft log: entries after the latest snapshot, plus the
//! commit, persistence and apply positions over them.

use crate::types::{Entry, LogIndex, SnapshotMeta, Term};

/// The log as the core sees it. Storage holds the durable copy; this copy is
/// authoritative for what the node has accepted, durable or not.
#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The prefix that a snapshot replaced.
    pub(crate) snapshot: SnapshotMeta,
    /// Entries from `snapshot.last_index + 1`, contiguous.
    entries: Vec<Entry>,
    /// Highest index known committed.
    pub(crate) commit: LogIndex,
    /// Highest index handed to the application for applying.
    pub(crate) applied: LogIndex,
    /// Highest index known durable in storage and equal to this copy.
    pub(crate) persisted: LogIndex,
    /// Lowest index changed since the last hand-over to storage, if any.
    unwritten_from: Option<LogIndex>,
}

impl RaftLog {
    /// A log restored from storage: everything given is durable.
    pub(crate) fn restore(
        snapshot: SnapshotMeta,
        entries: Vec<Entry>,
        commit: LogIndex,
    ) -> RaftLog {
        let mut expected = snapshot.last_index + 1;
        for entry in &entries {
            assert_eq!(entry.index, expected, "stored entries are not contiguous");
            expected += 1;
        }
        let last = expected - 1;
        RaftLog {
            snapshot,
            entries,
            commit: commit.max(snapshot.last_index).min(last),
            applied: snapshot.last_index,
            persisted: last,
            unwritten_from: None,
        }
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        self.snapshot.last_index + 1
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.snapshot.last_index + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries
            .last()
            .map_or(self.snapshot.last_term, |entry| entry.term)
    }

    /// The term of the entry at `index`; `None` when it is compacted away
    /// (below the snapshot) or beyond the end.
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.last_index {
            return Some(self.snapshot.last_term);
        }
        if index < self.snapshot.last_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.first_index()) as usize].term)
    }

    /// Whether a candidate's log with this last entry is at least as
    /// up to date as ours (Raft §5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The entries in `low..=high`, cut to at most `bytes_max` payload bytes
    /// and `count_max` entries, but at least one entry when any exists.
    pub(crate) fn slice(
        &self,
        low: LogIndex,
        high: LogIndex,
        bytes_max: usize,
        count_max: usize,
    ) -> Vec<Entry> {
        assert!(low >= self.first_index(), "slice below the snapshot");
        let high = high.min(self.last_index());
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for index in low..=high {
            let entry = &self.entries[(index - self.first_index()) as usize];
            bytes += entry.payload_len();
            if !out.is_empty() && (bytes > bytes_max || out.len() >= count_max) {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// All entries in memory, for observers.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The first index of the term of the entry at `index`, looking back no
    /// further than the first entry in memory.
    pub(crate) fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let term = self.term(index);
        let mut first = index;
        while first > self.first_index() && self.term(first - 1) == term {
            first -= 1;
        }
        first
    }

    /// The last index whose entry has term `term`, searching down from
    /// `from`; `None` when no entry in memory has that term.
    pub(crate) fn last_index_of_term(&self, term: Term, from: LogIndex) -> Option<LogIndex> {
        let mut index = from.min(self.last_index());
        while index >= self.first_index() {
            let entry_term = self.term(index)?;
            if entry_term == term {
                return Some(index);
            }
            if entry_term < term {
                return None;
            }
            index -= 1;
        }
        None
    }

    /// Appends a new entry at the end (a leader's proposal).
    pub(crate) fn push(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "log append leaves a gap"
        );
        assert!(
            entry.term >= self.last_term(),
            "log append with an older term"
        );
        self.mark_unwritten(entry.index);
        self.entries.push(entry);
    }

    /// Merges entries from a leader that follow `prev_index`, whose term
    /// already matched. Entries we hold with the same term are kept; the
    /// first conflicting one and everything after it are replaced (Raft
    /// §5.3: truncate only on a real conflict). Returns the last index the
    /// leader's log is now known to match.
    pub(crate) fn merge(&mut self, prev_index: LogIndex, entries: &[Entry]) -> LogIndex {
        let mut position = 0;
        while position < entries.len() {
            let entry = &entries[position];
            debug_assert_eq!(entry.index, prev_index + 1 + position as u64);
            match self.term(entry.index) {
                Some(term) if term == entry.term => position += 1,
                Some(_) => {
                    assert!(
                        entry.index > self.commit,
                        "a leader tried to overwrite committed entry {} (commit {})",
                        entry.index,
                        self.commit
                    );
                    self.truncate_from(entry.index);
                    break;
                }
                None => break,
            }
        }
        for entry in &entries[position..] {
            self.push(entry.clone());
        }
        prev_index + entries.len() as u64
    }

    fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.snapshot.last_index,
            "truncation below the snapshot"
        );
        assert!(index > self.commit, "truncation of committed entries");
        self.entries.truncate((index - self.first_index()) as usize);
        self.persisted = self.persisted.min(index - 1);
        self.mark_unwritten(index);
    }

    fn mark_unwritten(&mut self, index: LogIndex) {
        self.unwritten_from = Some(self.unwritten_from.map_or(index, |from| from.min(index)));
    }

    /// Entries changed since the last call, to be written to storage; marks
    /// them as handed over.
    pub(crate) fn take_unwritten(&mut self) -> Vec<Entry> {
        match self.unwritten_from.take() {
            Some(from) if from <= self.last_index() => {
                let start = (from - self.first_index()) as usize;
                self.entries[start..].to_vec()
            }
            _ => Vec::new(),
        }
    }

    /// Whether entries wait to be written.
    pub(crate) fn has_unwritten(&self) -> bool {
        self.unwritten_from
            .is_some_and(|from| from <= self.last_index())
    }

    /// Storage reports entries up to `index` with `term` durable.
    pub(crate) fn persisted_to(&mut self, index: LogIndex, term: Term) {
        if self.term(index) == Some(term) && index > self.persisted {
            self.persisted = index;
        }
    }

    /// Raises the commit index; never lowers it.
    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        if index <= self.commit {
            return false;
        }
        assert!(
            index <= self.last_index(),
            "commit {} beyond the last index {}",
            index,
            self.last_index()
        );
        self.commit = index;
        true
    }

    /// Committed, durable entries not yet handed out for applying; marks
    /// them as handed out.
    pub(crate) fn take_committed(&mut self, count_max: usize) -> Vec<Entry> {
        let high = self.commit.min(self.persisted);
        if high <= self.applied {
            return Vec::new();
        }
        let low = self.applied + 1;
        let high = high.min(self.applied.saturating_add(count_max as u64));
        let start = (low - self.first_index()) as usize;
        let end = (high - self.first_index()) as usize + 1;
        let out = self.entries[start..end].to_vec();
        self.applied = high;
        out
    }

    /// Whether committed entries wait to be handed out.
    pub(crate) fn has_committed(&self) -> bool {
        self.commit.min(self.persisted) > self.applied
    }

    /// Drops the entries a local snapshot covers; the snapshot is durable.
    pub(crate) fn compact(&mut self, meta: SnapshotMeta) {
        if meta.last_index <= self.snapshot.last_index {
            return;
        }
        assert!(
            meta.last_index <= self.applied,
            "snapshot beyond the applied index"
        );
        assert_eq!(
            self.term(meta.last_index),
            Some(meta.last_term),
            "snapshot term mismatch"
        );
        let drop = (meta.last_index - self.snapshot.last_index) as usize;
        self.entries.drain(..drop);
        self.snapshot = meta;
    }

    /// Replaces the log with a snapshot received from the leader, keeping
    /// entries after it when they agree with it (Raft §7).
    pub(crate) fn install(&mut self, meta: SnapshotMeta) {
        assert!(meta.last_index > self.commit, "installing an old snapshot");
        if self.term(meta.last_index) == Some(meta.last_term) {
            let drop = (meta.last_index - self.snapshot.last_index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
            self.unwritten_from = None;
        }
        self.snapshot = meta;
        self.commit = meta.last_index;
        self.applied = meta.last_index;
        self.persisted = self.persisted.max(meta.last_index).min(self.last_index());
        if let Some(from) = self.unwritten_from {
            self.unwritten_from = Some(from.max(meta.last_index + 1));
        }
    }
}
