//! The command line: `fieldnotes serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "fieldnotes", version, about = "The Fieldnotes sync server.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the sync WebSocket (/sync), health (/healthz), metrics (/metrics) and the web app.
    Serve(ServeArgs),
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}
