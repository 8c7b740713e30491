//! The synchronous core of the storage: every RocksDB call lives here, and
//! [`crate::RocksStorage`] runs these methods without stalling the runtime.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft_core::{Entry, HardState, LogIndex, LogWrite, Snapshot, SnapshotMeta, StoredState};
use rocksdb::{
    ColumnFamily, Direction, FlushOptions, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB,
};

use crate::error::Error;
use crate::layout::{
    decode_entry_key, decode_record, encode_raw_record, encode_record, entry_key, open_record,
    ENTRIES_CF, HARD_STATE_KEY, META_CF, SNAPSHOT_DATA_KEY, SNAPSHOT_META_KEY,
};
use crate::open::open_database;
use crate::options::{OpenOptions, FLUSH_AFTER_BYTES_MIN};

/// Bytes an entry's encoding needs beyond its payload, at most: the
/// msgpack array and enum headers and two u64 (term, index).
const ENTRY_OVERHEAD_BYTES: usize = 32;

/// An open data directory and what the log looks like in it.
///
/// `first_index` and `last_index` mirror the disk: every method that
/// changes the log updates them right after its batch is synced, in the
/// same call, so they stay true even when the async caller that started
/// the call has gone away.
pub(crate) struct Store {
    db: DB,
    path: PathBuf,
    /// The first index the log may hold: one past the snapshot, or 1.
    first_index: LogIndex,
    /// The last stored index; `first_index - 1` when the log is empty.
    last_index: LogIndex,
    /// Set when a write failed: the disk may then differ from the fields
    /// above, so every later call is refused.
    failed: bool,
    /// Bytes of write batches since the last flush was asked for.
    written_since_flush_bytes: u64,
}

impl Store {
    /// Opens (or creates) the storage in `path`; see [`crate::RocksStorage::open`].
    pub(crate) fn open(path: &Path, options: &OpenOptions) -> Result<Store, Error> {
        let db = open_database(path, options)?;
        let mut store = Store {
            db,
            path: path.to_path_buf(),
            first_index: 1,
            last_index: 0,
            failed: false,
            written_since_flush_bytes: 0,
        };
        store.first_index = store
            .read_snapshot_meta()?
            .map_or(1, |meta| meta.last_index.saturating_add(1));
        store.last_index = store.read_last_index()?;
        tracing::debug!(
            path = %path.display(),
            first_index = store.first_index,
            last_index = store.last_index,
            "log bounds at open"
        );
        Ok(store)
    }

    /// The data directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn load(&self) -> Result<StoredState, Error> {
        self.check_usable()?;
        let hard_state = self.read_hard_state()?;
        let snapshot = self.read_snapshot_meta()?;
        let entries = self.read_entries(self.first_index, LogIndex::MAX)?;
        let last_read = entries
            .last()
            .map_or(self.first_index - 1, |entry| entry.index);
        if last_read != self.last_index {
            return Err(self.corrupted(format!(
                "log ends at {last_read} on reading, at {} when opened",
                self.last_index
            )));
        }
        Ok(StoredState {
            hard_state,
            snapshot,
            entries,
        })
    }

    /// Applies `write` as one synced batch: the truncation of a conflicting
    /// suffix, the new entries and the hard state land together or not at
    /// all.
    pub(crate) fn write(&mut self, write: LogWrite) -> Result<(), Error> {
        self.check_usable()?;
        if write.is_empty() {
            return Ok(());
        }
        self.check_appendable(&write.entries)?;

        let entries_cf = self.entries_cf()?;
        let mut batch = WriteBatch::default();
        if let Some(first) = write.entries.first() {
            if first.index <= self.last_index {
                // Raft §5.3: the new entries conflict with the stored
                // suffix from `first.index` on; drop all of it.
                let end = self.last_index.saturating_add(1);
                batch.delete_range_cf(entries_cf, entry_key(first.index), entry_key(end));
            }
            for entry in &write.entries {
                // The payload plus a little for term, index and framing.
                let size_hint = entry.payload_len() + ENTRY_OVERHEAD_BYTES;
                let record =
                    encode_record(entry, size_hint).map_err(|detail| self.invalid(detail))?;
                batch.put_cf(entries_cf, entry_key(entry.index), record);
            }
        }
        if let Some(hard_state) = &write.hard_state {
            let record = encode_record(hard_state, ENTRY_OVERHEAD_BYTES)
                .map_err(|detail| self.invalid(detail))?;
            batch.put(HARD_STATE_KEY, record);
        }
        self.commit(batch, "write log batch")?;

        if let Some(last) = write.entries.last() {
            self.last_index = last.index;
        }
        tracing::trace!(
            last_index = self.last_index,
            entries = write.entries.len(),
            hard_state = write.hard_state.is_some(),
            "log write synced"
        );
        Ok(())
    }

    /// Replaces the snapshot and drops the entries it covers, in one synced
    /// batch; drops the whole log when the log conflicts with it.
    pub(crate) fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Error> {
        self.check_usable()?;
        let meta = snapshot.meta;
        let keeps_suffix = meta.last_index >= self.first_index
            && meta.last_index <= self.last_index
            && self.term_at(meta.last_index)? == meta.last_term;

        let entries_cf = self.entries_cf()?;
        let meta_record =
            encode_record(&meta, ENTRY_OVERHEAD_BYTES).map_err(|detail| self.invalid(detail))?;
        let mut batch = WriteBatch::default();
        batch.put(SNAPSHOT_META_KEY, meta_record);
        // FIXME(snapshot-size): the data goes through the WAL and the
        // memtable as one value, costing a few times its size in memory and
        // two writes. Large states want a synced file beside the database,
        // renamed into place and referenced from the metadata.
        batch.put(SNAPSHOT_DATA_KEY, encode_raw_record(&snapshot.data));
        let (drop_end, last_index_after) = if keeps_suffix {
            (meta.last_index.saturating_add(1), self.last_index)
        } else {
            (LogIndex::MAX, meta.last_index)
        };
        // Everything below the new first index goes, whatever was there.
        batch.delete_range_cf(entries_cf, entry_key(0), entry_key(drop_end));
        self.commit(batch, "write snapshot batch")?;

        self.first_index = meta.last_index.saturating_add(1);
        self.last_index = last_index_after;
        if self.written_since_flush_bytes >= FLUSH_AFTER_BYTES_MIN {
            self.start_flush();
            self.written_since_flush_bytes = 0;
        }
        tracing::debug!(
            snapshot_index = meta.last_index,
            snapshot_term = meta.last_term,
            kept_suffix = keeps_suffix,
            last_index = self.last_index,
            "snapshot installed"
        );
        Ok(())
    }

    pub(crate) fn snapshot(&self) -> Result<Option<Snapshot>, Error> {
        self.check_usable()?;
        let Some(meta) = self.read_snapshot_meta()? else {
            return Ok(None);
        };
        let record = self
            .db
            .get(SNAPSHOT_DATA_KEY)
            .map_err(|source| self.rocks("read snapshot data", source))?
            .ok_or_else(|| self.corrupted("snapshot metadata without snapshot data".into()))?;
        let data = open_record(&record)
            .map_err(|detail| self.corrupted(format!("snapshot data: {detail}")))?;
        Ok(Some(Snapshot {
            meta,
            data: Bytes::copy_from_slice(data),
        }))
    }

    pub(crate) fn entries(&self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, Error> {
        self.check_usable()?;
        self.read_entries(low.max(self.first_index), high)
    }

    /// Reads the entries with index in `low..high`, checking that they are
    /// contiguous and that each one's index matches its key.
    fn read_entries(&self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, Error> {
        if low >= high {
            return Ok(Vec::new());
        }
        let entries_cf = self.entries_cf()?;
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_upper_bound(entry_key(high).to_vec());
        let start = entry_key(low);
        let iterator = self.db.iterator_cf_opt(
            entries_cf,
            read_options,
            IteratorMode::From(&start, Direction::Forward),
        );

        let mut entries = Vec::new();
        for item in iterator {
            let (key, value) = item.map_err(|source| self.rocks("read entries", source))?;
            let index = decode_entry_key(&key).map_err(|detail| self.corrupted(detail))?;
            let entry = self.decode_entry(index, &value)?;
            let expected_index = low + entries.len() as LogIndex;
            if index != expected_index {
                return Err(self.corrupted(format!(
                    "log has a gap: entry {index} where {expected_index} was expected"
                )));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn decode_entry(&self, index: LogIndex, record: &[u8]) -> Result<Entry, Error> {
        let entry: Entry = decode_record(record)
            .map_err(|detail| self.corrupted(format!("entry {index}: {detail}")))?;
        if entry.index != index {
            return Err(self.corrupted(format!(
                "entry stored under index {index} says it is entry {}",
                entry.index
            )));
        }
        Ok(entry)
    }

    fn term_at(&self, index: LogIndex) -> Result<raft_core::Term, Error> {
        let record = self
            .db
            .get_cf(self.entries_cf()?, entry_key(index))
            .map_err(|source| self.rocks("read entry", source))?
            .ok_or_else(|| self.corrupted(format!("entry {index} is missing from the log")))?;
        Ok(self.decode_entry(index, &record)?.term)
    }

    fn read_hard_state(&self) -> Result<HardState, Error> {
        let record = self
            .db
            .get(HARD_STATE_KEY)
            .map_err(|source| self.rocks("read hard state", source))?;
        match record {
            None => Ok(HardState::default()),
            Some(record) => decode_record(&record)
                .map_err(|detail| self.corrupted(format!("hard state: {detail}"))),
        }
    }

    fn read_snapshot_meta(&self) -> Result<Option<SnapshotMeta>, Error> {
        let record = self
            .db
            .get(SNAPSHOT_META_KEY)
            .map_err(|source| self.rocks("read snapshot metadata", source))?;
        record
            .map(|record| {
                decode_record(&record)
                    .map_err(|detail| self.corrupted(format!("snapshot metadata: {detail}")))
            })
            .transpose()
    }

    /// The index of the last stored entry, or `first_index - 1`.
    fn read_last_index(&self) -> Result<LogIndex, Error> {
        let mut iterator = self.db.iterator_cf(self.entries_cf()?, IteratorMode::End);
        match iterator.next() {
            None => Ok(self.first_index - 1),
            Some(item) => {
                let (key, _) = item.map_err(|source| self.rocks("find last entry", source))?;
                let index = decode_entry_key(&key).map_err(|detail| self.corrupted(detail))?;
                if index < self.first_index {
                    return Err(self.corrupted(format!(
                        "last entry {index} is covered by the snapshot (first index {})",
                        self.first_index
                    )));
                }
                Ok(index)
            }
        }
    }

    /// Refuses entries that are not contiguous or that would leave a gap
    /// or overwrite the snapshot (the driver never sends such a write).
    fn check_appendable(&self, entries: &[Entry]) -> Result<(), Error> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let next_index = self.last_index.saturating_add(1);
        if first.index < self.first_index || first.index > next_index {
            return Err(self.invalid(format!(
                "first entry {} is outside {}..={next_index}",
                first.index, self.first_index
            )));
        }
        for pair in entries.windows(2) {
            if pair[0].index.checked_add(1) != Some(pair[1].index) {
                return Err(self.invalid(format!(
                    "entries are not contiguous: {} follows {}",
                    pair[1].index, pair[0].index
                )));
            }
        }
        Ok(())
    }

    /// Asks RocksDB to write both memtables out to table files, in the
    /// background.
    ///
    /// Called after a snapshot install, which left most of what the WAL and
    /// the entries memtable hold dead. A flush writes only what is live
    /// (the log after the snapshot, the latest metadata): a range deletion
    /// drops the keys it covers in the same memtable as it is flushed. Once
    /// both column families are flushed, every older WAL file is deleted.
    /// So the WAL holds about one snapshot interval of log (or
    /// [`crate::FLUSH_AFTER_BYTES_MIN`]), rather than up to
    /// [`crate::OpenOptions::wal_bytes_max`].
    ///
    /// Normally this returns at once. When the flush asked for last time
    /// has not finished yet, it waits for it: without that back-pressure a
    /// disk slower than the writes would let the WAL grow by what arrives
    /// while flushes lag, and the bound would hold only in good weather.
    ///
    /// Durability does not depend on any of it: everything is in the
    /// synced WAL already. A failed request is logged and otherwise
    /// ignored; a disk that really failed makes the next write fail.
    fn start_flush(&self) {
        for name in [ENTRIES_CF, META_CF] {
            let Some(column_family) = self.db.cf_handle(name) else {
                tracing::warn!(column_family = name, "column family is not open");
                continue;
            };
            let pending = self
                .db
                .property_int_value_cf(column_family, "rocksdb.num-immutable-mem-table")
                .unwrap_or(None)
                .unwrap_or(0);
            let mut flush_options = FlushOptions::default();
            // Waiting covers the pending flush too: memtables are flushed
            // in order.
            // FIXME(flush-wait): the wait holds up the Raft driver's turn
            // (measured up to 94 ms under load). Right would be to delay
            // only new appends, in proportion to how far flushes lag, and
            // keep heartbeats and votes flowing.
            flush_options.set_wait(pending > 0);
            if pending > 0 {
                tracing::debug!(
                    column_family = name,
                    pending,
                    "previous flush still running; waiting for it"
                );
            }
            if let Err(source) = self.db.flush_cf_opt(column_family, &flush_options) {
                let error = self.rocks("flush memtable", source);
                tracing::warn!(column_family = name, %error, "could not flush");
            }
        }
    }

    /// Writes `batch` and syncs the WAL before returning.
    fn commit(&mut self, batch: WriteBatch, operation: &'static str) -> Result<(), Error> {
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        let batch_bytes = batch.size_in_bytes() as u64;
        if let Err(source) = self.db.write_opt(batch, &write_options) {
            self.failed = true;
            tracing::error!(path = %self.path.display(), error = %source, "log write failed");
            return Err(self.rocks(operation, source));
        }
        self.written_since_flush_bytes += batch_bytes;
        Ok(())
    }

    fn check_usable(&self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    fn entries_cf(&self) -> Result<&ColumnFamily, Error> {
        self.db
            .cf_handle(ENTRIES_CF)
            .ok_or_else(|| self.corrupted(format!("column family {ENTRIES_CF:?} is not open")))
    }

    fn rocks(&self, operation: &'static str, source: rocksdb::Error) -> Error {
        if source.kind() == rocksdb::ErrorKind::Corruption {
            return self.corrupted(format!("{operation}: {source}"));
        }
        Error::Rocks {
            path: self.path.clone(),
            operation,
            source,
        }
    }

    fn corrupted(&self, detail: String) -> Error {
        Error::Corrupted {
            path: self.path.clone(),
            detail,
        }
    }

    fn invalid(&self, detail: String) -> Error {
        Error::InvalidRequest {
            path: self.path.clone(),
            detail,
        }
    }
}
