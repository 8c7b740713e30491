//! How to open a storage.

/// Options for [`crate::RocksStorage::open`].
///
/// ```
/// let options = raft_storage::OpenOptions::new().create_if_missing(true);
/// assert!(options.creates_if_missing());
/// ```
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Whether a missing (or empty) data directory is initialised as a new,
    /// empty log. Off by default: a node that restarts on an empty log has
    /// forgotten its term and vote and could vote twice in one term, so a
    /// missing directory should be an error unless the caller knows this is
    /// the node's first start.
    create_if_missing: bool,
}

impl OpenOptions {
    /// Options that open only an existing storage.
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Sets whether a missing or empty data directory is created as a new,
    /// empty storage. Its parent directory must exist either way.
    pub fn create_if_missing(mut self, create_if_missing: bool) -> OpenOptions {
        self.create_if_missing = create_if_missing;
        self
    }

    /// Whether a missing or empty data directory is created.
    pub fn creates_if_missing(&self) -> bool {
        self.create_if_missing
    }
}
