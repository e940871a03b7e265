//! One small SQL interface over the two database backends, SQLite (one file, the default) and
//! PostgreSQL (several instances on one database).
//!
//! Everything above this module (the document store, sign-in, access control, the admin
//! commands) is written once against [`Db`]: statements use `?1`, `?2`, … placeholders, which
//! the PostgreSQL backend rewrites to `$1`, `$2`, …, and values travel as [`Value`]s. Only the
//! schema, the transaction start and the chunk append differ per backend, and those live in
//! `storage.rs`; and the sign-in throttle's sweep, in `auth/throttle.rs`. The PostgreSQL schema uses `BIGINT` for every integer and `BYTEA` for blobs, so
//! the same statements bind the same Rust types on both.

use std::collections::HashMap;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    /// A typed NULL: PostgreSQL checks a parameter's type even when it is NULL.
    Null(Kind),
    /// PostgreSQL only: a `text[]` parameter, so one statement writes many rows (`unnest`).
    Texts(Vec<String>),
    /// PostgreSQL only: a `bytea[]` parameter.
    Blobs(Vec<Vec<u8>>),
    /// PostgreSQL only: a `bigint[]` parameter.
    Ints(Vec<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    Blob,
}

/// What can go wrong talking to a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {}", postgres_text(.0))]
    Postgres(#[from] postgres::Error),
    #[error("database error: column {column} is not {expected}")]
    Type {
        column: usize,
        expected: &'static str,
    },
    #[error("database error: the query returned no row")]
    NoRow,
}

/// What PostgreSQL said, with its code (the `postgres` crate's own text is only "db error").
fn postgres_text(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            text
        }
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

impl DbError {
    /// Whether the connection itself is gone (PostgreSQL restarted, the network cut), rather
    /// than one statement failing.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            DbError::Postgres(error) => error.is_closed() || error.code().is_none(),
            _ => false,
        }
    }
}

pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl ToValue for Option<i64> {
    fn to_value(&self) -> Value {
        self.map_or(Value::Null(Kind::Int), Value::Int)
    }
}
impl ToValue for Option<&str> {
    fn to_value(&self) -> Value {
        self.map_or(Value::Null(Kind::Text), |s| Value::Text(s.to_string()))
    }
}
impl ToValue for Option<String> {
    fn to_value(&self) -> Value {
        self.as_deref().to_value()
    }
}

/// Statement parameters: `params![a, b]`, each anything [`ToValue`].
#[macro_export]
macro_rules! params {
    ($($param:expr),* $(,)?) => {
        &[$(&$param as &dyn $crate::db::ToValue),*] as &[&dyn $crate::db::ToValue]
    };
}

pub trait FromValue: Sized {
    fn from_value(value: &Value, column: usize) -> Result<Self, DbError>;
}

impl FromValue for i64 {
    fn from_value(value: &Value, column: usize) -> Result<Self, DbError> {
        match value {
            Value::Int(n) => Ok(*n),
            _ => Err(DbError::Type {
                column,
                expected: "an integer",
            }),
        }
    }
}
impl FromValue for String {
    fn from_value(value: &Value, column: usize) -> Result<Self, DbError> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(DbError::Type {
                column,
                expected: "text",
            }),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(value: &Value, column: usize) -> Result<Self, DbError> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(DbError::Type {
                column,
                expected: "bytes",
            }),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value, column: usize) -> Result<Self, DbError> {
        match value {
            Value::Null(_) => Ok(None),
            other => T::from_value(other, column).map(Some),
        }
    }
}

/// One row of a result.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    /// The raw value of a column (NULL past the end).
    pub fn value(&self, column: usize) -> Value {
        self.0
            .get(column)
            .cloned()
            .unwrap_or(Value::Null(Kind::Text))
    }

    pub fn get<T: FromValue>(&self, column: usize) -> Result<T, DbError> {
        let value = self.0.get(column).ok_or(DbError::Type {
            column,
            expected: "present",
        })?;
        T::from_value(value, column)
    }
}

/// A PostgreSQL connection with its prepared statements.
pub struct PgConnection {
    pub(crate) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

impl PgConnection {
    pub fn connect(url: &str) -> Result<Self, DbError> {
        let mut config: postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            // The hub thread waits for this; a database that does not answer must not
            // hold every socket for long.
            config.connect_timeout(std::time::Duration::from_secs(3));
        }
        // The client runs its own small runtime, which cannot start inside another (the
        // server opens its store from async code): connect on a thread of its own.
        let client = std::thread::spawn(move || config.connect(postgres::NoTls))
            .join()
            .map_err(|_| DbError::NoRow)??;
        Ok(Self {
            client,
            statements: HashMap::new(),
        })
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&pg_placeholders(sql))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// A connection to one of the backends.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConnection>),
}

/// `?1` → `$1`. No statement of ours has a `?` inside a string literal.
fn pg_placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Null(_) => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Texts(_) | Value::Blobs(_) | Value::Ints(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "array parameters are for PostgreSQL only".into(),
                ));
            }
        })
    }
}

fn pg_param(value: &Value) -> Box<dyn postgres::types::ToSql + Sync + '_> {
    match value {
        Value::Int(n) => Box::new(*n),
        Value::Text(s) => Box::new(s.as_str()),
        Value::Blob(b) => Box::new(b.as_slice()),
        Value::Null(Kind::Int) => Box::new(None::<i64>),
        Value::Null(Kind::Text) => Box::new(None::<&str>),
        Value::Null(Kind::Blob) => Box::new(None::<&[u8]>),
        Value::Texts(texts) => Box::new(texts),
        Value::Blobs(blobs) => Box::new(blobs),
        Value::Ints(ints) => Box::new(ints),
    }
}

fn pg_row(row: &postgres::Row) -> Result<Row, DbError> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?
                .map_or(Value::Null(Kind::Int), Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map_or(Value::Null(Kind::Int), |n| Value::Int(n.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?
                .map_or(Value::Null(Kind::Int), |n| Value::Int(n.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map_or(Value::Null(Kind::Int), |b| Value::Int(b.into()))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Value::Null(Kind::Blob), Value::Blob)
        } else {
            // Text, or a type no statement of ours reads (`void`): NULL.
            row.try_get::<_, Option<String>>(i)
                .ok()
                .flatten()
                .map_or(Value::Null(Kind::Text), Value::Text)
        };
        values.push(value);
    }
    Ok(Row(values))
}

fn sqlite_row(row: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut values = Vec::with_capacity(columns);
    for i in 0..columns {
        values.push(match row.get_ref(i)? {
            ValueRef::Null => Value::Null(Kind::Text),
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Real(f) => Value::Int(f as i64),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(Row(values))
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    fn values(params: &[&dyn ToValue]) -> Vec<Value> {
        params.iter().map(|p| p.to_value()).collect()
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, DbError> {
        let values = Self::values(params);
        match self {
            Db::Sqlite(connection) => Ok(connection
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(values.iter()))?
                as u64),
            Db::Postgres(pg) => {
                let statement = pg.statement(sql)?;
                let boxed: Vec<_> = values.iter().map(pg_param).collect();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    boxed.iter().map(|b| b.as_ref()).collect();
                Ok(pg.client.execute(&statement, &refs)?)
            }
        }
    }

    /// Every row of a query.
    pub fn query(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, DbError> {
        let values = Self::values(params);
        match self {
            Db::Sqlite(connection) => {
                let mut statement = connection.prepare_cached(sql)?;
                let columns = statement.column_count();
                let rows = statement
                    .query_map(rusqlite::params_from_iter(values.iter()), |row| {
                        sqlite_row(row, columns)
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            }
            Db::Postgres(pg) => {
                let statement = pg.statement(sql)?;
                let boxed: Vec<_> = values.iter().map(pg_param).collect();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    boxed.iter().map(|b| b.as_ref()).collect();
                pg.client
                    .query(&statement, &refs)?
                    .iter()
                    .map(pg_row)
                    .collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row of a query, which must exist.
    pub fn query_one(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<Row, DbError> {
        self.query_opt(sql, params)?.ok_or(DbError::NoRow)
    }

    /// Statements without parameters, separated by `;`.
    pub fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(connection) => connection.execute_batch(sql)?,
            Db::Postgres(pg) => pg.client.batch_execute(sql)?,
        }
        Ok(())
    }

    /// Runs `work` in a transaction: committed when it returns `Ok`, rolled back otherwise.
    pub fn transaction<T, E: From<DbError>>(
        &mut self,
        work: impl FnOnce(&mut Db) -> Result<T, E>,
    ) -> Result<T, E> {
        self.batch("BEGIN")?;
        match work(self) {
            Ok(value) => {
                if let Err(error) = self.batch("COMMIT") {
                    let _ = self.batch("ROLLBACK");
                    return Err(error.into());
                }
                Ok(value)
            }
            Err(error) => {
                let _ = self.batch("ROLLBACK");
                Err(error)
            }
        }
    }
}
