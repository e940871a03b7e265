// "Nothing typed is lost": a browser killed with SIGKILL right after the app said "Saved on
// this phone" still has the note; a full disk keeps the note on screen, says so in plain words,
// and saves it once space is back.
import { test, after } from "node:test"
import assert from "node:assert/strict"
import { spawn } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { chromium } from "playwright-core"
import { CHROMIUM, Device, checkChromium, startAppServer } from "./harness.mjs"

/** Chromium as its own process (so it can be SIGKILLed), driven over CDP. */
async function launchKillable(profile) {
  checkChromium()
  const child = spawn(CHROMIUM, [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0", `--user-data-dir=${profile}`, "--window-size=390,844", "about:blank",
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
  return { browser, context, page, kill: async () => { child.kill("SIGKILL"); await exited } }
}

test("a note shown as saved survives kill -9 of the browser", async () => {
  const server = await startAppServer()
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "fieldnotes-kill-"))
  let chrome
  after(async () => { await chrome?.kill().catch(() => {}); await server.stop(); fs.rmSync(profile, { recursive: true, force: true }) })

  chrome = await launchKillable(profile)
  let page = chrome.page
  await page.goto(server.url)
  await page.getByLabel("Your name").fill("Ann Lee")
  await page.getByRole("button", { name: "Start" }).click()
  await page.getByRole("button", { name: "New account" }).click()
  await page.getByLabel("Client name").fill("Hazel Hardware")
  await page.getByRole("button", { name: "Create account" }).click()
  await page.getByRole("button", { name: "Add visit note" }).click()
  await page.getByLabel("What did you learn?").fill("Typed just before the battery died")
  await page.getByRole("button", { name: "Save note" }).click()
  await page.getByTestId("save-status").filter({ hasText: "Saved on this phone" }).waitFor()
  await chrome.kill()

  chrome = await launchKillable(profile)
  page = chrome.page
  await page.goto(server.url)
  await page.getByRole("button", { name: /^Hazel Hardware/ }).click()
  await page.getByTestId("timeline").getByText("Typed just before the battery died").waitFor()
})

test("a full disk keeps the note, says so, and saves it when space is back", async () => {
  const server = await startAppServer()
  const phone = new Device("full-disk")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await phone.signIn("Ann Lee")
  await phone.createAccount({ name: "Ivy Interiors" })
  await phone.waitForSaved()

  const cdp = await phone.context.newCDPSession(page)
  const origin = new URL(server.url).origin
  await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 1 })
  await page.getByRole("button", { name: "Add visit note" }).click()
  await page.getByLabel("What did you learn?").fill("Written while the phone was full")
  await page.getByRole("button", { name: "Save note" }).click()
  const saveStatus = page.getByTestId("save-status")
  await saveStatus.filter({ hasText: "storage is full" }).waitFor()
  assert.match(await saveStatus.innerText(), /Free some space/)
  // The note stays on screen while it cannot be written.
  await page.getByTestId("timeline").getByText("Written while the phone was full").waitFor()

  await cdp.send("Storage.overrideQuotaForOrigin", { origin })
  await page.getByRole("button", { name: "Retry" }).click()
  await phone.waitForSaved()
  await page.reload()
  await phone.openAccount("Ivy Interiors")
  await page.getByTestId("timeline").getByText("Written while the phone was full").waitFor()
})
