// The two-device journeys, on one server (sync.test.mjs) or with each device on its own instance
// of one PostgreSQL deployment (two-instances-on-postgres.mjs).
import { after } from "node:test"
import assert from "node:assert/strict"
import { ANN, BOB, Device } from "./harness.mjs"

/** Journey 2: back online, the phone's note syncs by itself and the laptop receives it. */
export async function noteSyncsAndReachesASecondDevice(phoneServer, laptopServer, prefix = "sync") {
  const phone = new Device(`${prefix}-phone`)
  const laptop = new Device(`${prefix}-laptop`)
  after(async () => {
    await phone.close().catch(() => {}); await laptop.close().catch(() => {})
    phone.cleanup(); laptop.cleanup()
  })

  await phone.open(phoneServer.url)
  await phone.signIn(ANN)
  await phone.waitForServiceWorker()
  await phone.setOffline(true)
  await phone.createAccount({ name: "Birch Bakery", branch: "South" })
  await phone.addNoteFromList("Birch Bakery", { text: "Wants training on the new ovens", drivers: ["Training"] })
  await phone.waitForSyncStatus(/Offline · \d+ changes? waiting/)

  // Back online: nothing to tap.
  await phone.setOffline(false)
  await phone.waitForSyncStatus(/^All synced/)
  if (prefix === "sync") await phone.screenshot("03-all-synced")

  await laptop.open(laptopServer.url)
  await laptop.signIn(BOB)
  await laptop.waitForSyncStatus(/^All synced/)
  await laptop.openAccount("Birch Bakery")
  await laptop.page.getByTestId("timeline").getByText("Wants training on the new ovens").waitFor()
  const meta = await laptop.page.getByTestId("timeline").locator(".meta").first().innerText()
  assert.match(meta, /Ann Lee/, "the note keeps its author")
}

/** Journey 3: both devices edit the same account offline (the same text included) and merge. */
export async function offlineEditsOnTwoDevicesMerge(phoneServer, laptopServer, prefix = "merge") {
  const phone = new Device(`${prefix}-phone`)
  const laptop = new Device(`${prefix}-laptop`)
  after(async () => {
    await phone.close().catch(() => {}); await laptop.close().catch(() => {})
    phone.cleanup(); laptop.cleanup()
  })

  await phone.open(phoneServer.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Cedar Garage" })
  await phone.page.getByLabel("What we offer this client, in their terms").fill("We keep your vans moving.")
  await phone.waitForSyncStatus(/^All synced/)

  await laptop.open(laptopServer.url)
  await laptop.signIn(BOB)
  await laptop.waitForSyncStatus(/^All synced/)
  await laptop.openAccount("Cedar Garage")
  const laptopText = laptop.page.getByLabel("What we offer this client, in their terms")
  assert.equal(await laptopText.inputValue(), "We keep your vans moving.")

  // Both offline; both edit the same text and different fields.
  await phone.setOffline(true)
  await laptop.setOffline(true)
  await phone.openAccount("Cedar Garage")
  const phoneText = phone.page.getByLabel("What we offer this client, in their terms")
  await phoneText.press("End")
  await phoneText.pressSequentially(" Same-day parts.")
  await laptopText.press("Home")
  await laptopText.pressSequentially("Trusted advice. ")
  await phone.addNoteFromList("Cedar Garage", { text: "Phone note: asked about fleet pricing", drivers: ["Price"] })
  await laptop.addNoteFromList("Cedar Garage", { text: "Laptop note: loves the branch staff", drivers: ["Branch proximity"] })
  await phone.waitForSaved()
  await laptop.waitForSaved()

  await phone.setOffline(false)
  await laptop.setOffline(false)
  await phone.waitForSyncStatus(/^All synced/)
  await laptop.waitForSyncStatus(/^All synced/)
  // The second device to sync pulls the first one's changes; give both a moment to converge.
  await phone.page.getByRole("button", { name: "Sync now" }).click()
  await laptop.page.getByRole("button", { name: "Sync now" }).click()

  for (const device of [phone, laptop]) {
    await device.openAccount("Cedar Garage")
    const timeline = device.page.getByTestId("timeline")
    await timeline.getByText("Phone note: asked about fleet pricing").waitFor()
    await timeline.getByText("Laptop note: loves the branch staff").waitFor()
    const text = device.page.getByLabel("What we offer this client, in their terms")
    await assert.doesNotReject(async () => {
      await text.evaluate(async el => {
        const deadline = Date.now() + 10_000
        while (Date.now() < deadline && el.value !== "Trusted advice. We keep your vans moving. Same-day parts.") {
          await new Promise(r => setTimeout(r, 100))
        }
      })
    })
    assert.equal(await text.inputValue(), "Trusted advice. We keep your vans moving. Same-day parts.")
    const drivers = await device.page.getByTestId("drivers").innerText()
    assert.match(drivers, /Price/)
    assert.match(drivers, /Branch proximity/)
  }
  if (prefix === "merge") await phone.screenshot("04-merged-account")
}
