// Journey 1, parking-lot capture: load once, then with no network create an account, a note
// and a follow-up; reload (served by the service worker) and relaunch the browser: all there.
import { test, after } from "node:test"
import assert from "node:assert/strict"
import { ANN, Device, startTeamServer } from "./harness.mjs"

test("offline capture survives a reload and a browser restart", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("offline-capture")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })

  await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.waitForServiceWorker()
  await phone.screenshot("01-accounts-empty")

  await phone.setOffline(true)
  await phone.waitForSyncStatus(/^Offline/)
  await phone.createAccount({ name: "Acme Plumbing", branch: "North", area: "Riverside" })
  await phone.addNoteFromList("Acme Plumbing", {
    text: "Same-day van saved their boiler job",
    drivers: ["Delivery", "Relationship"],
    objection: "Price of fittings",
    followUp: "Send the training dates",
    due: "2026-12-03",
  })
  await phone.waitForSaved()
  await phone.screenshot("02-account-after-capture")
  // Nothing reached the server yet: the status says what waits.
  await phone.waitForSyncStatus(/Offline · \d+ changes? waiting/)

  const assertEverythingThere = async () => {
    await phone.openAccount("Acme Plumbing")
    const page = phone.page
    const timeline = page.getByTestId("timeline")
    await timeline.getByText("Same-day van saved their boiler job").waitFor()
    await timeline.getByText("Objection: Price of fittings").waitFor()
    await page.getByTestId("follow-ups").getByText("Send the training dates").waitFor()
    const drivers = await page.getByTestId("drivers").innerText()
    assert.match(drivers, /Delivery/)
    assert.match(drivers, /Relationship/)
  }

  // Reload with no network: the service worker serves the app, IndexedDB the notes.
  await phone.page.reload()
  await assertEverythingThere()

  // Close the browser and open it again, still offline.
  await phone.close()
  await phone.open(server.url, { offline: true })
  await assertEverythingThere()
  await phone.waitForSyncStatus(/^Offline/)
  assert.deepEqual(phone.errors.filter(e => !/ERR_INTERNET_DISCONNECTED|WebSocket/.test(e)), [])
})
