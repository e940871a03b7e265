//! Harness: find (building if needed) and spawn the real server binary, wait for its
//! `listening on http://127.0.0.1:PORT` line, and kill it on drop. `Server::start` also signs a
//! default user in (docs/auth.md): a team and a user made with `fieldnotes admin` on the data dir,
//! and a Bearer token that `Server::sync()` sends on every WebSocket upgrade.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::auth::{Admin, Team, User};
use super::raw::Endpoint;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The server binary: `$FIELDNOTES_BIN` if set (must exist), else `target/debug/fieldnotes`, built
/// first with `cargo build -p fieldnotes-server` (a no-op when up to date) so a test never runs a
/// stale binary. Panics loudly if it cannot be had: these tests never pass by skipping.
pub fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("FIELDNOTES_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "FIELDNOTES_BIN={} does not exist", p.display());
            return p;
        }
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut child = Command::new(&cargo)
            .args(["build", "-p", "fieldnotes-server", "--bin", "fieldnotes"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{cargo} build -p fieldnotes-server`: {e}"));
        // the shared target dir may be locked by other builds: generous but bounded
        let deadline = Instant::now() + Duration::from_secs(20 * 60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for cargo build") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("`cargo build -p fieldnotes-server` did not finish within 20 minutes");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(status.success(), "`cargo build -p fieldnotes-server` failed ({status}); the e2e tests need the server binary");
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug").join("fieldnotes");
        assert!(bin.is_file(), "server binary missing at {} after a successful build", bin.display());
        bin
    })
    .clone()
}

/// A running server process. Killed (SIGKILL) and reaped on drop.
pub struct Server {
    child: Child,
    bin: PathBuf,
    pub port: u16,
    pub data_dir: PathBuf,
    log: tempfile::NamedTempFile,
    /// Lines printed on stdout after the listening line (the first-run `setup: …` line).
    stdout_lines: Arc<Mutex<Vec<String>>>,
    /// The signed-in default user (`Server::start` only): its team and its Bearer token.
    pub default: Option<(Team, User)>,
}

/// The default team and user of each data dir, made once per test process: a restart on the same
/// data dir keeps using them (the token lives in the database).
fn default_account(admin: &Admin) -> (Team, User) {
    static MADE: OnceLock<Mutex<HashMap<PathBuf, (Team, User)>>> = OnceLock::new();
    let key = admin
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| admin.data_dir.clone());
    let mut made = MADE.get_or_init(Default::default).lock().unwrap();
    made.entry(key)
        .or_insert_with(|| {
            let (team, mut users) =
                admin.team_with_users("E2E", &[("e2e@example.com", "E2E Rep", "rep")]);
            (team, users.remove(0))
        })
        .clone()
}

impl Server {
    /// Start our server on an ephemeral 127.0.0.1 port with the given data dir, with a default
    /// team ("E2E") and user made through `fieldnotes admin` (the same ones again after a restart
    /// on the same data dir); `sync()` connects as that user.
    ///
    /// With `FIELDNOTES_BIN` pointing at `tests/node/reference-server-as-bin.sh` (checking the
    /// tests themselves against the reference server, which has no sign-in and no admin command)
    /// no user is made and `sync()` connects without credentials.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with_flags(data_dir, &[])
    }

    /// [`Server::start`] with more `fieldnotes serve` flags (limits, say).
    pub fn start_with_flags(data_dir: &Path, flags: &[&str]) -> Server {
        let bin = server_bin();
        let mut server = Server::start_program(&bin, data_dir, flags);
        if !is_reference(&bin) {
            server.default = Some(default_account(&server.admin()));
        }
        server
    }

    /// Our server on `data_dir` without making the default account: for a data dir that holds
    /// a deployment already (a restored backup, a migrated database), whose users and tokens
    /// the test brings. `sync()` connects without credentials; use `sync_as`.
    pub fn start_existing(data_dir: &Path) -> Server {
        Server::start_program(&server_bin(), data_dir, &[])
    }

    /// Start another program with our server's command line (the reference JS server through
    /// `tests/node/reference-server-as-bin.sh`).
    pub fn start_with(bin: &Path, data_dir: &Path) -> Server {
        Server::start_program(bin, data_dir, &[])
    }

    fn start_program(bin: &Path, data_dir: &Path, flags: &[&str]) -> Server {
        let bin = bin.to_path_buf();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut command = Command::new(&bin);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        // the reference server keeps its files in the data dir whatever the backend
        if !is_reference(&bin) {
            super::backend::configure(&mut command, data_dir);
        }
        let mut child = command
            .args(flags)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout_lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let r = reader.read_line(&mut first).map(|_| first);
            let _ = tx.send(r);
            // keep draining so the server never blocks on a full pipe; keep the first lines
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                let mut kept = lines.lock().unwrap();
                if kept.len() < 100 {
                    kept.push(line.trim_end().to_string());
                }
                line.clear();
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading the server's stdout failed: {e}"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not print its listening line within 30 s; stderr:\n{}",
                    read_tail(log.path())
                );
            }
        };
        let port = line
            .trim_end()
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "expected exactly `listening on http://127.0.0.1:PORT` as the first stdout line, got {line:?}; stderr:\n{}",
                    read_tail(log.path())
                )
            });
        Server {
            child,
            bin,
            port,
            data_dir: data_dir.to_path_buf(),
            log,
            stdout_lines,
            default: None,
        }
    }

    /// The plain `/sync` URL (no credentials: the reference server, or refusal tests).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/sync", self.port)
    }

    /// `/sync` as the default user (Bearer token, the user's first team); anonymous when the
    /// server was started without one (`start_with`).
    pub fn sync(&self) -> Endpoint {
        let ep = Endpoint::anonymous(&self.ws_url());
        match &self.default {
            Some((_, user)) => ep.bearer(&user.token),
            None => ep,
        }
    }

    /// `/sync` with this Bearer token.
    pub fn sync_as(&self, token: &str) -> Endpoint {
        Endpoint::anonymous(&self.ws_url()).bearer(token)
    }

    /// This server's PostgreSQL database (`FIELDNOTES_TEST_BACKEND=postgres`), `None` on SQLite.
    pub fn database_url(&self) -> Option<String> {
        super::backend::database_url(&self.data_dir)
    }

    /// `fieldnotes admin` on this server's data dir (and its database).
    pub fn admin(&self) -> Admin {
        Admin::new(&self.bin, &self.data_dir)
    }

    /// The default user (panics when the server was started without one).
    pub fn default_user(&self) -> &User {
        &self
            .default
            .as_ref()
            .expect("Server::start makes a default user")
            .1
    }

    /// The default user's team.
    pub fn default_team(&self) -> &Team {
        &self
            .default
            .as_ref()
            .expect("Server::start makes a default user")
            .0
    }

    /// Stdout lines printed after the listening line, so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    /// The `setup: open http://…/#/setup/<token> …` line, waiting at most `wait` for it.
    pub fn setup_line(&self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(l) = self
                .stdout_lines()
                .into_iter()
                .find(|l| l.starts_with("setup: "))
            {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The tail of the server's stderr (its log), for failure messages.
    pub fn stderr_tail(&self) -> String {
        read_tail(self.log.path())
    }

    /// True while the process is running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The reference JS server behind our command line (`tests/node/reference-server-as-bin.sh`):
/// no sign-in, no admin command, no `--database`.
fn is_reference(bin: &Path) -> bool {
    bin.file_name()
        .is_some_and(|n| n == "reference-server-as-bin.sh")
}

fn read_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let start = s.len().saturating_sub(6000);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

/// Minimal HTTP/1.1 GET over a plain TCP socket (only 127.0.0.1): (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
