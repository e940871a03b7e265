//! `fieldnotes admin backup --to FILE`: a consistent copy of a SQLite deployment, taken while
//! `fieldnotes serve` keeps running on it.
//!
//! The copy goes through SQLite's online backup API, never a file copy (a copy of the file
//! alone misses what is still in the `-wal` file, and one taken mid-write can be torn). The
//! source connection holds one read transaction for the whole backup, so every page comes from
//! the same snapshot: the copy is the database as it was when the backup began, and in WAL mode
//! that reader never blocks the server's writes. (Without it, each step would read the latest
//! state and SQLite would restart the backup whenever the server committed, which under steady
//! syncing could be forever.) Pages are copied [`PAGES_PER_STEP`] at a time with a short pause
//! between steps, so a large backup shares the disk with the server.
//!
//! The copy is written to a temporary file beside `FILE` and renamed into place only once it is
//! complete, checked and on disk: a crash leaves at most a `.FILE.partial-PID` file, never a half
//! backup under the final name. An existing `FILE` is replaced only with `--force`.
//!
//! PostgreSQL deployments are refused: `pg_dump` is the tool for them ([`pg_dump_hint`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// Pages per backup step (4 MiB at SQLite's default 4 KiB page size).
pub const PAGES_PER_STEP: i32 = 1024;

/// The pause between steps, and the wait before retrying a step the database was busy for.
const PAUSE: Duration = Duration::from_millis(5);

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub source: PathBuf,
    pub file: PathBuf,
    pub bytes: u64,
    pub documents: u64,
    pub users: u64,
    pub teams: u64,
}

impl Report {
    /// The report in plain words, with how to restore the backup over `source`.
    pub fn describe(&self) -> String {
        let source = self.source.display();
        format!(
            "backed up {source} to {}: {} ({} bytes), {} document(s), {} user(s), {} team(s)\n\
             To restore it: stop `fieldnotes serve`, delete {source}-wal and {source}-shm if \
             they are there, copy {} to {source}, and start the server again.",
            self.file.display(),
            human_size(self.bytes),
            self.bytes,
            self.documents,
            self.users,
            self.teams,
            self.file.display(),
        )
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// The refusal for a PostgreSQL deployment, with the `pg_dump` command that backs it up into
/// `to` and the `pg_restore` one that brings it back. A password in `url` is not repeated: the
/// commands then read it from `PGPASSWORD`.
pub fn pg_dump_hint(url: &str, to: &Path) -> String {
    let shown = crate::storage::Database::Postgres(url.to_string()).describe();
    let (url, password) = match shown.find(":***@") {
        Some(at) => (format!("{}{}", &shown[..at], &shown[at + 4..]), true),
        None => (shown, false),
    };
    format!(
        "`fieldnotes admin backup` copies SQLite deployments only; this one is on PostgreSQL \
         ({url}), so back it up with pg_dump{}:\n    \
         pg_dump --format=custom --file={file} '{url}'\n\
         and restore it into an empty database with:\n    \
         pg_restore --dbname='{url}' {file}",
        if password {
            " (with the password in PGPASSWORD)"
        } else {
            ""
        },
        file = to.display(),
    )
}

/// Copies the SQLite database at `source` into `to` (see the module doc).
pub fn backup(source: &Path, to: &Path, force: bool) -> anyhow::Result<Report> {
    if !source.is_file() {
        anyhow::bail!("there is no database at {}", source.display());
    }
    if to.is_dir() {
        anyhow::bail!(
            "{} is a directory; give the backup a file name",
            to.display()
        );
    }
    if to.exists() {
        if same_file(source, to) {
            anyhow::bail!(
                "{} is the live database itself; back it up to another file",
                to.display()
            );
        }
        if !force {
            anyhow::bail!(
                "{} already exists; nothing was written (pass --force to replace it)",
                to.display()
            );
        }
    }
    let name = to
        .file_name()
        .with_context(|| format!("{} is not a file name", to.display()))?;
    let directory = match to.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !directory.is_dir() {
        anyhow::bail!("the directory {} does not exist", directory.display());
    }
    let partial = directory.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = copy_into(source, &partial).and_then(|(documents, users, teams)| {
        let bytes = std::fs::metadata(&partial)?.len();
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, to)
            .with_context(|| format!("cannot move the backup into place at {}", to.display()))?;
        // The rename itself is on disk once the directory is.
        if let Ok(dir) = std::fs::File::open(&directory) {
            let _ = dir.sync_all();
        }
        Ok(Report {
            source: source.to_path_buf(),
            file: to.to_path_buf(),
            bytes,
            documents,
            users,
            teams,
        })
    });
    if result.is_err() {
        for leftover in [
            partial.clone(),
            PathBuf::from(format!("{}-journal", partial.display())),
            PathBuf::from(format!("{}-wal", partial.display())),
            PathBuf::from(format!("{}-shm", partial.display())),
        ] {
            let _ = std::fs::remove_file(leftover);
        }
    }
    result
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// The backup itself: `source`'s snapshot into the new file `partial`, then the copy checked.
/// Returns the copy's documents, users and teams.
fn copy_into(source: &Path, partial: &Path) -> anyhow::Result<(u64, u64, u64)> {
    // Read-write (a WAL reader may need to write the -shm index) but never created: a mistyped
    // data directory is an error, not an empty backup.
    let from = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the database {}", source.display()))?;
    from.busy_timeout(Duration::from_secs(10))?;
    // One snapshot for every step: a deferred BEGIN takes it at its first read.
    from.execute_batch("BEGIN")?;
    from.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .context("cannot read the database")?;
    let _ = std::fs::remove_file(partial);
    let mut to = Connection::open(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    {
        let backup = Backup::new(&from, &mut to)?;
        loop {
            match backup.step(PAGES_PER_STEP)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(PAUSE)
                }
                // A future result: retrying the step is what SQLite's own example does.
                _ => std::thread::sleep(PAUSE),
            }
        }
    }
    from.execute_batch("COMMIT")?;
    drop(from);
    let check: String = to.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        anyhow::bail!("the copy failed its check: {check}");
    }
    let count = |sql: &str| -> anyhow::Result<u64> {
        let n: i64 = to
            .query_row(sql, [], |row| row.get(0))
            .with_context(|| format!("the copy cannot answer {sql:?}"))?;
        Ok(n as u64)
    };
    let counts = (
        count("SELECT count(DISTINCT document_id) FROM chunks")?,
        count("SELECT count(*) FROM users")?,
        count("SELECT count(*) FROM teams")?,
    );
    to.close().map_err(|(_, error)| error)?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use fieldnotes_sync::{DocStore, DocumentId};

    use super::*;
    use crate::DATABASE_FILE;
    use crate::storage::Store;

    fn deployment(dir: &Path) -> PathBuf {
        let path = dir.join(DATABASE_FILE);
        let mut store = Store::open(&path).unwrap();
        store
            .append_changes(&DocumentId::from_bytes([1; 16]), b"one")
            .unwrap();
        store.commit().unwrap();
        path
    }

    #[test]
    fn a_backup_is_a_readable_copy_and_an_existing_file_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        let source = deployment(dir.path());
        let to = dir.path().join("backup.sqlite3");
        let report = backup(&source, &to, false).unwrap();
        assert_eq!(report.documents, 1);
        assert!(report.bytes > 0);
        let mut copy = Store::open(&to).unwrap();
        assert_eq!(
            copy.load_chunks(&DocumentId::from_bytes([1; 16])).unwrap(),
            vec![b"one".to_vec()]
        );
        drop(copy);

        std::fs::write(&to, b"keep me").unwrap();
        let refused = backup(&source, &to, false).unwrap_err().to_string();
        assert!(refused.contains("--force"), "{refused}");
        assert_eq!(std::fs::read(&to).unwrap(), b"keep me");
        backup(&source, &to, true).unwrap();
        assert_ne!(std::fs::read(&to).unwrap(), b"keep me");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn the_pg_dump_hint_never_repeats_a_password() {
        let hint = pg_dump_hint(
            "postgres://fieldnotes:secret@db:5432/fieldnotes",
            Path::new("f.dump"),
        );
        assert!(!hint.contains("secret"), "{hint}");
        assert!(
            hint.contains(
                "pg_dump --format=custom --file=f.dump 'postgres://fieldnotes@db:5432/fieldnotes'"
            ),
            "{hint}"
        );
        assert!(hint.contains("PGPASSWORD"), "{hint}");
    }

    #[test]
    fn the_live_database_and_a_missing_one_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = deployment(dir.path());
        let refused = backup(&source, &source, true).unwrap_err().to_string();
        assert!(refused.contains("live database"), "{refused}");
        let missing = dir.path().join("nothing.sqlite3");
        let refused = backup(&missing, &dir.path().join("b"), false)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("no database"), "{refused}");
        assert!(!missing.exists());
    }
}
