//! `cargo xtask`: the project's automation, for what cargo alone cannot do.
//!
//! - `cargo xtask run`: install what is missing, build the web app and run the server on the
//!   embedded database, serving the app at <http://127.0.0.1:3030>.
//! - `cargo xtask test`: install what is missing and run every test: formatting, lints, the
//!   Rust tests (model, engine, server over real sockets), the web build and its size budget,
//!   the npm automerge-repo interop tests and the real-browser journeys.
//! - `cargo xtask web [--dev] [--no-opt]`: only build the web app into `dist/`.
//! - `cargo xtask fuzz <target|all> [--seconds N | --runs N] [--asan] [--fresh]`: run a fuzz
//!   target for a bounded time or number of runs and print executions per second.
//! - `cargo xtask setup [--browser]`: only install what is missing.
//!
//! Every step prints the command it runs, so a failure says where it happened.

mod fuzz;
mod postgres;
mod setup;
mod test;
mod web;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, flags) = match args.split_first() {
        Some((task, flags)) => (task.as_str(), flags),
        None => ("help", &[][..]),
    };
    let has = |flag: &str| flags.iter().any(|f| f == flag);
    match task {
        "setup" => {
            setup::rust_targets()?;
            setup::web_tools()?;
            setup::fuzz_tools()?;
            if has("--browser") {
                setup::browser()?;
                setup::test_tools()?;
            }
            Ok(())
        }
        "web" => {
            setup::rust_targets()?;
            setup::web_tools()?;
            let options = web::Options {
                release: !has("--dev"),
                optimise: !has("--no-opt"),
            };
            web::build(&options).map(|_| ())
        }
        "run" => run(flags),
        "fuzz" => fuzz::command(flags),
        "test" => test::all(&test::Options {
            skip_browser: has("--no-browser"),
        }),
        "help" | "--help" | "-h" => {
            println!("{}", HELP);
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{HELP}"),
    }
}

const HELP: &str = "\
usage: cargo xtask <task>

tasks:
  run            install what is missing, build the web app, run the server on http://127.0.0.1:3030
  test           install what is missing and run every test (add --no-browser to skip nothing but
                 the browser journeys while iterating; CI never passes it)
  web [--dev] [--no-opt]
                 build the web app into dist/ and print its size budget
  fuzz <frame_codec|hub_session|model_reader|all> [--seconds N | --runs N] [--asan] [--fresh]
                 run a coverage-guided fuzz target (default 60 s, no sanitizer) and print its
                 executions, time and exec/s; a crash is kept in fuzz/artifacts/<target>/;
                 --fresh starts from the seeds and regressions only, as `test` does
  setup [--browser]
                 install the rust wasm target, the standard library's source, cargo-fuzz and
                 npm build tools (and chromium and test tools)";

fn run(flags: &[String]) -> Result<()> {
    setup::rust_targets()?;
    setup::web_tools()?;
    web::build(&web::Options {
        release: true,
        optimise: true,
    })?;
    let root = project_root();
    let mut command = Command::new(cargo());
    command
        .current_dir(&root)
        .args(["run", "--release", "-p", "fieldnotes-server", "--", "serve"])
        .arg("--web-dir")
        .arg(root.join("dist"))
        .args(flags);
    run_command(&mut command)
}

/// The workspace root: the parent of this crate's folder.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one folder below the workspace root")
        .to_path_buf()
}

/// The cargo that runs this task, so nested builds use the same toolchain.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Gives a cargo command exactly these compiler flags. Plain `RUSTFLAGS`, so the logged command
/// can be pasted into a shell; the encoded form would take precedence over it, so it is cleared.
pub fn set_rustflags<'c>(command: &'c mut Command, flags: &[&str]) -> &'c mut Command {
    command
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", flags.join(" "))
}

/// Runs a command to completion, echoing it first; a non-zero exit is an error that names it.
pub fn run_command(command: &mut Command) -> Result<()> {
    eprintln!("$ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("could not start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", describe(command));
    }
    Ok(())
}

/// Whether a program can be found on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The command as a shell line, with the environment it sets, so a logged build can be rerun.
fn describe(command: &Command) -> String {
    let mut text = String::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            let value = value.to_string_lossy();
            if value.contains(' ') {
                text.push_str(&format!("{}='{value}' ", key.to_string_lossy()));
            } else {
                text.push_str(&format!("{}={value} ", key.to_string_lossy()));
            }
        }
    }
    text.push_str(&command.get_program().to_string_lossy());
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}
