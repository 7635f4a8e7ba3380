//! Metadata in PostgreSQL (feature `postgres`): connecting, the schema and its migrations,
//! turning the server's errors into [`Error`]s that say what to fix, and
//! [`PostgresMetadata`], the [`MetadataStore`](super::MetadataStore) on it.
//!
//! The client is the sync `postgres` crate with an `r2d2` pool: the runtime is sync, and a
//! pool of blocking connections is what each of its worker threads needs.
//!
//! Credentials: the URL's password reaches only `postgres::Config`; every error and log line
//! names the store by [`PostgresUrl`]'s `Display`, which shows `***` in its place. A URL
//! without a password takes one from `PGPASSWORD` or the password file, as libpq does
//! (`password.rs`).

mod metadata;
mod password;
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
    /// Where the password came from, for messages.
    password: password::Origin,
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
        Postgres::open(url, timeout, Access::Write).map(|(db, _)| db)
    }

    /// As [`connect`](Postgres::connect), also returning the first connection (outside the
    /// pool), which answered the checks and ran the migrations. With [`Access::Read`] it
    /// creates and changes nothing: every session is read-only, and a database without a
    /// store, or with an older schema, is an error.
    ///
    /// # Errors
    ///
    /// As [`connect`](Postgres::connect); with [`Access::Read`], [`Error::NotAStore`] for a
    /// database without a store and [`Error::ReadOnly`] for one whose schema needs an
    /// upgrade.
    pub(crate) fn open(
        url: &PostgresUrl,
        timeout: Duration,
        access: Access,
    ) -> Result<(Postgres, postgres::Client)> {
        Postgres::open_with_env(url, timeout, access, &|name| std::env::var(name).ok())
    }

    /// As [`open`](Postgres::open), reading `PGPASSWORD`, `PGPASSFILE` and `HOME` through
    /// `var`.
    ///
    /// # Errors
    ///
    /// As [`open`](Postgres::open).
    pub(crate) fn open_with_env(
        url: &PostgresUrl,
        timeout: Duration,
        access: Access,
        var: &dyn Fn(&str) -> Option<String>,
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
        if access == Access::Read {
            // The server itself refuses every write of this handle's sessions.
            let options = match config.get_options() {
                Some(o) if !o.is_empty() => format!("{o} -c default_transaction_read_only=on"),
                _ => "-c default_transaction_read_only=on".to_string(),
            };
            config.options(&options);
        }
        let password = supply_password(&mut config, var);
        // The first connection answers whether the server is there and the credentials
        // hold, with the server's own error code; the pool then connects lazily.
        let first =
            connect_within(&config, timeout).map_err(|e| classify(url, &password, e, timeout))?;
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
            password,
        };
        let mut first = first;
        match access {
            Access::Write => schema::migrate(&mut first).map_err(|e| db.schema_error(e))?,
            Access::Read => schema::check(&mut first).map_err(|e| db.schema_error(e))?,
        };
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
        connect_within(&self.config, timeout)
            .map_err(|e| classify(&self.url, &self.password, e, timeout))
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
        classify(&self.url, &self.password, e, self.pool.connection_timeout())
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
            schema::SchemaError::Empty => Error::NotAStore {
                path: self.url.to_string().into(),
                reason:
                    "the database holds no pipeline store yet, and a read-only open creates none"
                        .into(),
            },
            schema::SchemaError::Older { found, supported } => Error::ReadOnly {
                path: self.url.to_string().into(),
                action: format!("upgrade its schema from version {found} to {supported}"),
                cause: crate::error::ReadOnlyCause::Requested,
            },
            schema::SchemaError::Db(e) => self.error(e),
        }
    }
}

/// Whether a handle may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Creates the schema if needed, and writes.
    Write,
    /// Reads only: creates nothing, and the server refuses writes.
    Read,
}

/// Gives `config` the password of `PGPASSWORD` or the password file when the URL has none
/// (libpq's rules, see `password.rs`), and says where the password came from.
fn supply_password(
    config: &mut postgres::Config,
    var: &dyn Fn(&str) -> Option<String>,
) -> password::Origin {
    if config.get_password().is_some() {
        return password::Origin::Url;
    }
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        // libpq matches a Unix socket as `localhost`.
        _ => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(str::to_owned)
        .or_else(|| var("USER"))
        .unwrap_or_default();
    let database = config.get_dbname().unwrap_or(&user).to_owned();
    let target = password::Target {
        host: &host,
        port,
        database: &database,
        user: &user,
    };
    let (found, origin) = password::find(&target, var);
    if let Some(p) = found {
        config.password(p);
    }
    origin
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

fn classify(
    url: &PostgresUrl,
    password: &password::Origin,
    e: impl Into<Attempt>,
    timeout: Duration,
) -> Error {
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
    let where_to = "set the password in the URL, PGPASSWORD or ~/.pgpass";
    let problem = match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD => format!(
            "password authentication failed for user `{}` (the password {}); {where_to}",
            url_user(url),
            password.describe()
        ),
        Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => format!(
            "the server refused user `{}`: {}; check the user name in the metadata URL, and that the server lets it in from here",
            url_user(url),
            e.as_db_error().map_or("", |d| d.message())
        ),
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => {
            "the database does not exist; create it (`createdb`) or fix the URL's database name"
                .into()
        }
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => {
            "the store was opened read-only, so it cannot be written; open it without `read_only`"
                .into()
        }
        Some(_) => "the metadata database refused a request".into(),
        // The server asked for a password and the client had none to send.
        None if password_missing(&e) => {
            let ignored = match password {
                password::Origin::Missing { ignored: Some(why) } => format!("; {why}"),
                _ => String::new(),
            };
            format!(
                "password authentication failed for user `{}`: the server asks for a password and none was given{ignored}; {where_to}",
                url_user(url),
            )
        }
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

/// Whether `e` is the client's "password missing": the server asked for one and the
/// configuration has none. (The client's error kinds are private; its text is stable.)
fn password_missing(e: &postgres::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if err.to_string().contains("password missing") {
            return true;
        }
        next = err.source();
    }
    false
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
