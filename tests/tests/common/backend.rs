//! Which storage backend the servers under test keep their data in: the SQLite file in the data
//! dir (the default), or with `FIELDNOTES_TEST_BACKEND=postgres` a fresh PostgreSQL database for
//! every data dir, created through the admin URL in `FIELDNOTES_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `cargo xtask test` starts a server when none
//! answers) and passed as `--database` to `fieldnotes serve` and to every `fieldnotes admin` on
//! that data dir. A restart on the same data dir therefore finds the same database, as it finds
//! the same SQLite file. The databases are dropped when the test process exits.
//!
//! A test about moving data between the backends (`fieldnotes admin migrate`, backups) pins a
//! data dir to one of them with [`pin`] and makes more databases with [`fresh_database`].
//!
//! Unreachable PostgreSQL panics: a test never passes by quietly running on the other backend.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use super::raw::random_bytes;

/// The backend every server of this test process uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `FIELDNOTES_TEST_BACKEND`: `sqlite` (or unset) or `postgres`; anything else panics.
pub fn backend() -> Backend {
    match std::env::var("FIELDNOTES_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Backend::Sqlite,
        Ok("postgres") => Backend::Postgres,
        Ok(other) => panic!("FIELDNOTES_TEST_BACKEND must be sqlite or postgres, not {other:?}"),
    }
}

/// The admin URL the test databases are created through.
pub fn admin_url() -> String {
    std::env::var("FIELDNOTES_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The databases made so far, by data dir: (name, URL).
fn databases() -> &'static Mutex<HashMap<PathBuf, (String, String)>> {
    static MADE: OnceLock<Mutex<HashMap<PathBuf, (String, String)>>> = OnceLock::new();
    MADE.get_or_init(Default::default)
}

/// Data dirs whose storage a test chose itself ([`pin`]), whatever the backend switch says.
fn pinned() -> &'static Mutex<HashMap<PathBuf, Option<String>>> {
    static PINNED: OnceLock<Mutex<HashMap<PathBuf, Option<String>>>> = OnceLock::new();
    PINNED.get_or_init(Default::default)
}

fn key(data_dir: &Path) -> PathBuf {
    data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf())
}

/// Makes the servers and admin commands on `data_dir` use `database` (`None`: the SQLite file
/// in the data dir) whatever `FIELDNOTES_TEST_BACKEND` says: for tests that are about moving
/// data between the backends. `data_dir` must exist.
pub fn pin(data_dir: &Path, database: Option<&str>) {
    pinned()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key(data_dir), database.map(str::to_string));
}

/// The PostgreSQL database of the server on `data_dir` (made on first use), or `None` on
/// SQLite.
pub fn database_url(data_dir: &Path) -> Option<String> {
    let key = key(data_dir);
    if let Some(database) = pinned().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return database.clone();
    }
    if backend() == Backend::Sqlite {
        return None;
    }
    let mut made = databases().lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, url)) = made.get(&key) {
        return Some(url.clone());
    }
    let (name, url) = create_database(&made);
    made.insert(key, (name, url.clone()));
    Some(url)
}

/// A fresh, empty PostgreSQL database (dropped when the test process exits), whatever the
/// backend switch says: its URL. Panics when PostgreSQL does not answer.
pub fn fresh_database() -> String {
    let mut made = databases().lock().unwrap_or_else(|e| e.into_inner());
    let (name, url) = create_database(&made);
    // under a key no data dir has, so `database_url` never hands it out
    made.insert(PathBuf::from(format!("\0{name}")), (name, url.clone()));
    url
}

fn create_database(made: &HashMap<PathBuf, (String, String)>) -> (String, String) {
    if made.is_empty() {
        drop_all_at_exit();
    }
    let name = format!("fieldnotes_test_{}", super::cbor::hex(&random_bytes::<8>()));
    let statement = format!("CREATE DATABASE {name}");
    with_client(&admin_url(), move |client| {
        client
            .batch_execute(&statement)
            .unwrap_or_else(|e| panic!("creating the test database: {e}"))
    });
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    let url = format!("{base}/{name}");
    (name, url)
}

/// Points a `fieldnotes serve` or `fieldnotes admin` command (its `--data-dir` given already)
/// at this backend's storage for `data_dir`. On SQLite it makes sure no `FIELDNOTES_DATABASE`
/// from the environment sends it elsewhere.
pub fn configure(command: &mut Command, data_dir: &Path) {
    match database_url(data_dir) {
        Some(url) => command.arg("--database").arg(url),
        None => command.env_remove("FIELDNOTES_DATABASE"),
    };
}

/// Runs `f` with a client connected to `url`, on a thread of its own (the synchronous client
/// starts a runtime, which cannot happen inside an async test's). Panics when PostgreSQL does
/// not answer.
pub fn with_client<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
) -> T {
    let url = url.to_string();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {url} ({e}); FIELDNOTES_TEST_BACKEND=postgres \
                 needs it: start it or set FIELDNOTES_TEST_POSTGRES (`cargo xtask test` starts one)"
            )
        });
        f(&mut client)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Drops every database this process made when it exits (the test harness returns from `main`
/// or calls `exit`; both run `atexit` handlers). Servers still connected are cut off.
fn drop_all_at_exit() {
    unsafe extern "C" {
        fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
    }
    extern "C" fn drop_all() {
        let names: Vec<String> = databases()
            .lock()
            .map(|made| made.values().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default();
        if names.is_empty() {
            return;
        }
        let dropped = std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&admin_url(), postgres::NoTls).ok()?;
            for name in names {
                let _ =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
            Some(())
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test databases (fieldnotes_test_*) at exit");
        }
    }
    // SAFETY: registering a plain function without captures; it runs once, at exit.
    unsafe {
        atexit(drop_all);
    }
}
