//! `fieldnotes`: the sync server binary. See `fieldnotes serve --help`.

use clap::Parser;
use fieldnotes_server::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => fieldnotes_server::serve(args).await,
        Command::Admin(args) => {
            if let Err(error) = fieldnotes_server::admin::run(args) {
                eprintln!("fieldnotes admin: {error:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
