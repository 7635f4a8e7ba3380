//! A pass: the coordinator's lookups, miss explanations and cached rows for the steps
//! that became ready at once, in one transaction on the handle's connection.
//!
//! Why one transaction: a cached step costs one lookup and one row. Each lookup in a
//! transaction of its own took SQLite's shared-memory locks and a snapshot per step, and
//! the cached row had to check again, in the later write transaction, that the execution
//! it points at still held the outputs the lookup found (garbage collection may remove it
//! in between). In one `BEGIN IMMEDIATE` transaction nothing can change between the lookup
//! and the row, so the row points at what the lookup found without reading it again.
//!
//! The transaction holds the store's write lock, and this handle's connection, only while
//! the coordinator resolves steps whose upstream steps are done: no step body runs inside
//! it. A read-only handle reads in a plain (deferred) transaction and records nothing.

use std::sync::MutexGuard;

use rusqlite::Connection;

use super::earlier::Candidates;
use super::metadata::MetadataPass;
use super::{ExecutionRow, Lookup, SqliteMetadata};
use crate::error::Result;
use crate::key::Hash128;

/// An open pass; see the module docs. Rolls back on drop unless committed.
pub(crate) struct Pass<'s> {
    store: &'s SqliteMetadata,
    conn: MutexGuard<'s, Connection>,
    open: bool,
}

impl SqliteMetadata {
    /// Opens a pass: `BEGIN IMMEDIATE` on a writable handle (waiting for other writers
    /// as long as the busy timeout allows), a read transaction on a read-only one.
    ///
    /// # Errors
    ///
    /// [`Error::StoreLocked`](crate::Error::StoreLocked) when another process keeps the
    /// write lock past the busy timeout; [`Error::Database`](crate::Error::Database).
    pub(crate) fn pass(&self) -> Result<Pass<'_>> {
        let conn = self.db();
        let begin = if self.read_only().is_some() {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        };
        conn.execute_batch(begin).map_err(|e| self.db_error(e))?;
        Ok(Pass {
            store: self,
            conn,
            open: true,
        })
    }
}

impl MetadataPass for Pass<'_> {
    fn lookup(&self, key: Hash128) -> Result<Lookup> {
        self.store.lookup_in(&self.conn, key)
    }

    fn earlier_calls(
        &self,
        step: &str,
        pipeline: &str,
        exclude_run: &str,
    ) -> Result<Option<Candidates>> {
        self.store
            .earlier_calls_in(&self.conn, step, pipeline, exclude_run, None)
    }

    fn record(&self, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>> {
        self.store.check_writable("record executions")?;
        self.store.record_in(&self.conn, rows)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.open = false;
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(self.store.db_error(e));
        }
        Ok(())
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing to report: a failed rollback leaves SQLite to roll back when the
            // connection next begins, and the pass recorded nothing durable.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
