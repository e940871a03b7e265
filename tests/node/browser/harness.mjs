// Real-browser journeys: Debian's Chromium driven by playwright-core, against our server
// binary serving the built web app (FIELDNOTES_WEB_DIR, default dist/ of the workspace).
//
// Each "device" is a persistent Chromium profile (its own user-data dir), so IndexedDB and the
// service worker survive closing the browser, as on a phone.
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import net from "node:net"
import { chromium } from "playwright-core"
import { startServer, WORKSPACE_ROOT } from "../lib/server.mjs"

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

/** A free TCP port on 127.0.0.1, so a restarted server can come back on the same address. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** Our server serving the web app; `port` fixed so devices reconnect after a restart. */
export async function startAppServer({ dataDir, port, webDirOverride } = {}) {
  process.env.FIELDNOTES_WEB_DIR = webDirOverride || webDir()
  return startServer({ kind: "ours", dataDir, port: port ?? 0 })
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
    this.page.on("pageerror", e => this.errors.push(String(e)))
    this.page.on("crash", () => console.error(`[${this.name}] page crashed`))
    if (process.env.FIELDNOTES_DEBUG) this.page.on("console", m => console.error(`[${this.name}] ${m.type()}: ${m.text()}`))
    this.page.on("console", m => { if (m.type() === "error") this.errors.push(m.text()) })
    this.page.setDefaultTimeout(20_000)
    await this.page.goto(url)
    return this.page
  }

  async close() {
    if (this.context) await this.context.close()
    this.context = null
    this.page = null
  }

  async setOffline(offline) {
    await this.context.setOffline(offline)
    // The app learns of connectivity through these events, as on a phone.
    await this.page.evaluate(o => window.dispatchEvent(new Event(o ? "offline" : "online")), offline)
  }

  /** First run on this device: who is using it. */
  async signIn(user, team = "north") {
    const page = this.page
    await page.getByLabel("Your name").fill(user)
    await page.getByLabel("Team", { exact: true }).fill(team)
    await page.getByRole("button", { name: "Start" }).click()
    await page.getByRole("button", { name: "New account" }).waitFor()
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
    await this.page.getByTestId("sync-status").filter({ hasText: pattern }).waitFor({ timeout })
  }

  async screenshot(name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true })
    await this.page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) })
  }

  cleanup() {
    fs.rmSync(this.profile, { recursive: true, force: true })
  }
}
