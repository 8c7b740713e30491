//! The driver: runs a [`Raft`] core on tokio over a storage, a state
//! machine and a transport.
//!
//! One task owns the core and the storage. Each turn it waits for an input
//! (a request, a message, a tick, news from the apply task), takes every
//! other input already waiting, then hands the resulting [`Ready`] out:
//! messages that may leave at once go first, then one storage write for all
//! entries and the hard state, then the messages that needed it durable.
//! Proposals that arrive while a write is in flight wait in the channel and
//! become the next turn's batch: that is the group commit.
//!
//! A second task owns the state machine and applies committed entries, so
//! applying overlaps the next write.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, info_span, Instrument};

use crate::config::Config;
use crate::error::{Error, StateMachineError};
use crate::message::Message;
use crate::raft::{Raft, Ready};
use crate::state_machine::StateMachine;
use crate::storage::{LogStorage, LogWrite};
use crate::transport::{Inbox, Transport};
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, Snapshot, SnapshotMeta, Status, Term};

/// Inputs taken per channel per turn, at most; bounds a turn's latency.
const TURN_INPUTS_MAX: usize = 4096;
/// Committed entries handed to the apply task per batch, at most.
const APPLY_BATCH_MAX: usize = 4096;

/// Watches a node from the inside, for tests: called after each [`Ready`]
/// is taken, before any of it is persisted or sent.
pub trait Observer: Send + Sync + 'static {
    /// `raft` is the core after the turn; `ready` what it handed out.
    fn observe(&self, raft: &Raft, ready: &Ready);
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

enum Request<R> {
    Propose(Bytes, Reply<R>),
    Read(Reply<LogIndex>),
    Transfer(NodeId, Reply<()>),
    Snapshot(Reply<SnapshotMeta>),
    Shutdown,
}

/// A proposal waiting for its entry to be applied.
struct ProposalWaiter<R> {
    index: LogIndex,
    term: Term,
    reply: Reply<R>,
}

enum ApplyCommand<R> {
    Entries(Vec<Entry>, Vec<ProposalWaiter<R>>),
    Restore(Snapshot),
    Snapshot(Option<Reply<SnapshotMeta>>),
}

enum ApplyEvent {
    Applied(LogIndex),
    SnapshotTaken(Snapshot, Option<Reply<SnapshotMeta>>),
    Failed(StateMachineError),
}

/// A handle to a running Raft node. Cheap to clone; all clones drive the
/// same node.
pub struct RaftNode<R> {
    shared: Arc<Shared<R>>,
}

impl<R> Clone for RaftNode<R> {
    fn clone(&self) -> Self {
        RaftNode {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<R> {
    id: NodeId,
    requests: mpsc::Sender<Request<R>>,
    status: watch::Receiver<Status>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    fatal: Arc<Mutex<Option<String>>>,
}

impl<R: Send + 'static> RaftNode<R> {
    /// Restores the node from `storage` and `state_machine` and starts it.
    ///
    /// Reads the stored state and snapshot, restores the state machine from
    /// the snapshot, and spawns the node's tasks on the current tokio
    /// runtime. Fails on an invalid configuration or a storage or state
    /// machine error during the restore.
    pub async fn start<S, T, M>(
        config: Config,
        storage: S,
        transport: T,
        state_machine: M,
        inbox: Inbox,
    ) -> Result<RaftNode<R>, Error>
    where
        S: LogStorage,
        T: Transport,
        M: StateMachine<Response = R>,
    {
        Self::start_observed(config, storage, transport, state_machine, inbox, None).await
    }

    /// Like [`RaftNode::start`], with an [`Observer`] that sees every turn.
    pub async fn start_observed<S, T, M>(
        config: Config,
        mut storage: S,
        transport: T,
        mut state_machine: M,
        inbox: Inbox,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<RaftNode<R>, Error>
    where
        S: LogStorage,
        T: Transport,
        M: StateMachine<Response = R>,
    {
        config.validate()?;
        let id = config.id;
        let span = info_span!("raft", node = id);
        let stored = storage.load().instrument(span.clone()).await?;
        let snapshot = match stored.snapshot {
            Some(_) => storage.snapshot().instrument(span.clone()).await?,
            None => None,
        };
        if let Some(snapshot) = &snapshot {
            state_machine
                .restore(snapshot.meta, snapshot.data.clone())
                .instrument(span.clone())
                .await?;
        }
        let raft = span.in_scope(|| Raft::new(config.clone(), stored, snapshot))?;
        let applied = raft.snapshot_meta();

        let (request_sender, request_receiver) = mpsc::channel(config.pending_requests_max);
        let (status_sender, status_receiver) = watch::channel(raft.status(applied.last_index));
        let (apply_sender, apply_receiver) = mpsc::unbounded_channel();
        let (event_sender, event_receiver) = mpsc::unbounded_channel();
        let fatal = Arc::new(Mutex::new(None));

        let apply_task = tokio::spawn(
            apply_loop(state_machine, applied, apply_receiver, event_sender)
                .instrument(span.clone()),
        );
        let driver = Driver {
            applied: applied.last_index,
            raft,
            config,
            storage,
            transport,
            inbox: inbox.receiver,
            requests: request_receiver,
            apply: apply_sender,
            events: event_receiver,
            status: status_sender,
            observer,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            reads_waiting_apply: BTreeMap::new(),
            next_read_id: 0,
            transfer: None,
            snapshot_in_progress: false,
            snapshot_waiters: Vec::new(),
            fatal: Arc::clone(&fatal),
        };
        let driver_task = tokio::spawn(driver.run().instrument(span));
        Ok(RaftNode {
            shared: Arc::new(Shared {
                id,
                requests: request_sender,
                status: status_receiver,
                tasks: Mutex::new(vec![driver_task, apply_task]),
                fatal,
            }),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// Proposes `command`. Resolves, with the state machine's response, once
    /// the command is committed and applied on this node. Fails at once with
    /// [`Error::NotLeader`] on a follower.
    ///
    /// An error other than the ones [`Error::is_definitely_not_applied`]
    /// names leaves the outcome unknown: the command may still be applied.
    pub async fn propose(&self, command: Bytes) -> Result<R, Error> {
        self.call(|reply| Request::Propose(command, reply)).await
    }

    /// A linearizable read barrier (ReadIndex, Raft thesis §6.4). Resolves
    /// with an index once a quorum has confirmed, after this call, that this
    /// node leads, and the state machine has applied at least that index:
    /// reading the state machine then observes every write that completed
    /// before this call.
    pub async fn read_index(&self) -> Result<LogIndex, Error> {
        self.call(Request::Read).await
    }

    /// Hands leadership to `target`, which should be up to date. Resolves
    /// once this node knows `target` as leader.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), Error> {
        self.call(|reply| Request::Transfer(target, reply)).await
    }

    /// Takes a snapshot of the state machine now and compacts the log.
    pub async fn snapshot(&self) -> Result<SnapshotMeta, Error> {
        self.call(Request::Snapshot).await
    }

    /// The node's latest status.
    pub fn status(&self) -> Status {
        self.shared.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn status_watch(&self) -> watch::Receiver<Status> {
        self.shared.status.clone()
    }

    /// Why the node stopped by itself (a storage or state machine failure),
    /// if it did.
    pub fn fatal_error(&self) -> Option<String> {
        lock(&self.shared.fatal).clone()
    }

    /// Stops the node cleanly and waits for its tasks to end. Requests still
    /// waiting fail with [`Error::Stopped`].
    pub async fn shutdown(&self) {
        let _ = self.shared.requests.send(Request::Shutdown).await;
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.shared.tasks));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Stops the node abruptly, as a crash would: its tasks are cancelled
    /// wherever they are, and a storage write in progress may or may not
    /// land. For tests.
    pub fn abort(&self) {
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request<R>) -> Result<T, Error> {
        let (reply, receiver) = oneshot::channel();
        self.shared
            .requests
            .send(make(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        receiver.await.map_err(|_| Error::Stopped)?
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The state of the driver task.
struct Driver<S, T, R> {
    raft: Raft,
    config: Config,
    storage: S,
    transport: T,
    inbox: mpsc::Receiver<Message>,
    requests: mpsc::Receiver<Request<R>>,
    apply: mpsc::UnboundedSender<ApplyCommand<R>>,
    events: mpsc::UnboundedReceiver<ApplyEvent>,
    status: watch::Sender<Status>,
    observer: Option<Arc<dyn Observer>>,
    /// Highest index the state machine has applied.
    applied: LogIndex,
    /// Proposals by index, until their entry is handed to the apply task.
    proposals: BTreeMap<LogIndex, ProposalWaiter<R>>,
    /// Reads waiting for a quorum, by read id.
    reads: BTreeMap<u64, Reply<LogIndex>>,
    /// Confirmed reads waiting for the state machine, by read index.
    reads_waiting_apply: BTreeMap<LogIndex, Vec<Reply<LogIndex>>>,
    next_read_id: u64,
    /// A leadership transfer in progress: target, ticks left, reply.
    transfer: Option<(NodeId, u32, Reply<()>)>,
    snapshot_in_progress: bool,
    snapshot_waiters: Vec<Reply<SnapshotMeta>>,
    fatal: Arc<Mutex<Option<String>>>,
}

impl<S, T, R> Driver<S, T, R>
where
    S: LogStorage,
    T: Transport,
    R: Send + 'static,
{
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        info!(term = self.raft.term(), "raft node started");
        loop {
            let mut proposals = Vec::new();
            let mut shutdown = false;
            // The clock comes first: under a steady stream of requests the
            // other branches are always ready, and a starved tick would
            // mean no heartbeats. Peers' answers come before new requests.
            tokio::select! {
                biased;
                _ = ticker.tick() => self.tick(),
                Some(event) = self.events.recv() => {
                    if let Err(error) = self.handle_event(event).await {
                        self.stop_fatally(error);
                        return;
                    }
                }
                Some(message) = self.inbox.recv() => self.raft.step(message),
                request = self.requests.recv() => match request {
                    Some(request) => shutdown |= self.handle_request(request, &mut proposals),
                    None => shutdown = true,
                },
            }
            // Take everything else that is already waiting: one turn, one
            // batch, one storage write.
            for _ in 0..TURN_INPUTS_MAX {
                match self.requests.try_recv() {
                    Ok(request) => shutdown |= self.handle_request(request, &mut proposals),
                    Err(_) => break,
                }
            }
            for _ in 0..TURN_INPUTS_MAX {
                match self.inbox.try_recv() {
                    Ok(message) => self.raft.step(message),
                    Err(_) => break,
                }
            }
            while let Ok(event) = self.events.try_recv() {
                if let Err(error) = self.handle_event(event).await {
                    self.stop_fatally(error);
                    return;
                }
            }
            if shutdown {
                info!("raft node shutting down");
                self.fail_everything(|| Error::Stopped);
                return;
            }
            self.propose(proposals);
            if let Err(error) = self.process_ready().await {
                self.stop_fatally(error);
                return;
            }
            self.maybe_start_snapshot(None);
            self.check_transfer();
            let status = self.raft.status(self.applied);
            self.status.send_if_modified(|current| {
                let changed = *current != status;
                *current = status;
                changed
            });
        }
    }

    fn tick(&mut self) {
        self.raft.tick();
        if let Some((target, ticks_left, _)) = &mut self.transfer {
            if *ticks_left == 0 {
                let target = *target;
                let (_, _, reply) = self.transfer.take().expect("checked");
                let _ = reply.send(Err(Error::TransferTimedOut(target)));
            } else {
                *ticks_left -= 1;
            }
        }
    }

    /// Returns whether the request asks to shut down.
    fn handle_request(
        &mut self,
        request: Request<R>,
        proposals: &mut Vec<(Bytes, Reply<R>)>,
    ) -> bool {
        match request {
            Request::Propose(command, reply) => proposals.push((command, reply)),
            Request::Read(reply) => {
                let id = self.next_read_id;
                self.next_read_id += 1;
                match self.raft.read_index(id) {
                    Ok(()) => {
                        self.reads.insert(id, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            Request::Transfer(target, reply) => match self.raft.transfer_leadership(target) {
                Ok(()) if target == self.raft.id() => {
                    let _ = reply.send(Ok(()));
                }
                Ok(()) => {
                    if let Some((_, _, previous)) = self.transfer.take() {
                        let _ = previous.send(Err(Error::TransferInProgress));
                    }
                    self.transfer = Some((target, self.config.election_ticks_max, reply));
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            Request::Snapshot(reply) => self.maybe_start_snapshot(Some(reply)),
            Request::Shutdown => return true,
        }
        false
    }

    fn propose(&mut self, proposals: Vec<(Bytes, Reply<R>)>) {
        if proposals.is_empty() {
            return;
        }
        if self.proposals.len() + proposals.len() > self.config.pending_requests_max {
            for (_, reply) in proposals {
                let _ = reply.send(Err(Error::Overloaded));
            }
            return;
        }
        let (commands, replies): (Vec<Bytes>, Vec<Reply<R>>) = proposals.into_iter().unzip();
        match self.raft.propose(commands) {
            Ok((first, term)) => {
                for (offset, reply) in replies.into_iter().enumerate() {
                    let index = first + offset as u64;
                    self.proposals
                        .insert(index, ProposalWaiter { index, term, reply });
                }
            }
            Err(error) => {
                let hint = match &error {
                    Error::NotLeader { leader_hint } => *leader_hint,
                    _ => None,
                };
                for reply in replies {
                    let error = match &error {
                        Error::NotLeader { .. } => Error::NotLeader { leader_hint: hint },
                        _ => Error::TransferInProgress,
                    };
                    let _ = reply.send(Err(error));
                }
            }
        }
    }

    async fn process_ready(&mut self) -> Result<(), Error> {
        while self.raft.has_ready() {
            let mut ready = self.raft.ready(APPLY_BATCH_MAX);
            if let Some(observer) = &self.observer {
                observer.observe(&self.raft, &ready);
            }
            for message in ready.messages.drain(..) {
                self.transport.send(message);
            }
            if let Some(snapshot) = ready.snapshot.take() {
                self.storage.install_snapshot(&snapshot).await?;
                self.install_snapshot(snapshot);
            }
            let last_entry = ready.entries.last().map(|entry| (entry.index, entry.term));
            if ready.hard_state.is_some() || !ready.entries.is_empty() {
                let write = LogWrite {
                    hard_state: ready.hard_state,
                    entries: std::mem::take(&mut ready.entries),
                };
                self.storage.write(write).await?;
            }
            self.raft.advance(last_entry);
            for message in ready.persisted_messages.drain(..) {
                self.transport.send(message);
            }
            self.hand_over_committed(std::mem::take(&mut ready.committed));
            for read in ready.reads.drain(..) {
                if let Some(reply) = self.reads.remove(&read.id) {
                    if read.index <= self.applied {
                        let _ = reply.send(Ok(read.index));
                    } else {
                        self.reads_waiting_apply
                            .entry(read.index)
                            .or_default()
                            .push(reply);
                    }
                }
            }
            for id in ready.failed_reads.drain(..) {
                if let Some(reply) = self.reads.remove(&id) {
                    let leader_hint = self.raft.leader();
                    let _ = reply.send(Err(Error::LeadershipLost { leader_hint }));
                }
            }
        }
        Ok(())
    }

    /// A snapshot from the leader is durable: restore the state machine.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let last_index = snapshot.meta.last_index;
        // Proposals the snapshot covers were applied elsewhere or replaced;
        // which of the two, this node cannot tell.
        let covered: Vec<LogIndex> = self
            .proposals
            .range(..=last_index)
            .map(|(i, _)| *i)
            .collect();
        for index in covered {
            let waiter = self.proposals.remove(&index).expect("listed");
            let leader_hint = self.raft.leader();
            let _ = waiter
                .reply
                .send(Err(Error::LeadershipLost { leader_hint }));
        }
        let _ = self.apply.send(ApplyCommand::Restore(snapshot));
    }

    fn hand_over_committed(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last() else {
            return;
        };
        let last_index = last.index;
        let mut waiters = Vec::new();
        while let Some(entry) = self.proposals.first_entry() {
            if *entry.key() > last_index {
                break;
            }
            waiters.push(entry.remove());
        }
        let _ = self.apply.send(ApplyCommand::Entries(entries, waiters));
    }

    async fn handle_event(&mut self, event: ApplyEvent) -> Result<(), Error> {
        match event {
            ApplyEvent::Applied(index) => {
                self.applied = self.applied.max(index);
                while let Some(entry) = self.reads_waiting_apply.first_entry() {
                    if *entry.key() > self.applied {
                        break;
                    }
                    for reply in entry.remove() {
                        let _ = reply.send(Ok(self.applied));
                    }
                }
            }
            ApplyEvent::SnapshotTaken(snapshot, reply) => {
                self.snapshot_in_progress = false;
                let meta = snapshot.meta;
                if meta.last_index > self.raft.snapshot_meta().last_index {
                    self.storage.install_snapshot(&snapshot).await?;
                    self.raft.snapshot_saved(snapshot);
                    debug!(index = meta.last_index, "snapshot saved");
                }
                let current = self.raft.snapshot_meta();
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(current));
                }
                for reply in self.snapshot_waiters.drain(..) {
                    let _ = reply.send(Ok(current));
                }
            }
            ApplyEvent::Failed(error) => return Err(error.into()),
        }
        Ok(())
    }

    /// Starts a snapshot when asked to, or when the log after the latest
    /// snapshot passed the configured threshold.
    fn maybe_start_snapshot(&mut self, reply: Option<Reply<SnapshotMeta>>) {
        if self.snapshot_in_progress {
            if let Some(reply) = reply {
                self.snapshot_waiters.push(reply);
            }
            return;
        }
        let since = self
            .applied
            .saturating_sub(self.raft.snapshot_meta().last_index);
        let due = self
            .config
            .snapshot_entries_threshold
            .is_some_and(|threshold| since >= threshold);
        if reply.is_some() || due {
            self.snapshot_in_progress = true;
            let _ = self.apply.send(ApplyCommand::Snapshot(reply));
        }
    }

    fn check_transfer(&mut self) {
        let done =
            matches!(&self.transfer, Some((target, _, _)) if self.raft.leader() == Some(*target));
        if done {
            let (_, _, reply) = self.transfer.take().expect("checked");
            let _ = reply.send(Ok(()));
        }
    }

    fn fail_everything(&mut self, error: impl Fn() -> Error) {
        for (_, waiter) in std::mem::take(&mut self.proposals) {
            let _ = waiter.reply.send(Err(error()));
        }
        for (_, reply) in std::mem::take(&mut self.reads) {
            let _ = reply.send(Err(error()));
        }
        for (_, replies) in std::mem::take(&mut self.reads_waiting_apply) {
            for reply in replies {
                let _ = reply.send(Err(error()));
            }
        }
        if let Some((_, _, reply)) = self.transfer.take() {
            let _ = reply.send(Err(error()));
        }
        for reply in self.snapshot_waiters.drain(..) {
            let _ = reply.send(Err(error()));
        }
    }

    fn stop_fatally(&mut self, error: Error) {
        error!(cause = %error, "raft node stopped: it cannot go on safely");
        *lock(&self.fatal) = Some(error.to_string());
        self.fail_everything(|| Error::Stopped);
    }
}

async fn apply_loop<M: StateMachine>(
    mut state_machine: M,
    mut applied: SnapshotMeta,
    mut commands: mpsc::UnboundedReceiver<ApplyCommand<M::Response>>,
    events: mpsc::UnboundedSender<ApplyEvent>,
) {
    while let Some(command) = commands.recv().await {
        match command {
            ApplyCommand::Entries(entries, waiters) => {
                let mut waiters = waiters.into_iter().peekable();
                for entry in entries {
                    if entry.index <= applied.last_index {
                        // Covered by a snapshot restored meanwhile: whether
                        // a proposal here made it, this node cannot tell.
                        while let Some(waiter) = waiters.next_if(|w| w.index <= entry.index) {
                            let error = Error::LeadershipLost { leader_hint: None };
                            let _ = waiter.reply.send(Err(error));
                        }
                        continue;
                    }
                    let response = match entry.payload {
                        EntryPayload::Command(command) => {
                            Some(state_machine.apply(entry.index, command).await)
                        }
                        EntryPayload::Blank => None,
                    };
                    applied = SnapshotMeta {
                        last_index: entry.index,
                        last_term: entry.term,
                    };
                    while let Some(waiter) = waiters.next_if(|w| w.index < entry.index) {
                        let _ = waiter.reply.send(Err(Error::ProposalDropped));
                    }
                    if let Some(waiter) = waiters.next_if(|w| w.index == entry.index) {
                        // Another leader's entry at our index means ours is
                        // gone for good (Raft §5.3).
                        let result = match response {
                            Some(response) if waiter.term == entry.term => Ok(response),
                            _ => Err(Error::ProposalDropped),
                        };
                        let _ = waiter.reply.send(result);
                    }
                }
                for waiter in waiters {
                    let _ = waiter.reply.send(Err(Error::ProposalDropped));
                }
                let _ = events.send(ApplyEvent::Applied(applied.last_index));
            }
            ApplyCommand::Restore(snapshot) => {
                if snapshot.meta.last_index <= applied.last_index {
                    continue;
                }
                if let Err(error) = state_machine.restore(snapshot.meta, snapshot.data).await {
                    let _ = events.send(ApplyEvent::Failed(error));
                    return;
                }
                applied = snapshot.meta;
                let _ = events.send(ApplyEvent::Applied(applied.last_index));
            }
            ApplyCommand::Snapshot(reply) => match state_machine.snapshot(applied).await {
                Ok(data) => {
                    let snapshot = Snapshot {
                        meta: applied,
                        data,
                    };
                    let _ = events.send(ApplyEvent::SnapshotTaken(snapshot, reply));
                }
                Err(error) => {
                    let _ = events.send(ApplyEvent::Failed(error));
                    return;
                }
            },
        }
    }
}
