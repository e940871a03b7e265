//! Benchmark (not a test): many signed-in sockets editing shared documents live, on one
//! instance and spread over two.
//!
//! ```text
//! cargo run --release -p fieldnotes-e2e --example live_sockets -- [--sockets 1000] [--seconds 60]
//!     [--group 5] [--layouts sqlite-1,postgres-1,postgres-2]
//! ```
//!
//! Every socket is our own client engine (`fieldnotes_sync::Client`, the one the web app runs)
//! on a real WebSocket, signed in with a Bearer token; sockets come in groups that share one
//! document. Each socket writes the time into its own key of its group's document once a second
//! (at its own offset in the second) and syncs it; each of the others records how long the value
//! took to reach it. Per layout it prints p50/p99/max of that delay, deliveries against what was
//! owed, errors, and per instance the server's CPU and its RSS at the start, the peak and the end
//! of the run (memory flat over the run), with the generator's own CPU beside them, so a
//! saturated generator shows. The release server binary is built first (or `FIELDNOTES_BIN`).
//! `postgres-*` layouts use a fresh database on the test PostgreSQL
//! (`FIELDNOTES_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/postgres`); the two
//! instances of `postgres-2` share it, and each group has members on both.
//!
//! Bounded: it stops by itself after the run (plus at most 20 s of setup and 5 s of drain per
//! layout), and every socket wait has a timeout.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ROOT, ReadDoc};
use common::auth::Admin;
use common::raw::{Endpoint, Ws, random_bytes, try_connect};
use common::server::Server;
use fieldnotes_sync::{Client, ClientConfig, ClientEvent, DocumentId, PeerId};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Sockets per user: under the server's default of 32 per user.
const SOCKETS_PER_USER: usize = 25;

struct Options {
    sockets: usize,
    seconds: u64,
    group: usize,
    layouts: Vec<String>,
}

fn options() -> Options {
    let mut o = Options {
        sockets: 1000,
        seconds: 60,
        group: 5,
        layouts: vec!["sqlite-1".into(), "postgres-1".into(), "postgres-2".into()],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--sockets" => o.sockets = value().parse().expect("--sockets N"),
            "--seconds" => o.seconds = value().parse().expect("--seconds N"),
            "--group" => o.group = value().parse().expect("--group N"),
            "--layouts" => o.layouts = value().split(',').map(str::to_owned).collect(),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(o.group >= 2, "a group needs two sockets at least");
    o
}

/// The release server binary, built now unless `FIELDNOTES_BIN` names one.
fn release_server() -> PathBuf {
    if let Ok(bin) = std::env::var("FIELDNOTES_BIN") {
        return PathBuf::from(bin);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "fieldnotes-server",
            "--bin",
            "fieldnotes",
        ])
        .current_dir(root)
        .status()
        .expect("cargo build --release -p fieldnotes-server");
    assert!(status.success(), "building the release server failed");
    let bin = root.join("target/release/fieldnotes");
    // SAFETY: set once, before any thread of ours reads the environment.
    unsafe { std::env::set_var("FIELDNOTES_BIN", &bin) };
    bin
}

/// CPU seconds (user + system) and RSS in MiB of a process, from /proc.
fn cpu_and_rss(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command's closing parenthesis: state is field 3, utime 14, stime 15
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu / ticks, rss_kib / 1024.0)
}

/// Microseconds since the run's epoch: what a socket writes and what its peers subtract.
fn micros(epoch: Instant) -> i64 {
    epoch.elapsed().as_micros() as i64
}

/// One socket of the run.
struct Member {
    index: usize,
    /// Its place in its group: the key it writes is `w<slot>`.
    slot: usize,
    group_size: usize,
    document: DocumentId,
    engine: Client,
    docs: HashMap<DocumentId, AutoCommit>,
    ws: Ws,
    /// The last value seen from each slot of the group.
    seen: Vec<i64>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    writes: u64,
    errors: Vec<String>,
}

impl Member {
    async fn connect(
        index: usize,
        slot: usize,
        group_size: usize,
        document: DocumentId,
        start: &[u8],
        endpoint: &Endpoint,
    ) -> Result<Member, String> {
        let ws = try_connect(endpoint)
            .await
            .map_err(|e| format!("socket {index}: {e:?}"))?;
        let mut doc = AutoCommit::load(start).map_err(|e| e.to_string())?;
        doc.set_actor(ActorId::from(random_bytes::<16>().to_vec()));
        let mut member = Member {
            index,
            slot,
            group_size,
            document,
            engine: Client::new(ClientConfig {
                peer_id: PeerId::from(format!("load-{index}")),
                storage_id: None,
                is_ephemeral: true,
                ephemeral_session_id: format!("load-{index}-session"),
            }),
            docs: HashMap::from([(document, doc)]),
            ws,
            seen: vec![0; group_size],
        };
        member.engine.handle_connected();
        member.flush().await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(
            member.engine.connection_state(),
            fieldnotes_sync::ConnectionState::Joined { .. }
        ) {
            if !member
                .receive_one(deadline, &mut Tally::default(), None)
                .await?
            {
                return Err(format!("socket {index}: no `peer` within 20 s"));
            }
        }
        let doc = member.docs.get_mut(&document).unwrap();
        member.engine.sync_document(document, doc);
        member.flush().await?;
        Ok(member)
    }

    async fn flush(&mut self) -> Result<(), String> {
        while let Some(frame) = self.engine.poll_frame() {
            self.ws
                .send(WsMessage::Binary(frame.into()))
                .await
                .map_err(|e| format!("socket {}: send: {e}", self.index))?;
        }
        Ok(())
    }

    /// Handles one frame (or times out at `deadline`); with `epoch`, records what arrived.
    async fn receive_one(
        &mut self,
        deadline: Instant,
        tally: &mut Tally,
        epoch: Option<Instant>,
    ) -> Result<bool, String> {
        let next = tokio::time::timeout_at(deadline.into(), self.ws.next()).await;
        let frame = match next {
            Err(_) => return Ok(false),
            Ok(Some(Ok(WsMessage::Binary(bytes)))) => bytes,
            Ok(Some(Ok(_))) => return Ok(true),
            Ok(other) => return Err(format!("socket {}: {other:?}", self.index)),
        };
        let events = self
            .engine
            .handle_frame(&frame, &mut self.docs)
            .map_err(|e| format!("socket {}: {e}", self.index))?;
        for event in &events {
            match event {
                ClientEvent::ServerError { message } => {
                    tally
                        .errors
                        .push(format!("socket {}: server said {message}", self.index));
                }
                ClientEvent::DocumentChanged { .. } => {
                    if let Some(epoch) = epoch {
                        self.record(epoch, tally);
                    }
                }
                _ => {}
            }
        }
        self.flush().await?;
        Ok(true)
    }

    fn record(&mut self, epoch: Instant, tally: &mut Tally) {
        let now = micros(epoch);
        let doc = &self.docs[&self.document];
        for slot in 0..self.group_size {
            if slot == self.slot {
                continue;
            }
            let value = doc
                .get(ROOT, format!("w{slot}"))
                .ok()
                .flatten()
                .and_then(|(v, _)| v.as_i64());
            if let Some(value) = value
                && value > self.seen[slot]
            {
                self.seen[slot] = value;
                tally
                    .latencies_us
                    .push((now - value).clamp(0, u32::MAX as i64) as u32);
            }
        }
    }

    async fn write(&mut self, epoch: Instant) -> Result<(), String> {
        let doc = self.docs.get_mut(&self.document).unwrap();
        doc.put(ROOT, format!("w{}", self.slot), micros(epoch))
            .map_err(|e| e.to_string())?;
        doc.commit();
        self.engine.sync_document(self.document, doc);
        self.flush().await
    }

    /// Writes once a second at `offset` into each second until `end`, handling what arrives.
    async fn run(mut self, epoch: Instant, offset: Duration, end: Instant) -> (Member, Tally) {
        let mut tally = Tally::default();
        let mut next_write = epoch + offset;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if now >= next_write {
                if let Err(e) = self.write(epoch).await {
                    tally.errors.push(e);
                    break;
                }
                tally.writes += 1;
                next_write += Duration::from_secs(1);
                continue;
            }
            if let Err(e) = self
                .receive_one(next_write.min(end), &mut tally, Some(epoch))
                .await
            {
                tally.errors.push(e);
                break;
            }
        }
        (self, tally)
    }

    /// Keeps handling frames until `end`, so the last writes arrive.
    async fn drain(&mut self, epoch: Instant, end: Instant, tally: &mut Tally) {
        while Instant::now() < end {
            match self.receive_one(end, tally, Some(epoch)).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tally.errors.push(e);
                    break;
                }
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[rank]) / 1000.0
}

fn generator_cpu() -> f64 {
    cpu_and_rss(std::process::id()).0
}

async fn run_layout(layout: &str, o: &Options) {
    let instances: usize = match layout {
        "sqlite-1" | "postgres-1" => 1,
        "postgres-2" => 2,
        other => panic!("unknown layout {other}: sqlite-1, postgres-1 or postgres-2"),
    };
    let database = layout
        .starts_with("postgres")
        .then(common::backend::fresh_database);
    let dirs: Vec<tempfile::TempDir> = (0..instances)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    for dir in &dirs {
        common::backend::pin(dir.path(), database.as_deref());
    }
    let admin = Admin::new(&common::server::server_bin(), dirs[0].path());
    let setup_started = Instant::now();
    let team = admin.team_create("Load");
    let users = o.sockets.div_ceil(SOCKETS_PER_USER);
    let tokens: Vec<String> = (0..users)
        .map(|u| {
            admin
                .user(
                    &format!("load{u}@example.com"),
                    &format!("Rep {u}"),
                    &team.id,
                    "rep",
                )
                .token
        })
        .collect();
    let servers: Vec<Server> = dirs
        .iter()
        .map(|dir| Server::start_existing(dir.path()))
        .collect();
    eprintln!(
        "{layout}: {users} users and {} instance(s) ready in {:.1} s",
        servers.len(),
        setup_started.elapsed().as_secs_f64()
    );

    // Every member of a group starts from the same document, so none waits for another's.
    let groups = o.sockets.div_ceil(o.group);
    let mut starts = Vec::new();
    for g in 0..groups {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "group", g as i64).unwrap();
        doc.commit();
        starts.push((DocumentId::from_bytes(random_bytes()), doc.save()));
    }
    let connect_started = Instant::now();
    let mut members = Vec::with_capacity(o.sockets);
    let mut pending = Vec::new();
    for index in 0..o.sockets {
        let group = index / o.group;
        let slot = index % o.group;
        let group_size = o.group.min(o.sockets - group * o.group);
        // Members of one group alternate between the instances.
        let server = &servers[slot % servers.len()];
        let endpoint = server.sync_as(&tokens[index / SOCKETS_PER_USER]);
        let (document, start) = starts[group].clone();
        pending.push(tokio::spawn(async move {
            Member::connect(index, slot, group_size, document, &start, &endpoint).await
        }));
        // Open sockets a few at a time, as phones would come online.
        if pending.len() == 50 {
            for p in pending.drain(..) {
                members.push(p.await.unwrap());
            }
        }
    }
    for p in pending.drain(..) {
        members.push(p.await.unwrap());
    }
    let mut errors: Vec<String> = members
        .iter()
        .filter_map(|m| m.as_ref().err().cloned())
        .collect();
    let members: Vec<Member> = members.into_iter().filter_map(Result::ok).collect();
    eprintln!(
        "{layout}: {} sockets connected in {:.1} s",
        members.len(),
        connect_started.elapsed().as_secs_f64()
    );
    // Let the first exchanges settle before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pids: Vec<u32> = servers.iter().map(Server::pid).collect();
    let before: Vec<(f64, f64)> = pids.iter().map(|p| cpu_and_rss(*p)).collect();
    let peak: Arc<Vec<AtomicU64>> = Arc::new(pids.iter().map(|_| AtomicU64::new(0)).collect());
    let generator_before = generator_cpu();
    let epoch = Instant::now();
    let end = epoch + Duration::from_secs(o.seconds);
    let sampler = {
        let peak = peak.clone();
        let pids = pids.clone();
        tokio::spawn(async move {
            while Instant::now() < end {
                for (i, pid) in pids.iter().enumerate() {
                    let rss = (cpu_and_rss(*pid).1 * 1024.0) as u64;
                    peak[i].fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for member in members {
        let offset = Duration::from_micros((member.index as u64 * 7_919_311) % 1_000_000);
        let results = results.clone();
        tasks.push(tokio::spawn(async move {
            let (mut member, mut tally) = member.run(epoch, offset, end).await;
            member
                .drain(epoch, end + Duration::from_secs(5), &mut tally)
                .await;
            results.lock().await.push((member.group_size, tally));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    sampler.await.unwrap();
    let generator = generator_cpu() - generator_before;
    let after: Vec<(f64, f64)> = pids.iter().map(|p| cpu_and_rss(*p)).collect();

    let results = std::mem::take(&mut *results.lock().await);
    let mut latencies = Vec::new();
    let mut owed = 0u64;
    for (group_size, tally) in &results {
        owed += tally.writes * (*group_size as u64 - 1);
        latencies.extend_from_slice(&tally.latencies_us);
        errors.extend(tally.errors.iter().cloned());
    }
    latencies.sort_unstable();
    let changes = results.iter().map(|(_, t)| t.writes).sum::<u64>();
    println!(
        "{layout}: {} sockets in groups of {}, {} s: {changes} changes ({:.0}/s), {} of {owed} deliveries; \
         time to reach the other sockets p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 ≤ 100 ms); \
         {} errors; generator CPU {generator:.1} s",
        results.len(),
        o.group,
        o.seconds,
        changes as f64 / o.seconds as f64,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        errors.len(),
    );
    // CPU over the run and its drain (5 s), the span the sockets were busy.
    for i in 0..pids.len() {
        println!(
            "{layout}:   instance {}: CPU {:.1} s ({:.2} cores), RSS {:.0} MiB at the start, {:.0} MiB peak, {:.0} MiB at the end",
            i + 1,
            after[i].0 - before[i].0,
            (after[i].0 - before[i].0) / (o.seconds as f64 + 5.0),
            before[i].1,
            peak[i].load(Ordering::Relaxed) as f64 / 1024.0,
            after[i].1,
        );
    }
    // The same error on many sockets once, with how many had it.
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for e in &errors {
        let kind = e
            .split_once(": ")
            .map_or(e.as_str(), |(_, rest)| rest)
            .to_owned();
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    for (kind, n) in kinds.iter().take(8) {
        println!("{layout}:   error on {n} socket(s): {kind}");
    }
    if !errors.is_empty() {
        for (i, server) in servers.iter().enumerate() {
            println!(
                "{layout}:   instance {} log tail:\n{}",
                i + 1,
                server.stderr_tail()
            );
        }
    }
    drop(servers);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = options();
    let bin = release_server();
    eprintln!("server: {}", bin.display());
    for layout in &o.layouts {
        run_layout(layout, &o).await;
    }
}
