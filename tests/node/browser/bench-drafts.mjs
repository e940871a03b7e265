// Benchmark (prints figures, asserts nothing): drafts while typing a long note.
// - keystroke → its draft durable: from the `input` event to the `complete` of the first strict
//   IndexedDB transaction writing a draft that started after it (median, p99, max), and how many
//   transactions the keystrokes cost (group commit);
// - the keystroke handler: from the `input` event reaching the window (capture, before the app)
//   to it leaving the window (bubble, after the app's handler and the re-render it schedules),
//   median, p99 and the longest, against one frame (16.7 ms); and the browser's own Event Timing
//   entries of 16 ms or more, and long animation frames, while typing.
// The note is already long (LONG_NOTE characters) when the typing starts, so every keystroke
// re-renders, compares and encodes a long text.
// Usage: node browser/bench-drafts.mjs   (after `cargo xtask web` and `cargo build -p fieldnotes-server`)
// Env: KEYS (keystrokes per run, default 300), LONG_NOTE (default 8000), DELAY_MS (default 80).
import { ANN, Device, startTeamServer } from "./harness.mjs"

const KEYS = Number(process.env.KEYS || 300)
const LONG_NOTE = Number(process.env.LONG_NOTE || 8000)
const DELAY_MS = Number(process.env.DELAY_MS || 80)

/** Installed before the app starts: records transactions, draft writes and keystrokes. */
function instrument() {
  const transactions = (window.benchTransactions = [])
  const entries = new WeakMap()
  const transaction = IDBDatabase.prototype.transaction
  IDBDatabase.prototype.transaction = function (...args) {
    const tx = transaction.apply(this, args)
    const entry = { created: performance.now(), complete: null, draft: false }
    entries.set(tx, entry)
    transactions.push(entry)
    tx.addEventListener("complete", () => { entry.complete = performance.now() })
    return tx
  }
  const put = IDBObjectStore.prototype.put
  IDBObjectStore.prototype.put = function (value, key) {
    if (typeof key === "string" && key.startsWith("draft/")) {
      const entry = entries.get(this.transaction)
      if (entry) entry.draft = true
    }
    return put.call(this, value, key)
  }
  const keys = (window.benchKeys = [])
  window.addEventListener("input", () => keys.push({ start: performance.now(), end: null }), true)
  window.addEventListener("input", () => { const key = keys.at(-1); if (key) key.end = performance.now() }, false)
  const slow = (window.benchSlowEvents = [])
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) slow.push({ name: e.name, duration: e.duration, processing: e.processingEnd - e.processingStart })
  }).observe({ type: "event", durationThreshold: 16 })
  const frames = (window.benchLongFrames = [])
  try {
    new PerformanceObserver(list => {
      for (const e of list.getEntries()) {
        // Where the frame went: scripts (by what invoked them) and rendering (style, layout).
        const scripts = e.scripts.map(s => `${s.invoker || s.invokerType} ${s.duration.toFixed(0)} ms`)
        const rendering = e.renderStart ? e.startTime + e.duration - e.renderStart : 0
        frames.push({ duration: e.duration, what: [...scripts, `rendering ${rendering.toFixed(0)} ms`].join(", ") })
      }
    }).observe({ type: "long-animation-frame" })
  } catch {}
}

const quantile = (xs, q) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}
const ms = x => `${x.toFixed(1)} ms`

const { server } = await startTeamServer()
const phone = new Device("bench-drafts")
try {
  const page = await phone.open(server.url)
  await phone.context.addInitScript(instrument)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Draft Depot" })
  await phone.waitForSaved()
  await page.getByRole("button", { name: "Add visit note" }).click()
  await page.reload() // with the instrumentation in place from the start
  const note = page.getByLabel("What did you learn?")
  await note.waitFor()
  const words = "They buy from us because the van comes before seven and the counter knows them. "
  await note.fill(words.repeat(Math.ceil(LONG_NOTE / words.length)).slice(0, LONG_NOTE))
  await note.click()
  await page.keyboard.press("Control+End")
  await page.waitForTimeout(500)

  for (const [label, delay] of [[`typing one key every ${DELAY_MS} ms`, DELAY_MS], ["typing as fast as the browser takes keys", 0]]) {
    await page.evaluate(() => {
      window.benchKeys.length = 0
      window.benchTransactions.length = 0
      window.benchSlowEvents.length = 0
      window.benchLongFrames.length = 0
    })
    const text = "the owner wants a standing order for winter ".repeat(Math.ceil(KEYS / 44)).slice(0, KEYS)
    await page.keyboard.type(text, { delay })
    await page.waitForTimeout(1000) // let the last write complete
    const { keys, transactions, slow, frames, length } = await page.evaluate(() => ({
      keys: window.benchKeys,
      transactions: window.benchTransactions,
      slow: window.benchSlowEvents,
      frames: window.benchLongFrames,
      length: document.querySelector("textarea[name=note]").value.length,
    }))
    const drafts = transactions.filter(t => t.draft && t.complete !== null)
    const durable = keys.map(key => {
      const tx = drafts.find(t => t.created >= key.start)
      return tx ? tx.complete - key.start : Infinity
    })
    const handlers = keys.map(key => key.end - key.start)
    console.log(`${label}: ${keys.length} keystrokes into a note of ${length} characters`)
    console.log(`  keystroke → draft durable: median ${ms(quantile(durable, 0.5))}, p99 ${ms(quantile(durable, 0.99))}, max ${ms(Math.max(...durable))}` +
      ` (${drafts.length} draft transactions for ${keys.length} keystrokes)`)
    console.log(`  keystroke handler (app handler and re-render): median ${ms(quantile(handlers, 0.5))}, p99 ${ms(quantile(handlers, 0.99))}, longest ${ms(Math.max(...handlers))}` +
      ` (one frame is 16.7 ms; ${handlers.filter(h => h > 16.7).length} over it)`)
    // Event Timing reports events whose input-to-next-paint took 16 ms or more; `processing` is
    // the time in their handlers (the app's and the browser's own) for each kind of event.
    const kinds = ["keydown", "keypress", "beforeinput", "input", "keyup"]
      .map(name => [name, slow.filter(e => e.name === name).map(e => e.processing)])
      .filter(([, times]) => times.length)
      .map(([name, times]) => `${name} ${times.filter(t => t > 16.7).length} over a frame (longest ${ms(Math.max(...times))})`)
    console.log(`  browser Event Timing, handlers of key events reported: ${kinds.join(", ") || "none reported"}` +
      `; ${frames.length} long animation frames (≥ 50 ms)` +
      frames.map(f => `\n    ${ms(f.duration)}: ${f.what}`).join(""))
  }
} finally {
  await phone.close()
  await server.stop()
  phone.cleanup()
}
