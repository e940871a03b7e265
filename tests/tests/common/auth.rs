//! Sign-in and teams (docs/auth.md) from the outside: provisioning through the real
//! `fieldnotes admin` command on the test's data dir, and a tiny HTTP/1.1 client for `/api`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::raw::random_bytes;

/// What one `fieldnotes admin …` run produced.
#[derive(Debug)]
pub struct AdminOutput {
    /// Exit status (-1 when killed by a signal).
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `fieldnotes admin --data-dir DIR …` against one data dir (works while the server runs); with
/// `FIELDNOTES_TEST_BACKEND=postgres` also `--database` with that data dir's database.
#[derive(Clone, Debug)]
pub struct Admin {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
}

/// A team made through the admin command.
#[derive(Clone, Debug)]
pub struct Team {
    pub id: String,
    pub name: String,
}

/// A user made through the admin command, with the password it was given and a Bearer token.
#[derive(Clone, Debug)]
pub struct User {
    pub email: String,
    pub name: String,
    pub password: String,
    pub token: String,
}

/// A password that satisfies the contract (10+ characters) and differs every call.
pub fn random_password() -> String {
    format!("pw-{}", super::cbor::hex(&random_bytes::<12>()))
}

impl Admin {
    pub fn new(bin: &Path, data_dir: &Path) -> Admin {
        Admin {
            bin: bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Run `fieldnotes admin --data-dir DIR [--database URL] <args>` with `stdin` (empty if None); 60 s budget.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> AdminOutput {
        let mut command = Command::new(&self.bin);
        command.arg("admin").arg("--data-dir").arg(&self.data_dir);
        super::backend::configure(&mut command, &self.data_dir);
        let mut child = command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} admin: {e}", self.bin.display()));
        {
            let mut input = child.stdin.take().expect("stdin");
            // a command that does not read stdin may have exited already
            let _ = input.write_all(stdin.unwrap_or("").as_bytes());
        }
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let out_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for fieldnotes admin") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`fieldnotes admin {}` did not finish within 60 s",
                    args.join(" ")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        AdminOutput {
            status: status.code().unwrap_or(-1),
            stdout: out_t.join().unwrap(),
            stderr: err_t.join().unwrap(),
        }
    }

    /// Run and require exit status 0; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(args, stdin);
        assert_eq!(
            o.status,
            0,
            "`fieldnotes admin {}` failed: stderr {:?}, stdout {:?}",
            args.join(" "),
            o.stderr,
            o.stdout
        );
        o.stdout
    }

    /// `team create NAME`: the new team (its id checked to be 32 lowercase hex characters).
    pub fn team_create(&self, name: &str) -> Team {
        let out = self.ok(&["team", "create", name], None);
        let id = out.trim().to_string();
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "`admin team create` must print the team id (32 lowercase hex), printed {out:?}"
        );
        Team {
            id,
            name: name.to_string(),
        }
    }

    /// `user create --email E --name N --team T --role R [--admin] --password-stdin`.
    pub fn user_create(&self, email: &str, name: &str, team: &str, role: &str, password: &str) {
        self.ok(
            &[
                "user",
                "create",
                "--email",
                email,
                "--name",
                name,
                "--team",
                team,
                "--role",
                role,
                "--password-stdin",
            ],
            Some(&format!("{password}\n")),
        );
    }

    /// `user add-to-team --email E --team T --role R`.
    pub fn add_to_team(&self, email: &str, team: &str, role: &str) {
        self.ok(
            &[
                "user",
                "add-to-team",
                "--email",
                email,
                "--team",
                team,
                "--role",
                role,
            ],
            None,
        );
    }

    /// `user remove-from-team --email E --team T`.
    pub fn remove_from_team(&self, email: &str, team: &str) -> AdminOutput {
        self.run(
            &["user", "remove-from-team", "--email", email, "--team", team],
            None,
        )
    }

    /// `token create --email E [--days N]`: the Bearer token, the only thing printed on stdout.
    pub fn token_create(&self, email: &str, days: Option<i64>) -> String {
        let days = days.map(|d| d.to_string());
        let mut args = vec!["token", "create", "--email", email];
        if let Some(d) = &days {
            args.extend(["--days", d.as_str()]);
        }
        let out = self.ok(&args, None);
        let token = out.trim().to_string();
        assert!(
            is_token(&token),
            "`admin token create` must print only a 43-character base64url token, printed {out:?}"
        );
        token
    }

    /// `session revoke --email E`.
    pub fn session_revoke(&self, email: &str) {
        self.ok(&["session", "revoke", "--email", email], None);
    }

    /// `user disable --email E`.
    pub fn user_disable(&self, email: &str) {
        self.ok(&["user", "disable", "--email", email], None);
    }

    /// `user enable --email E`.
    pub fn user_enable(&self, email: &str) {
        self.ok(&["user", "enable", "--email", email], None);
    }

    /// A user in `team` (id or name) with a random password and a fresh Bearer token.
    pub fn user(&self, email: &str, name: &str, team: &str, role: &str) -> User {
        let password = random_password();
        self.user_create(email, name, team, role, &password);
        let token = self.token_create(email, None);
        User {
            email: email.to_string(),
            name: name.to_string(),
            password,
            token,
        }
    }

    /// A team and its users (`(email, name, role)`), each with a password and a token.
    pub fn team_with_users(&self, team: &str, users: &[(&str, &str, &str)]) -> (Team, Vec<User>) {
        let t = self.team_create(team);
        let users = users
            .iter()
            .map(|(email, name, role)| self.user(email, name, &t.id, role))
            .collect();
        (t, users)
    }
}

/// 32 random bytes, base64url without padding: 43 characters of `[A-Za-z0-9_-]`.
pub fn is_token(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {} {:?}",
                self.status, self.body
            )
        })
    }

    /// `name=value` of the `fieldnotes_session` cookie this response sets, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next())
            .map(str::trim)
            .find(|c| c.starts_with("fieldnotes_session="))
            .map(str::to_string)
    }
}

/// A plain HTTP/1.1 request to 127.0.0.1:`port` (`Connection: close`). `body` is sent as JSON.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    } else if matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: write: {e}"));
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .unwrap_or_else(|e| panic!("{method} {path}: read: {e}"));
    parse_response(&buf).unwrap_or_else(|| {
        panic!(
            "{method} {path}: not an HTTP response: {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

fn parse_response(buf: &[u8]) -> Option<HttpResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let raw = &buf[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = raw;
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_line = std::str::from_utf8(&rest[..nl]).ok()?;
            let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        out
    } else {
        raw.to_vec()
    };
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// `POST /api/session {"email","password"}`.
pub fn sign_in(port: u16, email: &str, password: &str) -> HttpResponse {
    let body = serde_json::json!({"email": email, "password": password}).to_string();
    http(port, "POST", "/api/session", &[], Some(&body))
}

/// Sign in and return the `fieldnotes_session=…` cookie; panics unless 200 with a cookie.
pub fn sign_in_cookie(port: u16, email: &str, password: &str) -> String {
    let r = sign_in(port, email, password);
    assert_eq!(r.status, 200, "sign-in of {email}: {} {}", r.status, r.body);
    r.session_cookie().unwrap_or_else(|| {
        panic!(
            "sign-in of {email} set no fieldnotes_session cookie: {:?}",
            r.headers
        )
    })
}
