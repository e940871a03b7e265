// Benchmark (prints figures, asserts nothing): a phone with 500 accounts stored.
// - how long a new device takes to download the team's 500 accounts,
// - time from opening the app to the account list shown (median of several reloads),
// - time to search them (median over several queries),
// - the app's WebAssembly memory once they are open (it only grows, so this is its high-water mark).
// Usage: node browser/bench-500-accounts.mjs   (after `cargo xtask web` and
//        `cargo build -p fieldnotes-server --example seed`)
import { execFileSync } from "node:child_process"
import path from "node:path"
import { ANN, Device, startTeamServer } from "./harness.mjs"
import { WORKSPACE_ROOT, tokenFor } from "../lib/server.mjs"

const ACCOUNTS = Number(process.env.ACCOUNTS || 500)
const RUNS = Number(process.env.RUNS || 5)
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const { server, teamId } = await startTeamServer()
const seed = path.join(process.env.CARGO_TARGET_DIR || path.join(WORKSPACE_ROOT, "target"), "debug", "examples", "seed")
// The seed tool syncs as a member of the team, with a Bearer token made by `fieldnotes admin`.
const token = await tokenFor(server.dataDir, ANN.email, { label: "bench seed" })
execFileSync(seed, [server.url.replace("http", "ws") + "/sync", teamId, String(ACCOUNTS)], {
  stdio: "inherit",
  env: { ...process.env, FIELDNOTES_TOKEN: token },
})

const phone = new Device("bench-500")
try {
  const page = await phone.open(server.url)
  // What the rep sees while the accounts arrive.
  await page.evaluate(() => {
    window.progressSeen = []
    new MutationObserver(() => {
      const line = document.querySelector("[data-testid=sync-status]")?.textContent
      if (line?.startsWith("Downloading") && window.progressSeen.at(-1) !== line) window.progressSeen.push(line)
    }).observe(document.body, { subtree: true, childList: true, characterData: true })
  })
  const started = Date.now()
  await phone.signIn(ANN)
  await phone.waitForSyncStatus(/^All synced/, 300_000)
  const download = Date.now() - started
  const progress = await page.evaluate(() => window.progressSeen)
  console.log(`progress shown ${progress.length} times: ${progress.slice(0, 2).join(" → ")} … ${progress.slice(-1)}`)
  const rows = () => page.locator(".account-row").count()
  console.log(`new device: ${ACCOUNTS} accounts downloaded and stored in ${download} ms (${await rows()} rows shown)`)

  const opens = []
  for (let i = 0; i < RUNS; i++) {
    await page.reload()
    await page.waitForFunction(n => document.querySelectorAll(".account-row").length >= n, ACCOUNTS, { timeout: 120_000 })
    opens.push(await page.evaluate(() => performance.now()))
  }
  const searches = []
  for (const query of ["Crawley", "Plumbing #1", "delivery windows", "zzz-nothing", "Epsom Glass"]) {
    searches.push(await page.evaluate(async q => {
      // From the keystroke to the second frame after it: the filtered list has been rendered.
      const frame = () => new Promise(r => requestAnimationFrame(r))
      const input = document.querySelector("input[type=search]")
      const t0 = performance.now()
      input.value = q
      input.dispatchEvent(new InputEvent("input", { bubbles: true }))
      await frame(); await frame()
      const elapsed = performance.now() - t0
      const shown = document.querySelectorAll(".account-row").length
      input.value = ""
      input.dispatchEvent(new InputEvent("input", { bubbles: true }))
      await frame(); await frame()
      return [elapsed, shown]
    }, query))
  }
  const wasmMemory = await page.evaluate(async () => {
    const app = await import(document.querySelector("link[rel=modulepreload]").href)
    return (await app.default()).memory.buffer.byteLength
  })
  console.log(`open app → list of ${ACCOUNTS} shown: median ${median(opens).toFixed(0)} ms (runs: ${opens.map(x => x.toFixed(0)).join(", ")})`)
  const times = searches.map(([t]) => t)
  console.log(`search ${ACCOUNTS} accounts → list rendered: median ${median(times).toFixed(0)} ms (runs: ${searches.map(([t, n]) => `${t.toFixed(0)} ms/${n} shown`).join(", ")})`)
  console.log(`wasm memory with ${ACCOUNTS} accounts open: ${(wasmMemory / 2 ** 20).toFixed(1)} MiB`)
} finally {
  await phone.close()
  await server.stop()
  phone.cleanup()
}
