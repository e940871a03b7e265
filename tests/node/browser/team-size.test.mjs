// A team of thousands on a new phone: it downloads them all to "All synced" with no changes
// waiting, showing progress; killed half-way (SIGKILL, as a phone kills a browser), it resumes
// from what it had stored rather than starting over, and lists what has arrived meanwhile.
import { test, after } from "node:test"
import assert from "node:assert/strict"
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import path from "node:path"
import { ANN, BOB, Device, startTeamServer } from "./harness.mjs"
import { WORKSPACE_ROOT, tokenFor } from "../lib/server.mjs"

const ACCOUNTS = Number(process.env.TEAM_SIZE_ACCOUNTS || 2500)

/** "Downloading accounts: 812 of 2500" → 812, or null. */
async function downloaded(page) {
  const line = await page.getByTestId("sync-status").textContent().catch(() => "")
  const match = /Downloading accounts: (\d+) of (\d+)/.exec(line || "")
  return match ? Number(match[1]) : null
}

/** After a kill within Chromium's cookie flush, the app may say "signed out": sign in again. */
async function signInAgainIfAsked(page, user) {
  const again = page.getByRole("region", { name: "Sign in again" })
  if (await again.isVisible().catch(() => false)) {
    await again.getByLabel("Password").fill(user.password)
    await again.getByRole("button", { name: "Sign in", exact: true }).click()
  }
}

test(`a new phone downloads ${ACCOUNTS} accounts, is killed half-way, resumes and is all synced with nothing waiting`, async () => {
  const { server, teamId } = await startTeamServer()
  const phone = new Device("team-size")
  after(async () => {
    await phone.close().catch(() => {})
    await server.stop(); phone.cleanup()
  })
  const seed = path.join(process.env.CARGO_TARGET_DIR || path.join(WORKSPACE_ROOT, "target"), "debug", "examples", "seed")
  assert.ok(existsSync(seed), `the seed tool is missing: build it with cargo build -p fieldnotes-server --example seed (${seed})`)
  const token = await tokenFor(server.dataDir, BOB.email, { label: "seed" })
  execFileSync(seed, [server.url.replace("http", "ws") + "/sync", teamId, String(ACCOUNTS)], {
    stdio: "ignore",
    env: { ...process.env, FIELDNOTES_TOKEN: token },
  })

  let page = await phone.openKillable(server.url)
  await phone.signIn(ANN)
  // Half-way, the phone is killed.
  const deadline = Date.now() + 180_000
  let before = null
  while (Date.now() < deadline) {
    before = await downloaded(page)
    if (before !== null && before >= ACCOUNTS / 4) break
    await new Promise(r => setTimeout(r, 100))
  }
  assert.ok(before !== null && before < ACCOUNTS, `the download was seen under way (last seen: ${before})`)
  await phone.kill()

  page = await phone.openKillable(server.url)
  // What had arrived is listed at once, from the phone's own storage, before any sync.
  await page.getByTestId("list-count").waitFor({ timeout: 60_000 })
  const listed = Number((await page.getByTestId("list-count").textContent()).split(" ")[0])
  assert.ok(listed >= before * 0.9, `after the kill the phone lists ${listed} accounts; it had ${before} before`)
  await signInAgainIfAsked(page, ANN)
  // It resumes from there: the next progress line starts near where it stopped.
  let resumedAt = null
  const resumeDeadline = Date.now() + 60_000
  while (resumedAt === null && Date.now() < resumeDeadline) {
    resumedAt = await downloaded(page)
    if (resumedAt === null && /^All synced/.test(await page.getByTestId("sync-status").textContent())) break
    await new Promise(r => setTimeout(r, 50))
  }
  if (resumedAt !== null) {
    assert.ok(resumedAt >= listed * 0.9, `the download resumed at ${resumedAt}, having ${listed} stored`)
  }
  // The cookie may have been lost with the kill: the app then says "Signed out" once it asks
  // the server, which can come after the first look above. Sign in again when asked.
  const syncedDeadline = Date.now() + 300_000
  while (Date.now() < syncedDeadline) {
    if (/^All synced/.test(await page.getByTestId("sync-status").textContent())) break
    if (/^Signed out/.test(await page.getByTestId("sync-status").textContent())) await signInAgainIfAsked(page, ANN)
    await new Promise(r => setTimeout(r, 200))
  }
  await phone.waitForSyncStatus(/^All synced/, 1_000)
  const status = await page.getByTestId("sync-status").textContent()
  assert.doesNotMatch(status, /waiting/, `a phone that only downloaded has no changes waiting: ${status}`)
  assert.equal(await page.getByTestId("list-count").textContent(), `${ACCOUNTS} accounts`)
  // Searchable like any list.
  await page.getByLabel("Search accounts").fill("Crawley")
  const found = await page.getByTestId("list-count").textContent()
  assert.match(found, new RegExp(`^\\d+ of ${ACCOUNTS} accounts$`))
  await phone.screenshot("team-size-all-synced")
})
