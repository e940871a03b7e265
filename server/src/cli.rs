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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}
