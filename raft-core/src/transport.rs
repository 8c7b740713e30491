//! The transport trait and the inbox through which a transport delivers.

use tokio::sync::mpsc;

use crate::message::Message;

/// Moves messages from this node to its peers.
///
/// Raft tolerates lost, delayed, duplicated and reordered messages, so a
/// transport may drop a message it cannot deliver. It must never block the
/// caller: `send` is called from the consensus loop, and a slow or dead peer
/// must not stall it. A real transport queues per peer with a bound and drops
/// heartbeats ([`Message::is_heartbeat`]) first when a queue is full.
///
/// Incoming messages go to the node's [`Inbox`] through an [`InboxSender`].
pub trait Transport: Send + Sync + 'static {
    /// Hands `message` to the network for delivery to `message.to`, and
    /// returns at once.
    fn send(&self, message: Message);
}

/// Creates the channel through which a transport hands incoming messages to a
/// node. `capacity` bounds how many messages may wait; beyond it, new ones are
/// dropped (Raft recovers from lost messages).
pub fn inbox(capacity: usize) -> (InboxSender, Inbox) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (InboxSender { sender }, Inbox { receiver })
}

/// The transport's end of a node's inbox. Cheap to clone.
#[derive(Clone, Debug)]
pub struct InboxSender {
    sender: mpsc::Sender<Message>,
}

impl InboxSender {
    /// Delivers `message` to the node. Returns `false` when the message was
    /// dropped because the inbox is full or the node has stopped.
    pub fn deliver(&self, message: Message) -> bool {
        self.sender.try_send(message).is_ok()
    }

    /// Whether the node behind this inbox has stopped.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// The node's end of its inbox, handed to [`crate::RaftNode::start`]. Code
/// that drives a [`crate::Raft`] core itself, or tests a transport, reads it
/// with [`Inbox::recv`].
#[derive(Debug)]
pub struct Inbox {
    pub(crate) receiver: mpsc::Receiver<Message>,
}

impl Inbox {
    /// Waits for the next message; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        self.receiver.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.receiver.try_recv().ok()
    }
}
