#!/usr/bin/env node
// Benchmark (not a test): our server (release build) on SQLite and on PostgreSQL vs the reference
// automerge-repo JS server, in one run. For each: fresh data dir (and a fresh database); a real automerge-repo client pushes N account documents of about ten
// changes each through a byte-counting TCP proxy; wait until the server acknowledged all of them;
// then a fresh client pulls them all. Reports push/pull time, server CPU seconds, peak RSS and
// bytes on the wire, and the ratios ours/reference against the targets. On PostgreSQL the CPU of
// the database's own backends serving the instance is printed beside the server's. Prints, never
// asserts.
//
// usage: node bench-vs-reference.mjs [--docs 1000] [--only ours|ours-postgres|reference]
// PostgreSQL: FIELDNOTES_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres).
// env: FIELDNOTES_BIN_RELEASE (default <workspace>/target/release/fieldnotes)
import net from "node:net"
import { startServer, cpuSeconds, peakRssBytes, defaultAuth, freshDataDir, newTestDatabase, psql } from "./lib/server.mjs"
import { connectClient, waitAllAcked, pull, sleep } from "./lib/client.mjs"
import { accountSeed, editHandle, toJSON, ACCOUNT_EDITS } from "./lib/accounts.mjs"
import assert from "node:assert/strict"

function arg(name, dflt) {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : dflt
}
const DOCS = Number(arg("--docs", process.env.BENCH_DOCS || 1000))
const ONLY = arg("--only", null)
const PULL_CONCURRENCY = Number(arg("--pull-concurrency", 32))

/** A TCP proxy on 127.0.0.1 that counts bytes in both directions. */
async function countingProxy(targetPort) {
  const counts = { up: 0, down: 0 }
  const sockets = new Set()
  const server = net.createServer(client => {
    const upstream = net.connect(targetPort, "127.0.0.1")
    sockets.add(client)
    sockets.add(upstream)
    client.on("data", d => {
      counts.up += d.length
      if (!upstream.write(d)) client.pause()
    })
    upstream.on("drain", () => client.resume())
    upstream.on("data", d => {
      counts.down += d.length
      if (!client.write(d)) upstream.pause()
    })
    client.on("drain", () => upstream.resume())
    const done = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on("close", done)
    upstream.on("close", done)
    client.on("error", done)
    upstream.on("error", done)
  })
  await new Promise(r => server.listen(0, "127.0.0.1", r))
  return {
    port: server.address().port,
    counts,
    close() {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}

/** CPU seconds of every PostgreSQL backend serving database `name` now, by pid. */
function backendCpu(name) {
  const pids = psql(`SELECT pid FROM pg_stat_activity WHERE datname = '${name}'`).split("\n").filter(Boolean)
  const cpu = new Map()
  for (const pid of pids) {
    try {
      cpu.set(pid, cpuSeconds(Number(pid)))
    } catch {
      // the backend ended between the query and the read
    }
  }
  return cpu
}

async function runOne(kind) {
  const dataDir = freshDataDir(`fieldnotes-bench-${kind}-`)
  const database = kind === "ours-postgres" ? newTestDatabase(dataDir) : null
  const server = await startServer({ kind: kind === "reference" ? "reference" : "ours", dataDir, release: true })
  // ours needs a session (made by `fieldnotes admin`, a separate process, before the CPU mark)
  const { token } = await defaultAuth(server)
  const proxy = await countingProxy(server.port)
  const wsUrl = `ws://127.0.0.1:${proxy.port}/sync`
  const cpu0 = cpuSeconds(server.pid)
  const backends0 = database ? backendCpu(database.name) : new Map()
  try {
    // push
    const pusher = await connectClient(wsUrl, { peerId: `bench-pusher-${kind}`, token })
    const expected = []
    const t0 = performance.now()
    const handles = []
    for (let i = 0; i < DOCS; i++) {
      const h = pusher.repo.create(accountSeed(i))
      editHandle(h, i)
      handles.push(h)
      if (i % 20 === 19) await new Promise(r => setImmediate(r))
    }
    await waitAllAcked(handles, pusher.serverStorageId, 600_000)
    const pushMs = performance.now() - t0
    const cpuPushed = cpuSeconds(server.pid)
    for (const h of handles) expected.push({ url: h.url, heads: h.heads(), json: toJSON(h.doc()) })
    assert.equal(handles[0].history().length, 1 + ACCOUNT_EDITS)
    await pusher.close({ settleMs: 0 })
    await sleep(200)

    // pull with a fresh, empty client
    const puller = await connectClient(wsUrl, { peerId: `bench-puller-${kind}`, token })
    const t1 = performance.now()
    let next = 0
    const worker = async () => {
      while (next < expected.length) {
        const e = expected[next++]
        const h = await pull(puller.repo, e.url, { expectHeads: e.heads, timeoutMs: 120_000 })
        assert.deepEqual(toJSON(h.doc()), e.json, `content of ${e.url}`)
      }
    }
    await Promise.all(Array.from({ length: PULL_CONCURRENCY }, worker))
    const pullMs = performance.now() - t1
    const cpuPulled = cpuSeconds(server.pid)
    await puller.close()
    await sleep(200)

    let databaseCpuS = null
    if (database) {
      databaseCpuS = 0
      for (const [pid, now] of backendCpu(database.name)) databaseCpuS += now - (backends0.get(pid) ?? 0)
    }
    const result = {
      kind,
      databaseCpuS,
      pushMs,
      pullMs,
      cpuS: cpuSeconds(server.pid) - cpu0,
      cpuPushS: cpuPushed - cpu0,
      cpuPullS: cpuPulled - cpuPushed,
      cpuTotalS: cpuSeconds(server.pid),
      peakRss: peakRssBytes(server.pid),
      bytesUp: proxy.counts.up,
      bytesDown: proxy.counts.down,
    }
    return result
  } finally {
    proxy.close()
    await server.stop()
  }
}

const fmt = (n, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : String(n))
const mib = b => (b / (1 << 20)).toFixed(1) + " MiB"

const kinds = ONLY ? [ONLY] : ["ours", "ours-postgres", "reference"]
const results = {}
for (const k of kinds) {
  process.stderr.write(`running ${k} (${DOCS} documents)...\n`)
  results[k] = await runOne(k)
}

console.log(`\nFieldnotes server (SQLite, PostgreSQL) vs reference automerge-repo server: ${DOCS} account documents x ${1 + ACCOUNT_EDITS} changes\n`)
console.log("| server | push s | pull s | CPU push s | CPU pull s | server CPU s (total incl. startup) | PostgreSQL backends CPU s | peak RSS | bytes up | bytes down | bytes total |")
console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (const r of Object.values(results)) {
  console.log(
    `| ${r.kind} | ${fmt(r.pushMs / 1000)} | ${fmt(r.pullMs / 1000)} | ${fmt(r.cpuPushS)} | ${fmt(r.cpuPullS)} | ${fmt(r.cpuS)} (${fmt(r.cpuTotalS)}) | ${r.databaseCpuS === null ? "-" : fmt(r.databaseCpuS)} | ${mib(r.peakRss)} | ${r.bytesUp} | ${r.bytesDown} | ${r.bytesUp + r.bytesDown} |`,
  )
}
for (const ours of ["ours", "ours-postgres"]) {
  if (!results[ours] || !results.reference) continue
  const o = results[ours]
  const f = results.reference
  const rows = [
    // PostgreSQL's own backends count as our server's work: without them the figure flatters.
    ["CPU for push and pull (with PostgreSQL's backends)", (o.cpuS + (o.databaseCpuS ?? 0)) / f.cpuS, 0.1],
    ["server CPU (incl. startup)", o.cpuTotalS / f.cpuTotalS, null],
    ["peak RSS", o.peakRss / f.peakRss, 0.15],
    ["bytes on the wire", (o.bytesUp + o.bytesDown) / (f.bytesUp + f.bytesDown), 1.0],
    ["push time", o.pushMs / f.pushMs, null],
    ["pull time", o.pullMs / f.pullMs, null],
  ]
  console.log(`\n| ${ours} / reference | ratio | target | met |`)
  console.log("|---|---:|---:|---|")
  for (const [name, ratio, target] of rows) {
    console.log(`| ${name} | ${fmt(ratio, 3)} | ${target === null ? "-" : "<= " + fmt(target, 3)} | ${target === null ? "-" : ratio <= target ? "yes" : "NO"} |`)
  }
}
const absolute = Object.values(results).filter(r => r.kind !== "reference")
if (absolute.length > 0) {
  console.log("\n| figure | " + absolute.map(r => r.kind).join(" | ") + " | target |")
  console.log("|---|" + absolute.map(() => "---:|").join("") + "---:|")
  console.log(`| server CPU while a fresh client pulls ${DOCS} documents, s | ${absolute.map(r => fmt(r.cpuPullS)).join(" | ")} | <= 0.30 |`)
  console.log(`| that pull, wall s | ${absolute.map(r => fmt(r.pullMs / 1000)).join(" | ")} | <= 1.00 |`)
}
