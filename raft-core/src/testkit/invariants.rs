//! Safety invariants of Raft, checked after every turn of every node.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::node::Observer;
use crate::raft::{Raft, Ready};
use crate::types::{Entry, LogIndex, NodeId, Role, Term};

/// Checks, across all nodes of a simulated cluster (Raft figure 3):
///
/// - **election safety**: at most one leader per term;
/// - **log matching**: two entries with the same index and term carry the
///   same payload and follow entries of the same term;
/// - **committed entries are final**: an entry a node counts as committed
///   never differs from what any node committed at that index, and no node
///   overwrites it;
/// - **leader completeness**: a new leader holds every committed entry;
/// - **state machine safety**: every node applies the committed entries in
///   index order, each once, and all nodes apply the same entry per index;
/// - terms never go down during a node's life.
///
/// Violations are recorded, not panicked on (a panic would only end one
/// node's task); [`InvariantChecker::violations`] returns them.
#[derive(Debug, Default)]
pub struct InvariantChecker {
    state: Mutex<CheckState>,
}

#[derive(Debug, Default)]
struct CheckState {
    leaders: BTreeMap<Term, NodeId>,
    /// Committed entries seen anywhere, by index: (term, payload hash).
    committed: BTreeMap<LogIndex, (Term, u64)>,
    /// Every (index, term) ever written: (payload hash, previous term).
    written: BTreeMap<(LogIndex, Term), (u64, Option<Term>)>,
    /// Highest term seen per node.
    terms: BTreeMap<NodeId, Term>,
    /// Last index each node handed out for applying; `None` right after a
    /// restart, until the node shows where it starts.
    applied: BTreeMap<NodeId, Option<LogIndex>>,
    /// Highest commit index checked per node in its current life.
    commit_checked: BTreeMap<NodeId, LogIndex>,
    /// The term each node was last checked as a leader in.
    leader_checked: BTreeMap<NodeId, Term>,
    violations: Vec<String>,
}

fn payload_hash(entry: &Entry) -> u64 {
    let mut hasher = DefaultHasher::new();
    entry.payload.hash(&mut hasher);
    hasher.finish()
}

impl InvariantChecker {
    /// A checker with nothing seen yet.
    pub fn new() -> Arc<InvariantChecker> {
        Arc::new(InvariantChecker::default())
    }

    fn lock(&self) -> MutexGuard<'_, CheckState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Node `id` restarts: it may apply from its snapshot again.
    pub fn node_restarted(&self, id: NodeId) {
        let mut state = self.lock();
        state.applied.insert(id, None);
        // A term raised in memory but not yet written is lost in a crash;
        // nothing that depended on it left the node.
        state.terms.remove(&id);
        state.commit_checked.remove(&id);
        state.leader_checked.remove(&id);
    }

    /// Every violation found so far, oldest first.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The highest index known committed anywhere.
    pub fn committed_index(&self) -> LogIndex {
        self.lock()
            .committed
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    /// The committed entry at `index`, as (term, payload hash), if known.
    pub fn committed_at(&self, index: LogIndex) -> Option<(Term, u64)> {
        self.lock().committed.get(&index).copied()
    }
}

impl CheckState {
    fn violation(&mut self, text: String) {
        if self.violations.len() < 100 {
            self.violations.push(text);
        }
    }

    fn check_term(&mut self, id: NodeId, term: Term) {
        let previous = self.terms.insert(id, term).unwrap_or(0);
        if term < previous {
            self.violation(format!(
                "node {id}: term went down from {previous} to {term}"
            ));
        }
    }

    fn check_leader(&mut self, raft: &Raft) {
        let (id, term) = (raft.id(), raft.term());
        if raft.role() != Role::Leader {
            return;
        }
        if let Some(other) = self.leaders.insert(term, id) {
            if other != id {
                self.violation(format!("term {term}: two leaders, {other} and {id}"));
            }
        }
        // Leader completeness, once per term: every entry committed so far
        // is in the new leader's log.
        if self.leader_checked.insert(id, term) != Some(term) {
            let snapshot_index = raft.snapshot_meta().last_index;
            let missing: Vec<LogIndex> = self
                .committed
                .range(snapshot_index + 1..)
                .filter(|(index, (term, _))| raft.entry_term(**index) != Some(*term))
                .map(|(index, _)| *index)
                .collect();
            if let Some(index) = missing.first() {
                self.violation(format!(
                    "node {id} leads term {term} without committed entry {index}"
                ));
            }
        }
    }

    fn check_written(&mut self, raft: &Raft, entries: &[Entry]) {
        let id = raft.id();
        for entry in entries {
            let hash = payload_hash(entry);
            let prev_term = raft.entry_term(entry.index - 1);
            // A lagging node may write a stale leader's entry where the
            // cluster already committed another; only its own commit binds.
            let committed = self.committed.get(&entry.index).copied();
            if let Some((term, committed_hash)) = committed.filter(|_| entry.index <= raft.commit())
            {
                if term != entry.term || committed_hash != hash {
                    self.violation(format!(
                        "node {id} overwrites committed entry {} (term {term}) with term {}",
                        entry.index, entry.term
                    ));
                }
            }
            match self.written.get(&(entry.index, entry.term)) {
                Some(&(seen_hash, seen_prev)) => {
                    let prev_differs =
                        prev_term.is_some() && seen_prev.is_some() && prev_term != seen_prev;
                    if seen_hash != hash || prev_differs {
                        self.violation(format!(
                            "log matching broken at index {} term {} on node {id}",
                            entry.index, entry.term
                        ));
                    }
                }
                None => {
                    self.written
                        .insert((entry.index, entry.term), (hash, prev_term));
                }
            }
        }
    }

    fn check_commit(&mut self, raft: &Raft) {
        let id = raft.id();
        let commit = raft.commit();
        let snapshot_index = raft.snapshot_meta().last_index;
        let checked = self.commit_checked.get(&id).copied().unwrap_or(0);
        let low = checked.max(snapshot_index) + 1;
        for index in low..=commit {
            let Some(term) = raft.entry_term(index) else {
                continue;
            };
            let entry = &raft.entries()[(index - snapshot_index - 1) as usize];
            let hash = payload_hash(entry);
            match self.committed.get(&index) {
                Some(&(seen_term, seen_hash)) => {
                    if seen_term != term || seen_hash != hash {
                        self.violation(format!(
                            "node {id} commits index {index} term {term}, \
                             another node committed term {seen_term} there"
                        ));
                    }
                }
                None => {
                    self.committed.insert(index, (term, hash));
                }
            }
        }
        self.commit_checked.insert(id, commit.max(checked));
    }

    fn check_applied(&mut self, raft: &Raft, ready: &Ready) {
        let id = raft.id();
        if let Some(snapshot) = &ready.snapshot {
            self.applied.insert(id, Some(snapshot.meta.last_index));
        }
        for entry in &ready.committed {
            let expected = match self.applied.get(&id).copied().flatten() {
                Some(last) => last + 1,
                None => raft.snapshot_meta().last_index + 1, // first apply of this life
            };
            if entry.index != expected {
                self.violation(format!(
                    "node {id} applies index {} where {expected} was next",
                    entry.index
                ));
            }
            let hash = payload_hash(entry);
            match self.committed.get(&entry.index) {
                Some(&(term, committed_hash)) if term == entry.term && committed_hash == hash => {}
                Some(&(term, _)) => self.violation(format!(
                    "node {id} applies index {} term {}, but term {term} was committed there",
                    entry.index, entry.term
                )),
                None => self.violation(format!(
                    "node {id} applies index {} that no node counts as committed",
                    entry.index
                )),
            }
            self.applied.insert(id, Some(entry.index));
        }
    }
}

impl Observer for InvariantChecker {
    fn observe(&self, raft: &Raft, ready: &Ready) {
        let mut state = self.lock();
        state.check_term(raft.id(), raft.term());
        state.check_leader(raft);
        state.check_written(raft, &ready.entries);
        state.check_commit(raft);
        state.check_applied(raft, ready);
    }
}
