#!/usr/bin/env node
// Benchmark (not a test): our server (release build) vs the reference automerge-repo JS server.
// For each: fresh data dir; a real automerge-repo client pushes N account documents of about ten
// changes each through a byte-counting TCP proxy; wait until the server acknowledged all of them;
// then a fresh client pulls them all. Reports push/pull time, server CPU seconds, peak RSS and
// bytes on the wire, and the ratios ours/reference against the targets. Prints, never asserts.
//
// usage: node bench-vs-reference.mjs [--docs 1000] [--only ours|reference]
// env: FIELDNOTES_BIN_RELEASE (default <workspace>/target/release/fieldnotes)
import net from "node:net"
import { startServer, cpuSeconds, peakRssBytes, defaultAuth } from "./lib/server.mjs"
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

async function runOne(kind) {
  const server = await startServer({ kind, release: true })
  // ours needs a session (made by `fieldnotes admin`, a separate process, before the CPU mark)
  const { token } = await defaultAuth(server)
  const proxy = await countingProxy(server.port)
  const wsUrl = `ws://127.0.0.1:${proxy.port}/sync`
  const cpu0 = cpuSeconds(server.pid)
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
    await puller.close()
    await sleep(200)

    const result = {
      kind,
      pushMs,
      pullMs,
      cpuS: cpuSeconds(server.pid) - cpu0,
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

const kinds = ONLY ? [ONLY] : ["ours", "reference"]
const results = {}
for (const k of kinds) {
  process.stderr.write(`running ${k} (${DOCS} documents)...\n`)
  results[k] = await runOne(k)
}

console.log(`\nFieldnotes server vs reference automerge-repo server: ${DOCS} account documents x ${1 + ACCOUNT_EDITS} changes\n`)
console.log("| server | push s | pull s | server CPU s (total incl. startup) | peak RSS | bytes up | bytes down | bytes total |")
console.log("|---|---:|---:|---:|---:|---:|---:|---:|")
for (const r of Object.values(results)) {
  console.log(
    `| ${r.kind} | ${fmt(r.pushMs / 1000)} | ${fmt(r.pullMs / 1000)} | ${fmt(r.cpuS)} (${fmt(r.cpuTotalS)}) | ${mib(r.peakRss)} | ${r.bytesUp} | ${r.bytesDown} | ${r.bytesUp + r.bytesDown} |`,
  )
}
if (results.ours && results.reference) {
  const o = results.ours
  const f = results.reference
  const rows = [
    ["server CPU (incl. startup)", o.cpuTotalS / f.cpuTotalS, 1 / 5],
    ["peak RSS", o.peakRss / f.peakRss, 1 / 4],
    ["bytes on the wire", (o.bytesUp + o.bytesDown) / (f.bytesUp + f.bytesDown), 1.0],
    ["push time", o.pushMs / f.pushMs, null],
    ["pull time", o.pullMs / f.pullMs, null],
  ]
  console.log("\n| ours / reference | ratio | target | met |")
  console.log("|---|---:|---:|---|")
  for (const [name, ratio, target] of rows) {
    console.log(`| ${name} | ${fmt(ratio, 3)} | ${target === null ? "-" : "<= " + fmt(target, 3)} | ${target === null ? "-" : ratio <= target ? "yes" : "NO"} |`)
  }
}
