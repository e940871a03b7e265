//! A PostgreSQL for the tests: the one on 127.0.0.1:5432 when it answers, otherwise a
//! throwaway server of our own (Debian's `postgresql` package, installed if `initdb` is
//! missing; `initdb` and `pg_ctl start` in a temporary folder on a free port). The tests read
//! its admin URL from `FIELDNOTES_TEST_POSTGRES`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::run_command;

/// Stops the server it started, if any, when dropped.
pub struct Postgres {
    started: Option<(PathBuf, Vec<String>)>,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((dir, prefix)) = &self.started {
            let pg_ctl = tool("pg_ctl").unwrap_or_else(|_| "pg_ctl".into());
            let _ = as_postgres(prefix, &pg_ctl)
                .args([
                    "-D",
                    &dir.join("data").display().to_string(),
                    "-m",
                    "fast",
                    "stop",
                ])
                .status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Makes sure `FIELDNOTES_TEST_POSTGRES` names a reachable server.
pub fn ensure() -> Result<Postgres> {
    if std::env::var_os("FIELDNOTES_TEST_POSTGRES").is_some() {
        return Ok(Postgres { started: None });
    }
    let default = "127.0.0.1:5432".parse().expect("an address");
    if TcpStream::connect_timeout(&default, Duration::from_secs(1)).is_ok() {
        set_url("postgres://postgres@127.0.0.1:5432/postgres");
        return Ok(Postgres { started: None });
    }
    if tool("initdb").is_err() {
        eprintln!("PostgreSQL is not running and not installed; installing Debian's postgresql");
        run_command(Command::new("apt-get").args(["install", "-y", "postgresql"]))?;
    }
    let (initdb, pg_ctl) = (tool("initdb")?, tool("pg_ctl")?);
    let dir = std::env::temp_dir().join(format!("fieldnotes-postgres-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // initdb refuses to run as root: then the server runs as the `postgres` user.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0"));
    let prefix: Vec<String> = if is_root {
        run_command(Command::new("chown").args(["postgres", &dir.display().to_string()]))?;
        ["runuser", "-u", "postgres", "--"]
            .map(String::from)
            .to_vec()
    } else {
        Vec::new()
    };
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let data = dir.join("data").display().to_string();
    run_command(as_postgres(&prefix, &initdb).args([
        "-D",
        &data,
        "-U",
        "postgres",
        "--auth=trust",
    ]))?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1",
        dir.display()
    );
    let log = dir.join("log").display().to_string();
    run_command(
        as_postgres(&prefix, &pg_ctl)
            .args(["-D", &data, "-o", &options, "-l", &log, "-w", "start"]),
    )?;
    eprintln!("started PostgreSQL on 127.0.0.1:{port} for the tests");
    set_url(&format!("postgres://postgres@127.0.0.1:{port}/postgres"));
    Ok(Postgres {
        started: Some((dir, prefix)),
    })
}

fn set_url(url: &str) {
    // SAFETY: xtask is single-threaded here; the variable is read by the test processes it
    // starts afterwards.
    unsafe { std::env::set_var("FIELDNOTES_TEST_POSTGRES", url) };
}

fn as_postgres(prefix: &[String], program: &Path) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A PostgreSQL program: on the PATH, or in Debian's versioned folder.
fn tool(name: &str) -> Result<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join(name).is_file() {
                return Ok(dir.join(name));
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .map(|d| d.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.is_file());
    versions.sort();
    match versions.pop() {
        Some(path) => Ok(path),
        None => bail!("{name} not found: PostgreSQL's programs are missing"),
    }
}
