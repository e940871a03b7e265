//! `cargo xtask fuzz`: runs a coverage-guided fuzz target (cargo-fuzz, libFuzzer) for a bounded
//! time or number of runs and prints how many executions it made and how fast.
//!
//! The targets are the cargo-fuzz package in `fuzz/` (its own workspace); their bodies are
//! `crates/fuzz`. Each run reads three corpus folders: `fuzz/corpus/<target>/` (what libFuzzer
//! grows, not kept in git; a fresh empty one in `cargo xtask test`), `fuzz/seeds/<target>/`
//! (real messages and sessions) and `fuzz/regressions/<target>/` (every crash ever found, once
//! fixed). A crash, a timeout or a
//! memory blow-up stops the run with the input written to `fuzz/artifacts/<target>/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, describe, project_root, run_command};

/// The targets, by their `fuzz/fuzz_targets/` file names.
pub const TARGETS: [&str; 3] = ["frame_codec", "hub_session", "model_reader"];

/// An input slower than this is a crash: the slowest seed takes a few milliseconds in the
/// instrumented build, so only a hang or a runaway algorithm gets near it, while a loaded CI
/// machine stays far from a false alarm.
const TIMEOUT_SECONDS: u32 = 10;

/// A run whose memory passes this is a crash (and so is one allocation above it): the targets
/// live in under 100 MB and the hub admits frames of at most 8 MiB, so only a decompression
/// bomb or a quadratic blow-up gets here, while the machine's 24 GiB stay safe for the others
/// sharing it.
const RSS_LIMIT_MB: u32 = 2048;

/// The version of cargo-fuzz `cargo xtask setup` installs.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// How long a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Seconds(u64),
    Runs(u64),
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub bound: Bound,
    /// AddressSanitizer instead of no sanitizer. Off by default: it makes runs two to three
    /// times slower, and these targets are safe Rust over libraries whose unsafe code is small;
    /// turn it on to look for memory errors rather than for panics.
    pub address_sanitizer: bool,
    /// Start from (and add to) `fuzz/corpus/<target>/`, what earlier runs here found. Off for
    /// `cargo xtask test`, which starts from the seeds and regressions alone, in a fresh folder
    /// each time: libFuzzer replays its whole corpus before the time limit applies, so a corpus
    /// grown by long runs would stretch the test run, and differ from one machine to the next.
    pub grow_corpus: bool,
}

/// What one run did, from libFuzzer's closing lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub executions: u64,
    pub seconds: f64,
}

impl Figures {
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.executions as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// `cargo xtask fuzz <target|all> [--seconds N | --runs N] [--asan] [--fresh]`.
pub fn command(flags: &[String]) -> Result<()> {
    let mut targets = Vec::new();
    let mut bound = None;
    let mut address_sanitizer = false;
    let mut grow_corpus = true;
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        let mut number = |name: &str| -> Result<u64> {
            let value = flags
                .next()
                .with_context(|| format!("{name} needs a number"))?;
            value
                .parse()
                .with_context(|| format!("{name} needs a number, not `{value}`"))
        };
        match flag.as_str() {
            "--seconds" => bound = Some(Bound::Seconds(number("--seconds")?)),
            "--runs" => bound = Some(Bound::Runs(number("--runs")?)),
            "--asan" => address_sanitizer = true,
            "--fresh" => grow_corpus = false,
            "all" => targets.extend(TARGETS),
            name if TARGETS.contains(&name) => targets.push(TARGETS[index_of(name)]),
            other => bail!(
                "unknown fuzz target or flag `{other}`; targets: {}, or all",
                TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        bail!("name a fuzz target ({}) or all", TARGETS.join(", "));
    }
    let options = Options {
        bound: bound.unwrap_or(Bound::Seconds(60)),
        address_sanitizer,
        grow_corpus,
    };
    crate::setup::fuzz_tools()?;
    build(&options)?;
    let mut report = Vec::new();
    for target in targets {
        let figures = run(target, &options)?;
        report.push((target, figures));
    }
    for (target, figures) in report {
        println!("{}", summary(target, &figures));
    }
    Ok(())
}

fn index_of(name: &str) -> usize {
    TARGETS
        .iter()
        .position(|t| *t == name)
        .expect("checked to be a target")
}

pub fn summary(target: &str, figures: &Figures) -> String {
    format!(
        "fuzz {target}: {} executions in {:.0} s, {:.0} exec/s",
        figures.executions,
        figures.seconds,
        figures.per_second()
    )
}

fn fuzz_dir() -> PathBuf {
    project_root().join("fuzz")
}

/// `cargo fuzz` with what every build and run of ours shares.
fn cargo_fuzz(subcommand: &str, options: &Options) -> Command {
    let mut command = Command::new(cargo());
    command
        .current_dir(project_root())
        .args(["fuzz", subcommand, "--fuzz-dir"])
        .arg(fuzz_dir())
        .args(["--sanitizer", sanitizer(options)])
        // Overflow checks and debug assertions: an arithmetic overflow in our code or in
        // automerge's is a bug the tests would hit too.
        .arg("--debug-assertions")
        // cargo-fuzz passes nightly-only `-Z` flags; this unlocks them for this build only.
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    command
}

fn sanitizer(options: &Options) -> &'static str {
    if options.address_sanitizer {
        "address"
    } else {
        "none"
    }
}

/// Builds every target once (the runs then start at once).
pub fn build(options: &Options) -> Result<()> {
    run_command(&mut cargo_fuzz("build", options))
}

/// Runs one target within the bound; a crash is an error naming the kept input.
pub fn run(target: &str, options: &Options) -> Result<Figures> {
    let dir = fuzz_dir();
    let corpus = if options.grow_corpus {
        dir.join("corpus").join(target)
    } else {
        let fresh = dir.join("target").join("test-corpus").join(target);
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh)
                .with_context(|| format!("could not empty {}", fresh.display()))?;
        }
        fresh
    };
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("could not create {}", corpus.display()))?;
    let artifacts = dir.join("artifacts").join(target);
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("could not create {}", artifacts.display()))?;

    let mut command = cargo_fuzz("run", options);
    command.arg(target).arg(&corpus);
    for kept in ["seeds", "regressions"] {
        let folder = dir.join(kept).join(target);
        if folder.is_dir() {
            command.arg(folder);
        }
    }
    command.arg("--").args([
        format!("-timeout={TIMEOUT_SECONDS}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!("-artifact_prefix={}/", artifacts.display()),
        "-print_final_stats=1".to_string(),
    ]);
    match options.bound {
        Bound::Seconds(seconds) => command.arg(format!("-max_total_time={seconds}")),
        Bound::Runs(runs) => command.arg(format!("-runs={runs}")),
    };
    eprintln!("$ {}", describe(&command));

    // libFuzzer reports on stderr: pass it through and keep what the summary needs.
    let started = Instant::now();
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", describe(&command)))?;
    let mut output = Output::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading the fuzzer's output")?;
            eprintln!("{line}");
            output.read(&line);
        }
    }
    let status = child.wait().context("waiting for the fuzzer")?;
    let figures = output.figures(started.elapsed().as_secs_f64());
    if !status.success() {
        let kept = output
            .artifact
            .map(|path| format!("; the input is {}", path.display()))
            .unwrap_or_default();
        bail!(
            "fuzz target {target} failed ({status}) after {} executions{kept}. Replay it with \
             `cargo test -p fieldnotes-fuzz --test replay` once it is in fuzz/regressions/{target}/, \
             or `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --sanitizer none {target} <input>`",
            figures.executions
        );
    }
    Ok(figures)
}

/// What is read from libFuzzer's output as it goes by.
#[derive(Debug, Default)]
struct Output {
    /// `Done N runs in S second(s)`.
    done: Option<(u64, f64)>,
    /// `stat::number_of_executed_units: N`.
    executed_units: Option<u64>,
    /// The `#N` of the last status line (`#N\tpulse  cov: … exec/s: E …`).
    last_status: Option<u64>,
    /// `Test unit written to PATH` (a crash, a timeout or an out-of-memory).
    artifact: Option<PathBuf>,
}

impl Output {
    fn read(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("Done ") {
            let mut words = rest.split_whitespace();
            let runs = words.next().and_then(|w| w.parse().ok());
            let seconds = words.nth(2).and_then(|w| w.parse().ok());
            if let (Some(runs), Some(seconds)) = (runs, seconds) {
                self.done = Some((runs, seconds));
            }
        } else if let Some(rest) = line.strip_prefix("stat::number_of_executed_units:") {
            self.executed_units = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix('#') {
            let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(number) = number.parse() {
                self.last_status = Some(number);
            }
        } else if let Some(at) = line.find("Test unit written to ") {
            let path = line[at + "Test unit written to ".len()..].trim();
            self.artifact = Some(Path::new(path).to_path_buf());
        }
    }

    /// libFuzzer's own count and time when it printed them; else the last count it printed
    /// and the wall-clock time of the whole command (build check included).
    fn figures(&self, wall_seconds: f64) -> Figures {
        match self.done {
            Some((executions, seconds)) => Figures {
                executions,
                seconds,
            },
            None => Figures {
                executions: self.executed_units.or(self.last_status).unwrap_or(0),
                seconds: wall_seconds,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &str) -> Output {
        let mut output = Output::default();
        for line in lines.lines() {
            output.read(line);
        }
        output
    }

    #[test]
    fn reads_the_closing_lines_of_a_finished_run() {
        let output = read(
            "#1785077\tREDUCE cov: 1102 ft: 3037 corp: 991/142Kb exec/s: 59502 rss: 42Mb\n\
             #1786858\tDONE   cov: 1102 ft: 3037 corp: 991/142Kb exec/s: 57640 rss: 42Mb\n\
             stat::number_of_executed_units: 1786858\n\
             stat::average_exec_per_sec:     57640\n\
             Done 1786858 runs in 31 second(s)\n",
        );
        let figures = output.figures(99.0);
        assert_eq!(figures.executions, 1_786_858);
        assert_eq!(figures.seconds, 31.0);
        assert_eq!(figures.per_second().round(), 57_641.0);
        assert_eq!(output.artifact, None);
    }

    #[test]
    fn a_crash_names_its_input_and_counts_what_ran() {
        let output = read(
            "#3505\tNEW    cov: 12155 ft: 49607 corp: 592/2859Kb exec/s: 92 rss: 57Mb\n\
             thread '<unnamed>' panicked at src/sync/bloom.rs:74:13:\n\
             ==1234== ERROR: libFuzzer: deadly signal\n\
             artifact_prefix='fuzz/artifacts/hub_session/'; Test unit written to fuzz/artifacts/hub_session/crash-0a1b\n\
             stat::number_of_executed_units: 3560\n",
        );
        let figures = output.figures(40.0);
        assert_eq!(figures.executions, 3560);
        assert_eq!(figures.seconds, 40.0);
        assert_eq!(
            output.artifact.as_deref(),
            Some(Path::new("fuzz/artifacts/hub_session/crash-0a1b"))
        );
    }
}
