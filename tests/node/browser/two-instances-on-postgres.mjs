// The two-device journeys with each device on its own `fieldnotes serve` instance of one
// PostgreSQL deployment, as behind a load balancer without sticky sessions: the phone syncs
// through the first instance, the laptop through the second, and what one writes (online, or
// offline and merged later) reaches the other through PostgreSQL.
//
// Run by `cargo xtask test`'s PostgreSQL stage; alone, from tests/node after `cargo build -p
// fieldnotes-server` and `cargo xtask web`:
//   FIELDNOTES_TEST_BACKEND=postgres node --test browser/two-instances-on-postgres.mjs
import { test, after } from "node:test"
import { startAppServer, startTeamServer } from "./harness.mjs"
import { freshDataDir, shareDatabase, testBackend } from "../lib/server.mjs"
import { noteSyncsAndReachesASecondDevice, offlineEditsOnTwoDevicesMerge } from "./two-devices.mjs"

if (testBackend() !== "postgres") {
  throw new Error("two-instances-on-postgres.mjs needs FIELDNOTES_TEST_BACKEND=postgres: both instances share one PostgreSQL database")
}

/** A team on a fresh database and two instances serving it. */
async function twoInstances() {
  const { server: first } = await startTeamServer()
  const secondDir = freshDataDir()
  shareDatabase(first.dataDir, secondDir)
  const second = await startAppServer({ dataDir: secondDir })
  after(async () => { await first.stop(); await second.stop() })
  return { first, second }
}

test("a note synced through one instance reaches a device on the other", async () => {
  const { first, second } = await twoInstances()
  await noteSyncsAndReachesASecondDevice(first, second, "instances-sync")
})

test("two devices on different instances edit the same account offline and merge without losing anything", async () => {
  const { first, second } = await twoInstances()
  await offlineEditsOnTwoDevicesMerge(first, second, "instances-merge")
})
