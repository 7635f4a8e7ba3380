//! Metadata in PostgreSQL (feature `postgres`): connecting, the schema and its migrations,
//! turning the server's errors into [`Error`]s that say what to fix, and
//! [`PostgresMetadata`], the [`MetadataStore`](super::MetadataStore) on it.
//!
//! The client is the sync `postgres` crate with an `r2d2` pool: the runtime is sync, and a
//! pool of blocking connections is what each of its worker threads needs.
//!
//! Credentials: the URL's password reaches only `postgres::Config`; every error and log line
//! names the store by [`PostgresUrl`]'s `Display`, which shows `***` in its place.

mod metadata;
mod schema;

pub use metadata::PostgresMetadata;

use std::sync::mpsc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

use crate::config::PostgresUrl;
use crate::error::{BoxError, Error, Result};

/// How long connecting may take before it is an error (socket connect, then the startup
/// and authentication exchange), and how long a pooled connection may be waited for.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections a process keeps open: the coordinator, the heartbeat and a few workers.
const POOL_SIZE: u32 = 8;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
pub(crate) type Connection = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// A connection pool to one PostgreSQL database holding (or about to hold) a store.
pub(crate) struct Postgres {
    pool: Pool,
    url: PostgresUrl,
    /// What the pool connects with, for connections of their own ([`Postgres::dedicated`]).
    config: postgres::Config,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Postgres({})", self.url)
    }
}

impl Postgres {
    /// Connects, checks the server answers as the given user, and migrates the schema
    /// forward (or refuses a database of a newer schema, or one that is not a store).
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the server cannot be reached within `timeout`, refuses the
    /// credentials, or has no such database; [`Error::StoreTooNew`] / [`Error::NotAStore`]
    /// from the schema check.
    #[cfg(test)]
    pub(crate) fn connect(url: &PostgresUrl, timeout: Duration) -> Result<Postgres> {
        Postgres::open(url, timeout).map(|(db, _)| db)
    }

    /// As [`connect`](Postgres::connect), also returning the first connection (outside the
    /// pool), which answered the checks and ran the migrations.
    ///
    /// # Errors
    ///
    /// As [`connect`](Postgres::connect).
    pub(crate) fn open(
        url: &PostgresUrl,
        timeout: Duration,
    ) -> Result<(Postgres, postgres::Client)> {
        let mut config: postgres::Config = url
            .expose()
            .parse()
            .map_err(|e: postgres::Error| remote(url, "is not a valid PostgreSQL URL", e))?;
        config
            .connect_timeout(timeout)
            // A server that stops answering mid-request fails the request instead of
            // hanging it (Linux; elsewhere keepalives catch it later).
            .tcp_user_timeout(timeout * 3)
            .keepalives(true)
            .application_name("pipeline");
        // The first connection answers whether the server is there and the credentials
        // hold, with the server's own error code; the pool then connects lazily.
        let first = connect_within(&config, timeout).map_err(|e| classify(url, e, timeout))?;
        let manager = PostgresConnectionManager::new(config.clone(), NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(timeout)
            .build_unchecked(manager);
        let db = Postgres {
            pool,
            url: url.clone(),
            config,
        };
        let mut first = first;
        schema::migrate(&mut first).map_err(|e| db.schema_error(e))?;
        Ok((db, first))
    }

    /// A new connection of its own, outside the pool (one that holds a session-level lock
    /// must not be handed to other users of the pool).
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the server cannot be reached within the connect timeout or
    /// refuses the credentials.
    pub(crate) fn dedicated(&self) -> Result<postgres::Client> {
        let timeout = self.pool.connection_timeout();
        connect_within(&self.config, timeout).map_err(|e| classify(&self.url, e, timeout))
    }

    /// A pooled connection.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when none is free or can be opened within the pool's timeout.
    pub(crate) fn conn(&self) -> Result<Connection> {
        self.pool.get().map_err(|e| Error::Remote {
            location: self.url.to_string(),
            problem: format!(
                "no connection to the metadata database within {}s: {e}; check that the server is running and reachable",
                self.pool.connection_timeout().as_secs()
            ),
            source: None,
        })
    }

    /// The URL, with its password hidden when displayed.
    pub(crate) fn url(&self) -> &PostgresUrl {
        &self.url
    }

    /// Maps an error of a query on this database.
    pub(crate) fn error(&self, e: postgres::Error) -> Error {
        classify(&self.url, e, self.pool.connection_timeout())
    }

    pub(crate) fn schema_error(&self, e: schema::SchemaError) -> Error {
        match e {
            schema::SchemaError::Newer { found, supported } => Error::StoreTooNew {
                path: self.url.to_string().into(),
                found,
                supported,
            },
            schema::SchemaError::Foreign(reason) => Error::NotAStore {
                path: self.url.to_string().into(),
                reason,
            },
            schema::SchemaError::Db(e) => self.error(e),
        }
    }
}

/// `config.connect` on a thread, given up after `timeout` (plus a second for the startup
/// exchange): the socket-level `connect_timeout` does not cover a server that accepts the
/// connection and then says nothing.
fn connect_within(
    config: &postgres::Config,
    timeout: Duration,
) -> std::result::Result<postgres::Client, Attempt> {
    let (tx, rx) = mpsc::sync_channel(1);
    let config = config.clone();
    std::thread::Builder::new()
        .name("pipeline-pg-connect".into())
        .spawn(move || {
            let _ = tx.send(config.connect(NoTls));
        })
        .map_err(|e| Attempt::Failed(Box::new(e)))?;
    match rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(Attempt::Db(e)),
        Err(_) => Err(Attempt::TimedOut),
    }
}

enum Attempt {
    Db(postgres::Error),
    TimedOut,
    Failed(BoxError),
}

impl From<postgres::Error> for Attempt {
    fn from(e: postgres::Error) -> Self {
        Attempt::Db(e)
    }
}

fn classify(url: &PostgresUrl, e: impl Into<Attempt>, timeout: Duration) -> Error {
    let location = url.to_string();
    let e = match e.into() {
        Attempt::TimedOut => {
            return Error::Remote {
                location,
                problem: format!(
                    "the metadata database did not answer within {}s; check the host and port, and that the server is running and reachable from here",
                    timeout.as_secs()
                ),
                source: None,
            }
        }
        Attempt::Failed(source) => {
            return Error::Remote {
                location,
                problem: "could not start connecting".into(),
                source: Some(source),
            }
        }
        Attempt::Db(e) => e,
    };
    let problem = match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD
            || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            format!(
                "the server refused the user name or password; check the credentials in the metadata URL (user `{}`)",
                url_user(url)
            )
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => {
            "the database does not exist; create it (`createdb`) or fix the URL's database name"
                .into()
        }
        Some(_) => "the metadata database refused a request".into(),
        None if e.is_closed() => "the connection to the metadata database was closed".into(),
        None if std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) => {
            "cannot reach the metadata database; check the host and port, and that the server is running".into()
        }
        None => "a request to the metadata database failed".into(),
    };
    Error::Remote {
        location,
        problem,
        source: Some(Box::new(e)),
    }
}

fn url_user(url: &PostgresUrl) -> String {
    url.user().to_owned()
}

fn remote(url: &PostgresUrl, problem: &str, e: postgres::Error) -> Error {
    Error::Remote {
        location: url.to_string(),
        problem: problem.into(),
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests;
