//! `cargo xtask test`: every check the project has, in the order that fails fastest.

use std::process::Command;
use std::time::Instant;

use anyhow::Result;

use crate::setup::{self, WASM_TARGET};
use crate::{cargo, fuzz, project_root, run_command, set_rustflags, web};

/// How long `cargo xtask test` runs each fuzz target, from the seeds and every kept crash.
/// Long enough to replay them all and to catch a regression near them, short enough that the
/// three add about a minute to a run (the build of the targets adds more; ARCHITECTURE.md,
/// "Testing").
const FUZZ_SECONDS: u64 = 20;

pub struct Options {
    /// Leave out the real-browser journeys (for quick local iterations only).
    pub skip_browser: bool,
}

pub fn all(options: &Options) -> Result<()> {
    let root = project_root();
    setup::rust_targets()?;
    setup::web_tools()?;
    setup::test_tools()?;
    setup::fuzz_tools()?;
    if !options.skip_browser {
        setup::browser()?;
    }

    let cargo_in_root = || {
        let mut command = Command::new(cargo());
        command.current_dir(&root);
        command
    };

    run_command(cargo_in_root().args(["fmt", "--all", "--", "--check"]))?;
    // The cargo-fuzz package is a workspace of its own, which `--all` does not reach.
    run_command(cargo_in_root().args([
        "fmt",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--",
        "--check",
    ]))?;
    run_command(cargo_in_root().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_command(cargo_in_root().args([
        "clippy",
        "-p",
        "fieldnotes-web",
        "--target",
        WASM_TARGET,
        "--",
        "-D",
        "warnings",
    ]))?;

    // The end-to-end tests drive the real server binary, so build it before they run; a browser
    // journey fills a team through the protocol with the `seed` example.
    run_command(cargo_in_root().args([
        "build",
        "-p",
        "fieldnotes-server",
        "--bins",
        "--example",
        "seed",
    ]))?;
    // The server's tests need a PostgreSQL; started here when none answers (stopped at the end).
    let _postgres = crate::postgres::ensure()?;
    // The end-to-end suites (the `tests/` crate and two Node files) run once per storage
    // backend: SQLite here with everything else, PostgreSQL again below, each test server on a
    // database of its own (tests/tests/common/backend.rs, tests/node/lib/server.mjs).
    eprintln!("== workspace tests; end-to-end servers on SQLite ==");
    run_command(
        cargo_in_root()
            .args(["test", "--workspace", "--all-targets"])
            .env("FIELDNOTES_TEST_BACKEND", "sqlite"),
    )?;
    eprintln!("== end-to-end tests (fieldnotes-e2e), servers on PostgreSQL ==");
    let started = Instant::now();
    run_command(
        cargo_in_root()
            .args(["test", "-p", "fieldnotes-e2e"])
            .env("FIELDNOTES_TEST_BACKEND", "postgres"),
    )?;
    eprintln!(
        "end-to-end tests on PostgreSQL passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    run_command(cargo_in_root().args(["test", "--workspace", "--doc"]))?;
    // The browser builds the model and the client engine on automerge's 0.6 line
    // (ARCHITECTURE.md, "Two automerge lines"): run their tests on that line too, including the
    // pinned change hashes that keep both lines writing the same bytes. A target directory of
    // their own keeps the two builds from evicting each other.
    let mut browser_line = cargo_in_root();
    browser_line
        .args(["test", "-p", "fieldnotes-model", "-p", "fieldnotes-sync"])
        .env("CARGO_TARGET_DIR", root.join("target/browser-automerge"));
    run_command(set_rustflags(
        &mut browser_line,
        &["--cfg", "fieldnotes_browser_automerge"],
    ))?;

    let report = web::build(&web::Options {
        release: true,
        optimise: true,
    })?;
    // The build prints the figure; the budget is met, so going over it fails the run. The
    // build is deterministic, so this cannot flake: only a change that adds bytes trips it.
    let first_load = report.first_load_brotli();
    if first_load > web::FIRST_LOAD_BUDGET_BYTES {
        anyhow::bail!(
            "the first load is {first_load} bytes, over the {} byte budget: see ARCHITECTURE.md, \"Size budget\"",
            web::FIRST_LOAD_BUDGET_BYTES
        );
    }

    let mut node = Command::new("node");
    node.current_dir(root.join("tests/node"))
        .env("FIELDNOTES_BIN", root.join("target/debug/fieldnotes"))
        .env("FIELDNOTES_WEB_DIR", root.join("dist"))
        .arg("--test")
        .arg("--test-concurrency=1");
    if options.skip_browser {
        // Name the top-level test files only; the journeys live in tests/node/browser/.
        let mut files: Vec<String> = std::fs::read_dir(root.join("tests/node"))?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".test.mjs"))
            .collect();
        files.sort();
        node.args(files);
    }
    eprintln!("== Node tests, our server on SQLite ==");
    run_command(node.env("FIELDNOTES_TEST_BACKEND", "sqlite"))?;
    // The npm client's interop and the kill -9 durability check again on PostgreSQL, two
    // instances on one database (npm clients, and the two-device browser journeys with a device
    // on each instance), and PostgreSQL itself crashing under a push (files node's default
    // pattern does not pick up, as they cannot run on SQLite). The other browser journeys stay
    // on SQLite: they test the web app, not the store.
    eprintln!("== Node interop, crash and several-instance tests, our server on PostgreSQL ==");
    let started = Instant::now();
    run_command(
        Command::new("node")
            .current_dir(root.join("tests/node"))
            .env("FIELDNOTES_BIN", root.join("target/debug/fieldnotes"))
            .env("FIELDNOTES_WEB_DIR", root.join("dist"))
            .env("FIELDNOTES_TEST_BACKEND", "postgres")
            .args([
                "--test",
                "--test-concurrency=1",
                "interop.test.mjs",
                "crash.test.mjs",
                "instances-on-postgres.mjs",
                "postgres-restart-on-postgres.mjs",
            ])
            .args(if options.skip_browser {
                &[][..]
            } else {
                &["browser/two-instances-on-postgres.mjs"][..]
            }),
    )?;
    eprintln!(
        "Node interop, crash and several-instance tests on PostgreSQL passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // Each fuzz target for a bounded time, from its seeds and its kept crashes: a crash, a
    // timeout or a memory blow-up fails the run and leaves the input in fuzz/artifacts/. Last,
    // and every target even when one crashes, so that a crash (new bugs turn up by chance)
    // does not hide what the other checks and targets say.
    let fuzzing = fuzz::Options {
        bound: fuzz::Bound::Seconds(FUZZ_SECONDS),
        address_sanitizer: false,
        grow_corpus: false,
    };
    fuzz::build(&fuzzing)?;
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    for target in fuzz::TARGETS {
        match fuzz::run(target, &fuzzing) {
            Ok(run) => figures.push(fuzz::summary(target, &run)),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    for line in figures {
        println!("{line}");
    }
    if !failures.is_empty() {
        anyhow::bail!("fuzzing failed:\n{}", failures.join("\n"));
    }
    println!("all checks passed");
    Ok(())
}
