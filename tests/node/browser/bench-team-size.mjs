// Benchmark (prints figures, asserts nothing): a new phone joining teams of 1,000, 2,500 and
// 10,000 accounts, in headless Chromium at 390×844. For each size it prints:
// - how long the new phone takes to reach "All synced", and the server's CPU for it,
// - frames and bytes the server sent per document,
// - the app's WebAssembly memory after the download, and after a reopen,
// - the time to open the app to the list (navigation start to the first frame painted with every
//   account counted, median of reloads) and to search (median of queries),
// - another member's acknowledgement times (p50, p99) while the download runs (the `probe`
//   example, editing every 200 ms).
// Usage: node browser/bench-team-size.mjs   (after `cargo xtask web` and
//        `cargo build -p fieldnotes-server --examples`; SIZES=1000,2500 to choose; the server
//        binary is FIELDNOTES_BIN, a debug build by default)
import { execFileSync, spawn } from "node:child_process"
import path from "node:path"
import { ANN, BOB, Device, startTeamServer } from "./harness.mjs"
import { WORKSPACE_ROOT, cpuSeconds, tokenFor } from "../lib/server.mjs"

const SIZES = (process.env.SIZES || "1000,2500,10000").split(",").map(Number)
const RUNS = Number(process.env.RUNS || 3)
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const examples = path.join(process.env.CARGO_TARGET_DIR || path.join(WORKSPACE_ROOT, "target"), "debug", "examples")

async function metric(url, name) {
  const body = await (await fetch(`${url}/metrics`)).text()
  const line = body.split("\n").find(l => l.startsWith(`${name} `))
  return Number(line?.split(" ")[1] || 0)
}

async function wasmMemoryMiB(page) {
  return page.evaluate(async () => {
    const app = await import(document.querySelector("link[rel=modulepreload]").href)
    return (await app.default()).memory.buffer.byteLength / 2 ** 20
  })
}

async function measure(accounts) {
  const { server, teamId } = await startTeamServer()
  const phone = new Device(`bench-${accounts}`)
  try {
    const seedToken = await tokenFor(server.dataDir, BOB.email, { label: "seed" })
    const seeded = Date.now()
    execFileSync(path.join(examples, "seed"), [server.url.replace("http", "ws") + "/sync", teamId, String(accounts)], {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, FIELDNOTES_TOKEN: seedToken },
    })
    const seedSeconds = (Date.now() - seeded) / 1000

    const page = await phone.open(server.url)
    const cpuBefore = cpuSeconds(server.pid)
    const framesBefore = await metric(server.url, "fieldnotes_messages_out_total")
    const bytesBefore = await metric(server.url, "fieldnotes_bytes_out_total")
    // Another member edits every 200 ms for as long as the download may take.
    const probeToken = await tokenFor(server.dataDir, BOB.email, { label: "probe" })
    let probeOut = ""
    const probe = spawn(path.join(examples, "probe"), [server.url.replace("http", "ws") + "/sync", teamId, "600"], {
      env: { ...process.env, FIELDNOTES_TOKEN: probeToken },
      stdio: ["ignore", "pipe", "inherit"],
    })
    probe.stdout.on("data", d => (probeOut += d))
    const probeDone = new Promise(resolve => probe.once("exit", resolve))

    const started = Date.now()
    await phone.signIn(ANN)
    await phone.waitForSyncStatus(/^All synced/, 1_800_000)
    const download = (Date.now() - started) / 1000
    const cpu = cpuSeconds(server.pid) - cpuBefore
    const frames = (await metric(server.url, "fieldnotes_messages_out_total")) - framesBefore
    const bytes = (await metric(server.url, "fieldnotes_bytes_out_total")) - bytesBefore
    probe.kill("SIGINT")
    const memoryAfterDownload = await wasmMemoryMiB(page)

    // When the full list is painted: the first frame after the count shows every account,
    // in the page's own clock from navigation start (not when the test next looks).
    await page.addInitScript(expected => {
      window.__listPaintedAt = null
      const observer = new MutationObserver(() => {
        const count = document.querySelector("[data-testid=list-count]")
        if (count && count.textContent.includes(expected)) {
          observer.disconnect()
          requestAnimationFrame(() => (window.__listPaintedAt = performance.now()))
        }
      })
      observer.observe(document, { subtree: true, childList: true, characterData: true })
    }, `${accounts} accounts`)
    const opens = []
    let memoryAfterReopen = 0
    for (let i = 0; i < RUNS; i++) {
      await page.reload()
      await page.getByTestId("list-count").filter({ hasText: `${accounts} accounts` }).waitFor({ timeout: 120_000 })
      await page.waitForFunction(() => window.__listPaintedAt !== null)
      opens.push(await page.evaluate(() => window.__listPaintedAt))
      memoryAfterReopen = await wasmMemoryMiB(page)
    }
    const searches = []
    for (const query of ["Crawley", "Plumbing #1", "delivery windows", "zzz-nothing", "Epsom Glass"]) {
      searches.push(await page.evaluate(async q => {
        const frame = () => new Promise(r => requestAnimationFrame(r))
        const input = document.querySelector("input[type=search]")
        const t0 = performance.now()
        input.value = q
        input.dispatchEvent(new InputEvent("input", { bubbles: true }))
        await frame(); await frame()
        const elapsed = performance.now() - t0
        input.value = ""
        input.dispatchEvent(new InputEvent("input", { bubbles: true }))
        await frame(); await frame()
        return elapsed
      }, query))
    }
    await Promise.race([probeDone, new Promise(r => setTimeout(r, 5000))])
    let latency = {}
    try { latency = JSON.parse(probeOut.trim().split("\n").pop()) } catch { latency = { p50_ms: NaN, p99_ms: NaN } }
    return {
      accounts, seedSeconds, download, cpu,
      framesPerDocument: frames / accounts, bytesPerDocument: bytes / accounts,
      memoryAfterDownload, memoryAfterReopen,
      open: median(opens), search: median(searches),
      probe: latency,
    }
  } finally {
    await phone.close().catch(() => {})
    await server.stop()
    phone.cleanup()
  }
}

console.log("accounts | download | server CPU | frames/doc | bytes/doc | wasm MiB after download / after reopen | open list (median) | search (median) | other member's ack p50 / p99")
for (const accounts of SIZES) {
  const r = await measure(accounts)
  console.log(
    `${r.accounts} | ${r.download.toFixed(1)} s | ${r.cpu.toFixed(1)} s | ${r.framesPerDocument.toFixed(2)} | ` +
    `${r.bytesPerDocument.toFixed(0)} | ${r.memoryAfterDownload.toFixed(1)} / ${r.memoryAfterReopen.toFixed(1)} | ` +
    `${r.open.toFixed(0)} ms | ${r.search.toFixed(1)} ms | ${r.probe.p50_ms} / ${r.probe.p99_ms} ms ` +
    `(seeded in ${r.seedSeconds.toFixed(0)} s; ${r.probe.acknowledged ?? "?"} probe edits)`,
  )
}
