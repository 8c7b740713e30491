//! Where a transport puts the messages it receives.

use raft_core::{InboxSender, Message};
use tokio::sync::mpsc;

/// Receives the messages that arrive from peers, already checked to come
/// from the node they name.
///
/// A node uses its [`InboxSender`]; tests and tools may use a tokio channel.
/// `deliver` is called from the transport's reader tasks and must not block.
pub trait MessageSink: Send + Sync + 'static {
    /// Takes `message`; returns `false` when it was dropped (full or closed).
    fn deliver(&self, message: Message) -> bool;
}

impl MessageSink for InboxSender {
    fn deliver(&self, message: Message) -> bool {
        InboxSender::deliver(self, message)
    }
}

impl MessageSink for mpsc::Sender<Message> {
    fn deliver(&self, message: Message) -> bool {
        self.try_send(message).is_ok()
    }
}

impl MessageSink for mpsc::UnboundedSender<Message> {
    fn deliver(&self, message: Message) -> bool {
        self.send(message).is_ok()
    }
}

impl<S: MessageSink> MessageSink for std::sync::Arc<S> {
    fn deliver(&self, message: Message) -> bool {
        S::deliver(self, message)
    }
}
