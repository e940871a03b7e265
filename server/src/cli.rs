//! The command line: `fieldnotes serve` and `fieldnotes admin …`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::auth::Role;

#[derive(Debug, Parser)]
#[command(name = "fieldnotes", version, about = "The Fieldnotes sync server.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the sync WebSocket (/sync), sign-in (/api), health (/healthz), metrics (/metrics) and the web app.
    Serve(ServeArgs),
    /// Manage teams, users, invitations and tokens in the database (also while the server runs).
    Admin(AdminArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The server's data directory (holds fieldnotes.sqlite3).
    #[arg(long, env = "FIELDNOTES_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The database: a `postgres://user@host:port/db` URL for PostgreSQL (several instances
    /// may share it), or `sqlite:PATH`. Without it, the SQLite file in the data directory.
    #[arg(long, env = "FIELDNOTES_DATABASE")]
    pub database: Option<String>,

    /// The address reps open, used in invitation links.
    #[arg(
        long,
        env = "FIELDNOTES_PUBLIC_URL",
        default_value = "http://127.0.0.1:3030"
    )]
    pub public_url: String,

    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Teams: create, list.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Users: create, list, add to a team, reset a password, disable, enable.
    #[command(subcommand)]
    User(UserCommand),
    /// Print an invitation link that lets someone create their account in a team.
    Invite {
        /// Team id or name.
        #[arg(long)]
        team: String,
        #[arg(long, value_enum, default_value_t = Role::Rep)]
        role: Role,
        /// Only this email may use the link.
        #[arg(long)]
        email: Option<String>,
        /// Days the link stays valid.
        #[arg(long, default_value_t = 7)]
        days: u64,
    },
    /// Bearer tokens for clients other than the web app (scripts, the npm automerge-repo client).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Sessions: revoke.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Give every stored document without an owning team (stored before sign-in existed) to a team.
    Adopt {
        /// Team id or name.
        #[arg(long)]
        team: String,
    },
    /// Copy a running SQLite deployment into FILE, consistently (SQLite's online backup).
    #[command(after_help = BACKUP_HELP)]
    Backup {
        /// The file to write (refused if it exists, unless --force).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Write a team's accounts, notes, follow-ups, goals and contacts as CSV files for a
    /// spreadsheet, or as one JSON file (docs/export.md).
    Export {
        /// Team id or name.
        #[arg(long)]
        team: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// The folder to write into (made if missing; files of the same names are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Copy everything from one database to another (documents, users with their password
    /// hashes, sessions, owners, sync states); safe to run again.
    Migrate {
        /// `sqlite:PATH` (or a path) or a `postgres://` URL.
        #[arg(long)]
        from: String,
        /// `postgres://` URL (or `sqlite:PATH`).
        #[arg(long)]
        to: String,
    },
}

/// `fieldnotes admin backup --help`, after the options.
const BACKUP_HELP: &str = "\
The backup runs beside `fieldnotes serve` (also while reps sync): it copies one consistent
snapshot of the database in the data directory (or --database sqlite:PATH) into a temporary
file next to FILE, checks it, and renames it to FILE only when it is complete. It prints its
size and how many documents, users and teams it holds.

To restore a backup:
  1. stop `fieldnotes serve`;
  2. in its data directory, delete fieldnotes.sqlite3-wal and fieldnotes.sqlite3-shm if they
     are there (they belong to the old database), and put the backup in place as
     fieldnotes.sqlite3, e.g. `cp FILE DATA_DIR/fieldnotes.sqlite3`;
  3. start `fieldnotes serve --data-dir DATA_DIR` again.

On PostgreSQL (--database postgres://...) this command refuses; use pg_dump instead:
  pg_dump --format=custom --file=fieldnotes.dump 'postgres://USER@HOST:5432/DB'
and restore into an empty database with:
  pg_restore --dbname='postgres://USER@HOST:5432/DB' fieldnotes.dump";

/// What `admin export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// accounts.csv, notes.csv, follow_ups.csv, goals.csv, contacts.csv.
    Csv,
    /// team.json.
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TeamCommand {
    /// Create a team; prints its id.
    Create { name: String },
    /// List teams: id, name, members.
    List,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Create a user in a team. Prints the password when it is generated.
    Create {
        #[arg(long)]
        email: String,
        /// The name shown on their notes.
        #[arg(long)]
        name: String,
        /// Team id or name.
        #[arg(long)]
        team: String,
        #[arg(long, value_enum, default_value_t = Role::Rep)]
        role: Role,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users: email, name, teams and roles, admin, disabled.
    List,
    /// Add a user to a team, or change their role in it.
    AddToTeam {
        #[arg(long)]
        email: String,
        #[arg(long)]
        team: String,
        #[arg(long, value_enum, default_value_t = Role::Rep)]
        role: Role,
    },
    /// Take a user out of a team: their open connections to it close within seconds and its
    /// documents are refused to them from then on. Their other teams are untouched.
    RemoveFromTeam {
        #[arg(long)]
        email: String,
        #[arg(long)]
        team: String,
    },
    /// Set a new password and sign the user out everywhere. Prints the password when generated.
    ResetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Stop a user from signing in, and sign them out everywhere.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Let a disabled user sign in again.
    Enable {
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Print a new Bearer token for a user (only the token goes to stdout).
    Create {
        #[arg(long)]
        email: String,
        /// Days the token stays valid (0 makes one that is already expired, for tests).
        #[arg(long, default_value_t = 90)]
        days: u64,
        /// What the token is for, kept with it.
        #[arg(long)]
        label: Option<String>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum SessionCommand {
    /// End every session and token of a user; open connections close within 10 seconds.
    Revoke {
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the chosen address is
    /// printed to stdout as `listening on http://ADDR`.
    #[arg(long, env = "FIELDNOTES_LISTEN", default_value = "127.0.0.1:3030")]
    pub listen: SocketAddr,

    /// Directory for the SQLite database (created if missing). Back it up; it
    /// holds every document.
    #[arg(long, env = "FIELDNOTES_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The database: a `postgres://user@host:port/db` URL for PostgreSQL (several instances
    /// may share it), or `sqlite:PATH`. Without it, the SQLite file in the data directory.
    #[arg(long, env = "FIELDNOTES_DATABASE")]
    pub database: Option<String>,

    /// Directory of the built web app, served at / when it exists. `.br` and
    /// `.gz` siblings are served to browsers that accept them.
    #[arg(long, env = "FIELDNOTES_WEB_DIR", default_value = "./dist")]
    pub web_dir: PathBuf,

    /// Log format on stderr: `human` for people, `json` for log collectors.
    /// Filter with RUST_LOG (default `info`).
    #[arg(long, env = "FIELDNOTES_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Mark the session cookie Secure. Set it when reps reach the server over
    /// HTTPS (requests with `X-Forwarded-Proto: https` get it anyway).
    #[arg(long, env = "FIELDNOTES_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// The address reps open, used in the first-run setup link (default: the
    /// listening address).
    #[arg(long, env = "FIELDNOTES_PUBLIC_URL")]
    pub public_url: Option<String>,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What one client may cost the server. The defaults are far above what a phone needs (a new
/// device downloading 10,000 accounts included); each hit is counted in `/metrics` as
/// `fieldnotes_limit_hits_total{limit="…"}`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Limits per client")]
pub struct LimitArgs {
    /// Open sync sockets one user may have at once; more are refused with 429.
    #[arg(long, env = "FIELDNOTES_MAX_SOCKETS_PER_USER", default_value_t = 32)]
    pub max_sockets_per_user: usize,

    /// Frames one socket may send per second (twice as many in a burst). A faster client is
    /// not cut off: the server reads from it more slowly.
    #[arg(long, env = "FIELDNOTES_MAX_FRAMES_PER_SECOND", default_value_t = 2000)]
    pub max_frames_per_second: u32,

    /// Bytes one socket may send per second (twice as many in a burst), paced like frames.
    #[arg(long, env = "FIELDNOTES_MAX_BYTES_PER_SECOND", default_value_t = 16 * 1024 * 1024)]
    pub max_bytes_per_second: u64,

    /// Bytes the server may hold for a socket that does not read what it is sent; beyond
    /// that the socket is closed (code 1013, "too slow") and the client reconnects.
    #[arg(long, env = "FIELDNOTES_MAX_OUTGOING_QUEUE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_outgoing_queue_bytes: usize,

    /// Documents one socket may have open at once.
    #[arg(long, env = "FIELDNOTES_MAX_OPEN_DOCUMENTS", default_value_t = fieldnotes_sync::hub::DEFAULT_MAX_OPEN_DOCUMENTS_PER_CONNECTION)]
    pub max_open_documents: usize,

    /// Bytes in one ephemeral (presence) message; a larger one closes the socket.
    #[arg(long, env = "FIELDNOTES_MAX_EPHEMERAL_BYTES", default_value_t = fieldnotes_sync::hub::DEFAULT_MAX_EPHEMERAL_BYTES)]
    pub max_ephemeral_bytes: usize,

    /// Ephemeral messages one socket may send per second (twice as many in a burst); more
    /// are dropped.
    #[arg(long, env = "FIELDNOTES_MAX_EPHEMERAL_PER_SECOND", default_value_t = fieldnotes_sync::hub::DEFAULT_EPHEMERAL_PER_SECOND)]
    pub max_ephemeral_per_second: u32,

    /// Seconds an HTTP client has to send a request's headers, from connecting or from the
    /// end of its previous request; idle keep-alive connections close after it too.
    #[arg(
        long = "header-read-timeout",
        env = "FIELDNOTES_HEADER_READ_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub header_read_timeout_secs: u64,

    /// Seconds a sync socket may go without answering the server's pings before it is closed.
    #[arg(
        long = "idle-timeout",
        env = "FIELDNOTES_IDLE_TIMEOUT",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub idle_timeout_secs: u64,

    /// Password hashes (sign-in, setup, invitations) computed at once; each takes 19 MiB and
    /// a core for a moment. Others wait up to 10 s, then are asked to try again (503).
    /// Default: the number of cores.
    #[arg(long, env = "FIELDNOTES_MAX_CONCURRENT_PASSWORD_HASHES")]
    pub max_concurrent_password_hashes: Option<usize>,
}

impl LimitArgs {
    pub fn limits(&self) -> crate::limits::Limits {
        let defaults = crate::limits::Limits::default();
        crate::limits::Limits {
            sockets_per_user: self.max_sockets_per_user.max(1),
            frames_per_second: self.max_frames_per_second.max(1),
            bytes_per_second: self.max_bytes_per_second.max(1),
            outgoing_queue_bytes: self.max_outgoing_queue_bytes,
            open_documents_per_connection: self.max_open_documents.max(1),
            ephemeral_bytes: self.max_ephemeral_bytes,
            ephemeral_per_second: self.max_ephemeral_per_second,
            header_read_timeout: std::time::Duration::from_secs(
                self.header_read_timeout_secs.max(1),
            ),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs.max(2)),
            concurrent_password_hashes: self
                .max_concurrent_password_hashes
                .unwrap_or(defaults.concurrent_password_hashes)
                .max(1),
            password_hash_wait: defaults.password_hash_wait,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}
