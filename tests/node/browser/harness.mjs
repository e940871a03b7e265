// Real-browser journeys: Debian's Chromium driven by playwright-core, against our server
// binary serving the built web app (FIELDNOTES_WEB_DIR, default dist/ of the workspace).
//
// Each "device" is a persistent Chromium profile (its own user-data dir), so IndexedDB and the
// service worker survive closing the browser, as on a phone. Every journey signs in through the
// app's real sign-in form, as users made with `fieldnotes admin` on the server's data dir.
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { chromium } from "playwright-core"
import { spawn } from "node:child_process"
import { createTeamWithUsers, freshDataDir, ourBinary, startServer, WORKSPACE_ROOT } from "../lib/server.mjs"

export const CHROMIUM = process.env.FIELDNOTES_CHROMIUM || "/usr/bin/chromium"
export const ARTIFACTS = path.join(WORKSPACE_ROOT, "tests", "artifacts")
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

const BUILT_WEB_DIR = process.env.FIELDNOTES_WEB_DIR || path.join(WORKSPACE_ROOT, "dist")

/** The built web app (`cargo xtask web`). */
export function webDir() {
  const dir = BUILT_WEB_DIR
  if (!fs.existsSync(path.join(dir, "index.html"))) {
    throw new Error(`the web app is not built at ${dir}: run \`cargo xtask web\` first`)
  }
  return dir
}

export function checkChromium() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: run \`cargo xtask setup --browser\` (apt-get install chromium)`)
  }
}

export { freePort } from "../lib/server.mjs"

/** Our server serving the web app; `port` fixed so devices reconnect after a restart. */
export async function startAppServer({ dataDir, port, webDirOverride } = {}) {
  process.env.FIELDNOTES_WEB_DIR = webDirOverride || webDir()
  return startServer({ kind: "ours", dataDir, port: port ?? 0 })
}

/**
 * A first run: our server on a fresh data dir, with every line it prints on stdout kept, so the
 * `setup: open http://…/#/setup/<token> …` line is read whole however the pipe splits it.
 * Resolves to { url, setupUrl, dataDir, stop() }.
 */
export async function startFirstRunServer({ timeoutMs = 30_000 } = {}) {
  const dataDir = freshDataDir()
  const child = spawn(ourBinary(), ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, FIELDNOTES_WEB_DIR: webDir(), RUST_LOG: process.env.RUST_LOG || "warn" },
  })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", d => (stdout += d))
  child.stderr.on("data", d => (stderr += d))
  const exited = new Promise(resolve => child.once("exit", resolve))
  const deadline = Date.now() + timeoutMs
  let listening, setup
  while (!(listening && setup)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill("SIGKILL")
      throw new Error(`the server printed no listening and setup lines: stdout=${JSON.stringify(stdout)} stderr=${stderr.slice(-2000)}`)
    }
    await new Promise(r => setTimeout(r, 20))
    listening = /^listening on (http:\/\/\S+)$/m.exec(stdout)?.[1]
    setup = /^setup: open (\S+) to create the first administrator and their team$/m.exec(stdout)?.[1]
  }
  return {
    url: listening,
    setupUrl: setup,
    dataDir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
      await exited
    },
  }
}

/** The reps the journeys use. Passwords are set when their team is made. */
export const ANN = { email: "ann@example.com", name: "Ann Lee", role: "rep", password: "ann-correct-horse" }
export const BOB = { email: "bob@example.com", name: "Bob Stone", role: "rep", password: "bob-battery-staple" }

/**
 * Our server serving the web app, with a team and its users made by `fieldnotes admin` on its
 * data dir. On a restart (same dataDir), pass `existing` to skip making them again.
 * Resolves to { server, teamId, users }.
 */
export async function startTeamServer({ dataDir, port, webDirOverride, team = "North", users = [ANN, BOB], existing } = {}) {
  const server = await startAppServer({ dataDir, port, webDirOverride })
  if (existing) return { ...existing, server }
  const made = await createTeamWithUsers(server.dataDir, { team, users })
  return { server, teamId: made.teamId, users: made.users }
}

/**
 * Chromium as its own process, so it can be SIGKILLed the way a phone kills a browser (a call
 * comes in, the system reclaims memory, the battery dies), driven over CDP. Resolves to
 * { browser, context, page, kill() }.
 */
export async function launchKillable(profile) {
  checkChromium()
  const child = spawn(CHROMIUM, [
    ...ARGS, "--remote-debugging-port=0", `--user-data-dir=${profile}`, "--window-size=390,844", "about:blank",
  ], { stdio: ["ignore", "ignore", "pipe"] })
  const endpoint = await new Promise((resolve, reject) => {
    let err = ""
    const timer = setTimeout(() => reject(new Error(`chromium did not start: ${err.slice(-2000)}`)), 20_000)
    child.stderr.on("data", d => {
      err += d
      const match = err.match(/DevTools listening on (ws:\/\/\S+)/)
      if (match) { clearTimeout(timer); resolve(match[1]) }
    })
    child.once("exit", code => { clearTimeout(timer); reject(new Error(`chromium exited ${code}: ${err.slice(-2000)}`)) })
  })
  const browser = await chromium.connectOverCDP(endpoint)
  const context = browser.contexts()[0]
  const page = context.pages()[0] || (await context.newPage())
  page.setDefaultTimeout(20_000)
  const exited = new Promise(resolve => child.once("exit", resolve))
  const stop = signal => async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    await exited
  }
  // kill(): SIGKILL, nothing runs any more; close(): SIGTERM, Chromium shuts down as on a quit.
  return { browser, context, page, kill: stop("SIGKILL"), close: stop("SIGTERM") }
}

/** A phone: a persistent profile at 390×844. Call `open()` to (re)launch it. */
export class Device {
  constructor(name, { profileRoot = os.tmpdir() } = {}) {
    checkChromium()
    this.name = name
    this.profile = fs.mkdtempSync(path.join(profileRoot, `fieldnotes-${name}-`))
    this.context = null
    this.page = null
    this.errors = []
  }

  async open(url, { offline = false } = {}) {
    this.context = await chromium.launchPersistentContext(this.profile, {
      executablePath: CHROMIUM,
      args: ARGS,
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 1,
      hasTouch: true,
      isMobile: true,
    })
    if (offline) await this.context.setOffline(true)
    this.page = this.context.pages()[0] || (await this.context.newPage())
    this.watch(this.page)
    await this.page.goto(url)
    return this.page
  }

  /**
   * Launches the phone's browser as a process of its own, so `kill()` can SIGKILL it at any
   * moment, mid-typing included. The page is 390×844 like `open()`'s (without touch emulation).
   */
  async openKillable(url, { offline = false } = {}) {
    this.killable = await launchKillable(this.profile)
    this.context = this.killable.context
    if (offline) await this.context.setOffline(true)
    this.page = this.killable.page
    await this.page.setViewportSize({ width: 390, height: 844 })
    this.watch(this.page)
    await this.page.goto(url)
    return this.page
  }

  /** SIGKILL of the whole browser: nothing gets to run, not even `pagehide`. */
  async kill() {
    const killable = this.killable
    this.killable = this.context = this.page = null
    await killable?.kill()
  }

  watch(page) {
    page.on("pageerror", e => this.errors.push(String(e)))
    page.on("crash", () => console.error(`[${this.name}] page crashed`))
    if (process.env.FIELDNOTES_DEBUG) page.on("console", m => console.error(`[${this.name}] ${m.type()}: ${m.text()}`))
    page.on("console", m => { if (m.type() === "error") this.errors.push(m.text()) })
    page.setDefaultTimeout(20_000)
  }

  async close() {
    if (this.killable) {
      const killable = this.killable
      this.killable = this.context = this.page = null
      return killable.close()
    }
    if (this.context) await this.context.close()
    this.context = null
    this.page = null
  }

  async setOffline(offline) {
    await this.context.setOffline(offline)
    // The app learns of connectivity through these events, as on a phone.
    await this.page.evaluate(o => window.dispatchEvent(new Event(o ? "offline" : "online")), offline)
  }

  /** Signs in through the sign-in screen and waits for the account list. */
  async signIn(user) {
    const page = this.page
    await page.getByRole("heading", { name: "Sign in to Fieldnotes" }).waitFor()
    await page.getByLabel("Email").fill(user.email)
    await page.getByLabel("Password").fill(user.password)
    await page.getByRole("button", { name: "Sign in", exact: true }).click()
    await page.getByRole("button", { name: "New account" }).waitFor()
  }

  /** A record of the app's device-level database (`fieldnotes-device`), as text, or null. */
  async deviceRecord(key) {
    return this.page.evaluate(key => new Promise((resolve, reject) => {
      const open = indexedDB.open("fieldnotes-device")
      open.onerror = () => reject(open.error)
      open.onupgradeneeded = () => { open.result.createObjectStore("chunks"); open.result.createObjectStore("meta") }
      open.onsuccess = () => {
        const request = open.result.transaction("meta").objectStore("meta").get(key)
        request.onsuccess = () => {
          open.result.close()
          resolve(request.result === undefined ? null : new TextDecoder().decode(request.result))
        }
        request.onerror = () => reject(request.error)
      }
    }), key)
  }

  /** What the app remembers on this device about who is signed in (null when nobody is). */
  async storedSession() {
    return JSON.parse((await this.deviceRecord("session")) || "null")
  }

  /** The IndexedDB database holding the signed-in user's documents of the active team. */
  async databaseName() {
    const stored = await this.storedSession()
    if (!stored) throw new Error(`${this.name}: nobody is signed in`)
    return `fieldnotes-${stored.session.user.id}-${stored.team}`
  }

  /** The names of this origin's IndexedDB databases. */
  async databaseNames() {
    return this.page.evaluate(async () => (await indexedDB.databases()).map(d => d.name).sort())
  }

  /** The team view's "Sign out" (confirming the warning when `confirm`), then the sign-in screen. */
  async signOut({ confirm = true } = {}) {
    const page = this.page
    await page.evaluate(() => { location.hash = "/team" })
    await page.getByRole("button", { name: "Sign out", exact: true }).click()
    const warning = page.getByRole("button", { name: /^Sign out and delete/ })
    const signInScreen = page.getByRole("heading", { name: "Sign in to Fieldnotes" })
    await warning.or(signInScreen).first().waitFor()
    if (confirm && (await warning.isVisible().catch(() => false))) await warning.click()
    await signInScreen.waitFor()
  }

  /** Waits until the service worker controls the page, so the next load works offline. */
  async waitForServiceWorker() {
    await this.page.evaluate(async () => {
      await navigator.serviceWorker.ready
      if (!navigator.serviceWorker.controller) {
        await new Promise(resolve => navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true }))
      }
    })
  }

  async createAccount({ name, branch = "", area = "" }) {
    const page = this.page
    await this.goToList()
    await page.getByRole("button", { name: "New account" }).click()
    await page.getByLabel("Client name").fill(name)
    if (branch) await page.getByLabel("Branch").fill(branch)
    if (area) await page.getByLabel("Address or area").fill(area)
    await page.getByRole("button", { name: "Create account" }).click()
    await page.getByTestId("account-name").filter({ hasText: name }).waitFor()
  }

  /** From the account list: tap "Note" on the row, type, tick, save. */
  async addNoteFromList(account, { text, drivers = [], objection = "", followUp = "", due = "" }) {
    const page = this.page
    await this.goToList()
    await page.getByRole("button", { name: `Add a visit note to ${account}` }).click()
    await page.getByLabel("What did you learn?").fill(text)
    for (const driver of drivers) await page.getByRole("button", { name: driver, exact: true }).click()
    if (objection) await page.getByLabel("Objection or resistance heard").fill(objection)
    if (followUp) await page.getByLabel("Follow-up", { exact: true }).fill(followUp)
    if (due) await page.getByLabel("Due", { exact: true }).fill(due)
    await page.getByRole("button", { name: "Save note" }).click()
    await page.getByTestId("timeline").getByText(text).waitFor()
  }

  async goToList() {
    const page = this.page
    // The list screen is the one with "New account" (an empty list has no height).
    const marker = page.getByRole("button", { name: "New account" })
    if (!(await marker.isVisible().catch(() => false))) {
      await page.evaluate(() => { location.hash = "/" })
      await marker.waitFor()
    }
  }

  async openAccount(name) {
    await this.goToList()
    await this.page.getByRole("button", { name: new RegExp(`^${name}`) }).first().click()
    await this.page.getByTestId("account-name").filter({ hasText: name }).waitFor()
  }

  async waitForSaved() {
    await this.page.getByTestId("save-status").filter({ hasText: "Saved on this phone" }).waitFor()
  }

  async waitForSyncStatus(pattern, timeout = 30_000) {
    const status = this.page.getByTestId("sync-status")
    try {
      await status.filter({ hasText: pattern }).waitFor({ timeout })
    } catch (error) {
      const last = await status.textContent({ timeout: 1000 }).catch(() => "(no status shown)")
      throw new Error(`[${this.name}] the sync status never matched ${pattern}; it says "${last}"`, { cause: error })
    }
  }

  async screenshot(name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true })
    await this.page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) })
  }

  cleanup() {
    // After a SIGKILL, Chromium's helper processes may still be writing into the profile (its
    // disk cache, once, for longer than the retries: ENOTEMPTY failed a CI run). Kill whatever
    // still has the profile on its command line, then retry; a temporary profile that still
    // cannot go is reported and left, as it is no part of what the test checks.
    for (let attempt = 0; ; attempt++) {
      try {
        fs.rmSync(this.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 })
        return
      } catch (e) {
        if (attempt === 2) {
          console.warn(`# could not remove the browser profile ${this.profile}: ${e.message}`)
          return
        }
        killProcessesUsing(this.profile)
      }
    }
  }
}

/** SIGKILLs every process whose command line mentions `dir` (Chromium's helpers of a profile). */
function killProcessesUsing(dir) {
  for (const pid of fs.readdirSync("/proc").filter(name => /^\d+$/.test(name))) {
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")
      if (Number(pid) !== process.pid && cmdline.includes(dir)) process.kill(Number(pid), "SIGKILL")
    } catch {
      // gone already, or not ours to read
    }
  }
}
