// Journeys 2 and 3: back online, pending changes sync by themselves and another device sees
// them; two devices edit the same account offline (the same text included) and both end with
// one merged account; a server killed mid-sync and restarted loses nothing.
import { test, after } from "node:test"
import assert from "node:assert/strict"
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import path from "node:path"
import { ANN, BOB, Device, freePort, startTeamServer } from "./harness.mjs"
import { noteSyncsAndReachesASecondDevice, offlineEditsOnTwoDevicesMerge } from "./two-devices.mjs"
import { WORKSPACE_ROOT, freshDataDir, tokenFor } from "../lib/server.mjs"

test("back online, the note syncs by itself and a second device receives it", async () => {
  const { server } = await startTeamServer()
  after(() => server.stop())
  await noteSyncsAndReachesASecondDevice(server, server)
})

test("two devices edit the same account offline and merge without losing anything", async () => {
  const { server } = await startTeamServer()
  after(() => server.stop())
  await offlineEditsOnTwoDevicesMerge(server, server)
})

test("a server killed during a sync and restarted loses nothing", async () => {
  const dataDir = freshDataDir()
  const port = await freePort()
  const team = await startTeamServer({ dataDir, port })
  let server = team.server
  const phone = new Device("restart-phone")
  const laptop = new Device("restart-laptop")
  after(async () => {
    await phone.close().catch(() => {}); await laptop.close().catch(() => {})
    await server.stop().catch(() => {}); phone.cleanup(); laptop.cleanup()
  })

  await phone.open(server.url)
  await phone.signIn(ANN)
  await laptop.open(server.url)
  await laptop.signIn(BOB)
  await phone.waitForSyncStatus(/^All synced/)

  // The phone writes several accounts while the server dies under it.
  const names = ["Delta Dairy", "Elm Electric", "Fir Flooring", "Gale Glass"]
  await phone.createAccount({ name: names[0] })
  await server.kill9()
  for (const name of names.slice(1)) await phone.createAccount({ name })
  await phone.waitForSaved()
  await phone.waitForSyncStatus(/Can't sync|Connecting/)

  server = (await startTeamServer({ dataDir, port, existing: team })).server
  await phone.page.getByRole("button", { name: /Sync now/ }).click().catch(() => {})
  await phone.waitForSyncStatus(/^All synced/, 60_000)
  await laptop.page.getByRole("button", { name: /Sync now/ }).click().catch(() => {})
  await laptop.waitForSyncStatus(/^All synced/, 60_000)
  for (const name of names) {
    await laptop.goToList()
    await laptop.page.getByTestId("account-list").getByText(name).waitFor()
  }
})

test("archiving on one device hides the account on the other", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("archive-phone")
  const laptop = new Device("archive-laptop")
  after(async () => {
    await phone.close().catch(() => {}); await laptop.close().catch(() => {})
    await server.stop(); phone.cleanup(); laptop.cleanup()
  })
  await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Larch Logistics" })
  await phone.createAccount({ name: "Maple Motors" })
  await phone.waitForSyncStatus(/^All synced/)
  await laptop.open(server.url)
  await laptop.signIn(BOB)
  await laptop.waitForSyncStatus(/^All synced/)
  await laptop.goToList()
  await laptop.page.getByTestId("account-list").getByText("Larch Logistics").waitFor()

  await phone.openAccount("Larch Logistics")
  await phone.page.getByRole("button", { name: "Archive account" }).click()
  await phone.page.getByRole("button", { name: "Archive", exact: true }).click()
  await phone.waitForSyncStatus(/^All synced/)

  await laptop.page.getByRole("button", { name: "Sync now" }).click()
  await laptop.page.getByTestId("account-list").getByText("Larch Logistics").waitFor({ state: "detached" })
  await laptop.page.getByTestId("account-list").getByText("Maple Motors").waitFor()
})

// The server keeps 64 documents in memory. A new device that downloads more makes it unload
// and reload documents mid-sync, and each reload resets the device's sync state; the browser's
// automerge predates the flag that says so, so the reset comes as empty heads. The device must
// still hear the real heads and reach "All synced", not count every change as waiting.
test("a new device downloads more accounts than the server keeps in memory and is all synced", async () => {
  const { server, teamId } = await startTeamServer()
  const phone = new Device("sync-many")
  after(async () => {
    await phone.close().catch(() => {})
    await server.stop(); phone.cleanup()
  })
  // Built beside the server by `cargo xtask test`.
  const seed = path.join(process.env.CARGO_TARGET_DIR || path.join(WORKSPACE_ROOT, "target"), "debug", "examples", "seed")
  assert.ok(existsSync(seed), `the seed tool is missing: build it with cargo build -p fieldnotes-server --example seed (${seed})`)
  const token = await tokenFor(server.dataDir, BOB.email, { label: "seed" })
  execFileSync(seed, [server.url.replace("http", "ws") + "/sync", teamId, "150"], {
    stdio: "ignore",
    env: { ...process.env, FIELDNOTES_TOKEN: token },
  })

  await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.waitForSyncStatus(/^All synced/, 60_000)
  assert.equal(await phone.page.getByTestId("list-count").textContent(), "150 accounts")
  // The first hundred are drawn; the rest on request.
  assert.equal(await phone.page.locator(".account-row").count(), 100)
  await phone.page.getByRole("button", { name: /^Show more/ }).click()
  assert.equal(await phone.page.locator(".account-row").count(), 150)
})

test("'Sync now' while all is synced, with an account on screen, ends all synced again", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("sync-now")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })

  await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Quay Plumbing", branch: "East" })
  await phone.createAccount({ name: "Ridge Roofing", branch: "East" })
  await phone.waitForSyncStatus(/^All synced/)
  // On screen, the account stays open in the sync engine, as the team directory always does.
  await phone.openAccount("Quay Plumbing")
  await phone.waitForSyncStatus(/^All synced/)
  for (let round = 0; round < 3; round++) {
    await phone.page.getByRole("button", { name: "Sync now" }).click()
    // The pass asks about every stored account again (Ridge Roofing among them), so the line
    // is told again within moments; what it settles on must be "All synced". (The engine test
    // `a_document_closed_in_step_and_opened_again_on_the_same_connection_is_in_step` is the
    // one that pins reopening on one connection; this journey did not catch that defect.)
    await new Promise(resolve => setTimeout(resolve, 1500))
    await phone.waitForSyncStatus(/^All synced/, 10_000)
  }
  assert.deepEqual(phone.errors, [])
})
