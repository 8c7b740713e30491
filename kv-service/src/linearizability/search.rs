//! The Wing–Gong search, with Lowe's improvements and Porcupine's
//! memoization, over the operations of one key.
//!
//! The history becomes a doubly linked list of call and return events in
//! time order. The search walks the list from its head. At a call it tries to
//! place that operation next in the linear order: the model must accept the
//! operation's output in the current state, and the pair (set of placed
//! operations, resulting state) must be new (the memo). If both hold, the
//! operation's call and return leave the list and the walk restarts at the
//! head. At a return event, the operation that returns there should already
//! have been placed and was not, so the search backtracks: it puts the last
//! placed operation back and tries the next call after it.
//!
//! Operations of unknown outcome (`info`) have no return event: they may be
//! placed at any point after their call, and may stay unplaced for ever,
//! which stands for "never took effect". The search therefore succeeds as
//! soon as every completed operation is placed.

use std::collections::HashSet;
use std::time::Instant;

use super::model::{KeyOp, StateId, States};

/// Marks "no entry" in the linked list.
const NONE: usize = usize::MAX;

/// The list's sentinel head.
const HEAD: usize = 0;

/// How long a search may run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Upper bound on search steps (entries visited).
    pub(crate) steps_max: u64,
    /// Wall-clock instant after which the search gives up.
    pub(crate) deadline: Option<Instant>,
}

/// What a search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Some linear order explains every completed operation.
    Linearizable,
    /// No order does. `longest` is the longest order found that explains a
    /// prefix (indexes into the key's operations), `value_after` the value
    /// after it.
    Violation {
        longest: Vec<usize>,
        value_after: String,
    },
    /// The limits ran out first.
    Exhausted,
}

/// One event of the linked list.
#[derive(Clone, Copy, Debug)]
struct Event {
    /// Index of the operation in the key's operations.
    op: usize,
    /// Whether this is the operation's call (else its return).
    is_call: bool,
    /// For a call: the position of its return event, or `NONE`.
    return_position: usize,
}

/// A set of operation indexes, hashable for the memo.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Bitset {
        Bitset(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, index: usize) {
        self.0[index / 64] |= 1 << (index % 64);
    }

    fn clear(&mut self, index: usize) {
        self.0[index / 64] &= !(1 << (index % 64));
    }
}

/// The doubly linked list of events; position 0 is the head sentinel.
struct EventList {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl EventList {
    /// Builds the list of `ops` in time order. At equal times calls come
    /// before returns, so operations that touch at one instant count as
    /// concurrent (the lenient reading of a tie).
    fn new(ops: &[KeyOp]) -> EventList {
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (index, op) in ops.iter().enumerate() {
            order.push((op.call, false, index));
            if let Some(return_at) = op.return_at {
                order.push((return_at, true, index));
            }
        }
        order.sort_unstable();

        let sentinel = Event {
            op: NONE,
            is_call: false,
            return_position: NONE,
        };
        let mut events = vec![sentinel];
        let mut call_position = vec![NONE; ops.len()];
        for (_, is_return, op) in order {
            let position = events.len();
            if is_return {
                let call = call_position[op];
                debug_assert_ne!(call, NONE, "a return sorts after its call");
                events[call].return_position = position;
            } else {
                call_position[op] = position;
            }
            events.push(Event {
                op,
                is_call: !is_return,
                return_position: NONE,
            });
        }

        let len = events.len();
        let next = (0..len)
            .map(|i| if i + 1 < len { i + 1 } else { NONE })
            .collect();
        let prev = (0..len).map(|i| i.wrapping_sub(1)).collect();
        EventList { events, next, prev }
    }

    fn unlink(&mut self, position: usize) {
        let (prev, next) = (self.prev[position], self.next[position]);
        self.next[prev] = next;
        if next != NONE {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, position: usize) {
        let (prev, next) = (self.prev[position], self.next[position]);
        self.next[prev] = position;
        if next != NONE {
            self.prev[next] = position;
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let return_position = self.events[call].return_position;
        if return_position != NONE {
            self.unlink(return_position);
        }
    }

    /// Undoes [`EventList::lift`]; lifts must be undone in reverse order.
    fn unlift(&mut self, call: usize) {
        let return_position = self.events[call].return_position;
        if return_position != NONE {
            self.relink(return_position);
        }
        self.relink(call);
    }
}

/// Searches for a linear order of `ops` (all on one key, starting absent).
/// Returns the outcome and the number of steps taken.
pub(crate) fn search(ops: &[KeyOp], limits: Limits) -> (Outcome, u64) {
    let required_total = ops.iter().filter(|op| op.is_required()).count();
    let mut list = EventList::new(ops);
    let mut states = States::new();
    let mut memo: HashSet<(Bitset, StateId)> = HashSet::new();
    let mut placed = Bitset::new(ops.len());
    let mut state = States::EMPTY;
    // Each frame: the call position placed, and the state before it.
    let mut stack: Vec<(usize, StateId)> = Vec::new();
    let mut required_placed = 0;
    let mut longest: Vec<usize> = Vec::new();
    let mut value_after_longest = String::new();
    let mut steps: u64 = 0;

    let mut position = list.next[HEAD];
    loop {
        if required_placed == required_total {
            return (Outcome::Linearizable, steps);
        }
        steps += 1;
        if steps > limits.steps_max {
            return (Outcome::Exhausted, steps);
        }
        if steps % 4096 == 0 && limits.deadline.is_some_and(|d| Instant::now() >= d) {
            return (Outcome::Exhausted, steps);
        }

        // At a call: try to place the operation next.
        if position != NONE && list.events[position].is_call {
            let op = list.events[position].op;
            if let Some(next_state) = states.step(state, &ops[op]) {
                placed.set(op);
                if memo.insert((placed.clone(), next_state)) {
                    stack.push((position, state));
                    state = next_state;
                    list.lift(position);
                    required_placed += usize::from(ops[op].is_required());
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(p, _)| list.events[*p].op).collect();
                        value_after_longest = states.text(state).to_owned();
                    }
                    position = list.next[HEAD];
                    continue;
                }
                placed.clear(op);
            }
            position = list.next[position];
            continue;
        }

        // At a return (or, defensively, the end): the operation returning
        // here was not placed, so undo the last placement.
        let Some((call, previous_state)) = stack.pop() else {
            return (
                Outcome::Violation {
                    longest,
                    value_after: value_after_longest,
                },
                steps,
            );
        };
        let op = list.events[call].op;
        placed.clear(op);
        state = previous_state;
        list.unlift(call);
        required_placed -= usize::from(ops[op].is_required());
        position = list.next[call];
    }
}
