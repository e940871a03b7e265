// Upgrading a phone from the build before sign-in. That build kept every document in one
// IndexedDB database, "fieldnotes" (stores "chunks", keyed [document id, sequence], and "meta":
// the same layout as today's per-user databases). Once the server asked who is there, that build
// could no longer sync, so notes typed offline before the upgrade exist only in that database.
// The first sign-in on the phone must take them into the team, sync them, and only then delete
// the old database.
import { test, after } from "node:test"
import assert from "node:assert/strict"
import { ANN, BOB, Device, startTeamServer } from "./harness.mjs"

/** Copies the chunks of database `source` into a new database named "fieldnotes". */
async function leaveAsTheOldBuildWould(page, source) {
  return page.evaluate(async source => {
    const open = (name, upgrade) => new Promise((resolve, reject) => {
      // Today's database is read at whatever version it has; the old build's is version 1.
      const request = upgrade ? indexedDB.open(name, 1) : indexedDB.open(name)
      request.onupgradeneeded = () => upgrade?.(request.result)
      request.onsuccess = () => resolve(request.result)
      request.onerror = () => reject(request.error)
    })
    const from = await open(source)
    const [keys, values] = await new Promise((resolve, reject) => {
      const transaction = from.transaction("chunks")
      const store = transaction.objectStore("chunks")
      const keys = store.getAllKeys()
      const values = store.getAll()
      transaction.oncomplete = () => resolve([keys.result, values.result])
      transaction.onerror = () => reject(transaction.error)
    })
    from.close()
    const to = await open("fieldnotes", db => {
      db.createObjectStore("chunks")
      db.createObjectStore("meta")
    })
    await new Promise((resolve, reject) => {
      const transaction = to.transaction("chunks", "readwrite")
      const store = transaction.objectStore("chunks")
      keys.forEach((key, i) => store.put(values[i], key))
      transaction.oncomplete = resolve
      transaction.onerror = () => reject(transaction.error)
    })
    to.close()
    return keys.length
  }, source)
}

test("notes the build before sign-in kept are taken into the team at the first sign-in", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("upgrade")
  const colleague = new Device("upgrade-colleague")
  after(async () => {
    await phone.close().catch(() => {})
    await colleague.close().catch(() => {})
    await server.stop()
    phone.cleanup()
    colleague.cleanup()
  })

  // Notes typed with no signal, which never reached the server...
  await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.waitForServiceWorker()
  await phone.setOffline(true)
  await phone.createAccount({ name: "Harbour Electrical", branch: "North", area: "Docks" })
  await phone.addNoteFromList("Harbour Electrical", {
    text: "They buy from us because the branch is round the corner",
    drivers: ["Branch proximity"],
  })
  await phone.waitForSaved()
  // ...left on the phone the way the old build kept them, and nothing else of today's app.
  const copied = await leaveAsTheOldBuildWould(phone.page, await phone.databaseName())
  assert.ok(copied >= 2, `the account and the directory were copied (${copied} chunks)`)
  await phone.signOut({ confirm: true })
  assert.deepEqual(
    (await phone.databaseNames()).filter(name => name !== "fieldnotes-device"),
    ["fieldnotes"],
    "only the old database holds the notes now",
  )

  // The upgrade: online again, the rep signs in for the first time.
  await phone.setOffline(false)
  await phone.signIn(ANN)
  await phone.openAccount("Harbour Electrical")
  await phone.page.getByTestId("timeline")
    .getByText("They buy from us because the branch is round the corner").waitFor()
  await phone.waitForSyncStatus(/^All synced/)
  await phone.page.waitForFunction(
    async () => !(await indexedDB.databases()).some(d => d.name === "fieldnotes"),
    null,
    { timeout: 10_000 },
  )

  // A colleague's phone gets the account and the note from the server.
  await colleague.open(server.url)
  await colleague.signIn(BOB)
  await colleague.openAccount("Harbour Electrical")
  await colleague.page.getByTestId("timeline")
    .getByText("They buy from us because the branch is round the corner").waitFor()
  assert.deepEqual(phone.errors.filter(e => !/ERR_INTERNET_DISCONNECTED|WebSocket/.test(e)), [])
})
