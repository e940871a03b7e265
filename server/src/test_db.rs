//! Throwaway PostgreSQL databases for tests: each test gets its own, dropped at the end.
//!
//! The server to use comes from `FIELDNOTES_TEST_POSTGRES` (an admin URL; default
//! `postgres://postgres@127.0.0.1:5432/postgres`, which `cargo xtask test` starts when it is
//! down). A test that needs PostgreSQL panics when it cannot reach it: never a silent skip.

/// The admin URL tests create their databases through.
pub fn admin_url() -> String {
    std::env::var("FIELDNOTES_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database, dropped (with its connections) when this goes out of scope.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    pub fn new() -> TestDatabase {
        // On a thread of its own: the client's runtime cannot run inside an async test's.
        std::thread::spawn(Self::create)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn create() -> TestDatabase {
        let admin = admin_url();
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}); start it or set \
                 FIELDNOTES_TEST_POSTGRES (`cargo xtask test` starts one)"
            )
        });
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("randomness");
        let name = format!(
            "fieldnotes_test_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the test database");
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Default for TestDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || drop_database(&name)).join();
    }
}

fn drop_database(name: &str) {
    {
        if let Ok(mut client) = postgres::Client::connect(&admin_url(), postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Runs each named test function (taking a `Store`) on SQLite in memory and on a fresh
/// PostgreSQL database, as `on_sqlite::name` and `on_postgres::name`: one implementation of
/// the rules, checked on both backends. `Store` must be in scope where it is used.
#[cfg(test)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test]
            fn $name() {
                super::$name(super::Store::open_in_memory().unwrap());
            })*
        }
        mod on_postgres {
            $(#[test]
            fn $name() {
                let database = crate::test_db::TestDatabase::new();
                super::$name(super::Store::open_postgres(&database.url).unwrap());
            })*
        }
    };
}
#[cfg(test)]
pub(crate) use on_both_backends;
