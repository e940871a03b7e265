//! `fieldnotes`: the sync server binary. See `fieldnotes serve --help`.

use clap::Parser;
use fieldnotes_server::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => fieldnotes_server::serve(args).await,
        Command::Admin(args) => {
            // On a thread of its own: the PostgreSQL client blocks, which async code must not.
            let result = std::thread::spawn(move || fieldnotes_server::admin::run(args))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if let Err(error) = result {
                eprintln!("fieldnotes admin: {error:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
