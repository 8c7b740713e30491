//! How to open a storage.

/// Default of [`OpenOptions::memtable_bytes_max`]: 8 MiB.
pub const MEMTABLE_BYTES_MAX_DEFAULT: usize = 8 << 20;
/// Default of [`OpenOptions::wal_bytes_max`]: 32 MiB.
pub const WAL_BYTES_MAX_DEFAULT: u64 = 32 << 20;
/// The smallest memtable [`crate::RocksStorage::open`] accepts: 64 KiB.
pub const MEMTABLE_BYTES_MAX_MIN: usize = 64 << 10;
/// After installing a snapshot, the storage asks RocksDB to flush its
/// memtables (in the background) once at least this much was written since
/// it last asked: 256 KiB. The flush lets RocksDB delete the WAL files the
/// snapshot made dead. Below this, with a tiny snapshot threshold, a flush
/// per snapshot would write many tiny table files and outrun RocksDB's one
/// flush thread; a snapshot interval at least this large flushes at every
/// snapshot.
pub const FLUSH_AFTER_BYTES_MIN: u64 = 256 << 10;

/// Options for [`crate::RocksStorage::open`].
///
/// Besides whether to create the storage, they size the two RocksDB
/// buffers that, with the snapshot threshold, bound the data directory
/// (see the crate's README, "Snapshots and space"):
///
/// - [`OpenOptions::memtable_bytes_max`]: a column family's memtable is
///   written out to a table file once it holds this much;
/// - [`OpenOptions::wal_bytes_max`]: once the write-ahead log files hold
///   this much together, RocksDB writes out the memtables that keep the
///   oldest file alive, so that it can delete it.
///
/// ```
/// let options = raft_storage::OpenOptions::new()
///     .create_if_missing(true)
///     .memtable_bytes_max(1 << 20)
///     .wal_bytes_max(4 << 20);
/// assert!(options.creates_if_missing());
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Whether a missing (or empty) data directory is initialised as a new,
    /// empty log. Off by default: a node that restarts on an empty log has
    /// forgotten its term and vote and could vote twice in one term, so a
    /// missing directory should be an error unless the caller knows this is
    /// the node's first start.
    create_if_missing: bool,
    /// RocksDB's `write_buffer_size` for each column family.
    memtable_bytes_max: usize,
    /// RocksDB's `max_total_wal_size`.
    wal_bytes_max: u64,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            create_if_missing: false,
            memtable_bytes_max: MEMTABLE_BYTES_MAX_DEFAULT,
            wal_bytes_max: WAL_BYTES_MAX_DEFAULT,
        }
    }
}

impl OpenOptions {
    /// Options that open only an existing storage, with the default sizes.
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Sets whether a missing or empty data directory is created as a new,
    /// empty storage. Its parent directory must exist either way.
    pub fn create_if_missing(mut self, create_if_missing: bool) -> OpenOptions {
        self.create_if_missing = create_if_missing;
        self
    }

    /// Sets the size at which a memtable is written out to a table file
    /// ([`MEMTABLE_BYTES_MAX_DEFAULT`] by default, at least
    /// [`MEMTABLE_BYTES_MAX_MIN`]). Each of the two column families keeps
    /// up to two memtables in memory, so memory use is up to four times
    /// this. A memtable that holds more than the log between two
    /// snapshots lets most entries die before they ever reach a table
    /// file.
    pub fn memtable_bytes_max(mut self, memtable_bytes_max: usize) -> OpenOptions {
        self.memtable_bytes_max = memtable_bytes_max;
        self
    }

    /// Sets how large the write-ahead log may grow before RocksDB flushes
    /// the memtables that keep its oldest file alive
    /// ([`WAL_BYTES_MAX_DEFAULT`] by default; at least twice
    /// [`OpenOptions::memtable_bytes_max`], or the log would flush
    /// memtables long before they fill).
    pub fn wal_bytes_max(mut self, wal_bytes_max: u64) -> OpenOptions {
        self.wal_bytes_max = wal_bytes_max;
        self
    }

    /// Whether a missing or empty data directory is created.
    pub fn creates_if_missing(&self) -> bool {
        self.create_if_missing
    }

    pub(crate) fn memtable_bytes(&self) -> usize {
        self.memtable_bytes_max
    }

    pub(crate) fn wal_bytes(&self) -> u64 {
        self.wal_bytes_max
    }

    /// Why these options cannot work, if they cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.memtable_bytes_max < MEMTABLE_BYTES_MAX_MIN {
            return Err(format!(
                "memtable_bytes_max {} is below the minimum {MEMTABLE_BYTES_MAX_MIN}",
                self.memtable_bytes_max
            ));
        }
        let wal_bytes_min = 2 * self.memtable_bytes_max as u64;
        if self.wal_bytes_max < wal_bytes_min {
            return Err(format!(
                "wal_bytes_max {} is below twice memtable_bytes_max ({wal_bytes_min})",
                self.wal_bytes_max
            ));
        }
        Ok(())
    }
}
