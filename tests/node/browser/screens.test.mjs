// Every main screen at 390×844 (kept in tests/artifacts/), and a redeploy while the app is
// open: the new service worker installs and the app offers the update instead of switching.
import { test, after } from "node:test"
import assert from "node:assert/strict"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { ANN, Device, startTeamServer, webDir } from "./harness.mjs"

test("each main screen renders at phone size with its primary action in reach", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("screens")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await page.getByRole("heading", { name: "Sign in to Fieldnotes" }).waitFor()
  await phone.screenshot("10-sign-in")
  const signIn = await page.getByRole("button", { name: "Sign in", exact: true }).boundingBox()
  assert.ok(signIn.y > 844 - 120 && signIn.height >= 48, `Sign in at ${JSON.stringify(signIn)}`)
  await phone.signIn(ANN)
  for (const [name, branch] of [["Acme Plumbing", "North"], ["Birch Bakery", "South"], ["Cedar Garage", "North"]]) {
    await phone.createAccount({ name, branch })
  }
  await phone.addNoteFromList("Acme Plumbing", { text: "Van delivery saved the day", drivers: ["Delivery"], followUp: "Call back", due: "2020-01-01" })
  await phone.goToList()
  await phone.screenshot("11-accounts")
  // Overdue first: the list is sorted by what needs attention.
  const first = await page.getByTestId("account-list").locator("li").first().innerText()
  assert.match(first, /Acme Plumbing[\s\S]*Follow-up overdue/)

  await page.getByRole("button", { name: "Add a visit note to Birch Bakery" }).click()
  await page.getByLabel("What did you learn?").waitFor()
  await phone.screenshot("12-capture")
  // Primary action within thumb reach: the bottom bar, at least 48 px tall targets.
  const save = await page.getByRole("button", { name: "Save note" }).boundingBox()
  assert.ok(save.y > 844 - 120 && save.height >= 48, `Save note at ${JSON.stringify(save)}`)
  for (const chip of await page.locator(".chip").all()) {
    const box = await chip.boundingBox()
    assert.ok(box.height >= 48 && box.width >= 48, `chip ${await chip.innerText()} is ${box.width}×${box.height}`)
  }

  await phone.openAccount("Acme Plumbing")
  await phone.screenshot("13-account")
  await page.evaluate(() => { location.hash = "/team" })
  await page.getByRole("heading", { name: "Team view" }).waitFor()
  assert.match(await page.locator(".figures").innerText(), /1 of 3 accounts have known reasons/)
  await phone.screenshot("14-team")
})

test("a redeploy is announced and applied when the rep taps Update now", async () => {
  // Serve a copy of the build so the test can deploy a "new version" of it.
  const deployed = fs.mkdtempSync(path.join(os.tmpdir(), "fieldnotes-deploy-"))
  fs.cpSync(webDir(), deployed, { recursive: true })
  const { server } = await startTeamServer({ webDirOverride: deployed })
  const phone = new Device("update")
  after(async () => {
    await phone.close().catch(() => {}); await server.stop(); phone.cleanup()
    fs.rmSync(deployed, { recursive: true, force: true })
  })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.waitForServiceWorker()
  const before = await page.evaluate(() => navigator.serviceWorker.controller.scriptURL)

  // Deploy: a new service worker version (as a new build with new asset hashes would make).
  for (const name of ["sw.js", "sw.js.br", "sw.js.gz"]) fs.rmSync(path.join(deployed, name), { force: true })
  const sw = fs.readFileSync(path.join(webDir(), "sw.js"), "utf8").replace(/const VERSION = "([^"]*)"/, 'const VERSION = "$1-next"')
  assert.match(sw, /-next"/)
  fs.writeFileSync(path.join(deployed, "sw.js"), sw)

  await page.evaluate(async () => (await navigator.serviceWorker.getRegistration()).update())
  await page.getByText("A new version of Fieldnotes is ready.").waitFor()
  await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Update now" }).click()])
  const cache = await page.evaluate(async () => (await caches.keys()).join(","))
  assert.match(cache, /-next/, `the new version's cache is in use: ${cache}`)
  assert.ok(before)
})
