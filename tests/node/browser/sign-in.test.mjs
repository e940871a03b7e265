// Journey 6, sign-in (docs/auth.md), in a real browser against the real server:
// - first run: the setup link `fieldnotes serve` prints creates the administrator and the team;
// - after one sign-in the app opens offline with that identity;
// - a session revoked while the phone is offline with edits: back online it says "signed out",
//   keeps the edits, and signing in again syncs them to a colleague's device;
// - sign-out with unsynced changes warns, then deletes the user's data from the device;
// - a rep of another team sees none of the first team's accounts;
// - an invitation link lets a new rep join, and the team's accounts arrive by themselves;
// - a rep in two teams switches between them;
// - wrong password, too many attempts and no network are each said in plain words.
import { test, after } from "node:test"
import assert from "node:assert/strict"
import { ANN, BOB, Device, startFirstRunServer, startTeamServer } from "./harness.mjs"
import { addToTeam, createTeamWithUsers, inviteLink, revokeSessions, runAdmin } from "../lib/server.mjs"

const signInAgain = page => page.getByRole("region", { name: "Sign in again" })

test("first run: the setup link creates the administrator and the team in the browser", async () => {
  const server = await startFirstRunServer()
  const phone = new Device("first-run")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  // The printed link is the address the server listens on.
  assert.match(server.setupUrl, /^http:\/\/127\.0\.0\.1:\d+\/#\/setup\/[A-Za-z0-9_-]+$/)
  assert.ok(server.setupUrl.startsWith(server.url + "/#/setup/"), `${server.setupUrl} is on ${server.url}`)
  const setupToken = server.setupUrl.split("#/setup/")[1]
  const page = await phone.open(server.setupUrl)
  await page.getByRole("heading", { name: "Set up Fieldnotes" }).waitFor()
  await phone.screenshot("15-setup")
  await page.getByLabel("Your name").fill("Dana Reyes")
  await page.getByLabel("Email").fill("dana@example.com")
  await page.getByLabel("Password").fill("short")
  await page.getByLabel("Team name").fill("North")
  await page.getByRole("button", { name: "Create account and team" }).click()
  await page.getByText("Choose a password of at least 10 characters.").waitFor()
  await page.getByLabel("Password").fill("dana-long-password")
  await page.getByRole("button", { name: "Create account and team" }).click()
  await page.getByRole("button", { name: "New account" }).waitFor()
  assert.equal(await page.evaluate(() => location.hash), "#/", "the setup link is left behind")

  // Signed in: the first account syncs, and the server knows the administrator and the team.
  await phone.createAccount({ name: "Acme Plumbing" })
  await phone.waitForSyncStatus(/^All synced/)
  await page.evaluate(() => { location.hash = "/team" })
  await page.getByTestId("signed-in-as").filter({ hasText: "Signed in as Dana Reyes (dana@example.com)" }).waitFor()
  await page.getByText("Team: North").waitFor()
  const users = (await runAdmin(server.dataDir, ["user", "list"])).stdout
  assert.match(users, /dana@example\.com/)
  assert.match((await runAdmin(server.dataDir, ["team", "list"])).stdout, /North/)

  // The link works once.
  await page.evaluate(token => { location.hash = "/setup/" + token }, setupToken)
  await page.getByLabel("Your name").fill("Mallory")
  await page.getByLabel("Email").fill("mallory@example.com")
  await page.getByLabel("Password").fill("mallory-password")
  await page.getByLabel("Team name").fill("Takeover")
  await page.getByRole("button", { name: "Create account and team" }).click()
  await page.getByRole("alert").filter({ hasText: /already been used or is not valid/ }).waitFor()
})

test("after one sign-in the app opens offline with that identity", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("signed-in-offline")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.waitForSyncStatus(/^All synced/)
  await phone.waitForServiceWorker()

  await phone.setOffline(true)
  await phone.page.reload()
  await phone.page.getByRole("button", { name: "New account" }).waitFor()
  assert.equal(await phone.page.getByRole("heading", { name: "Sign in to Fieldnotes" }).count(), 0)
  // The service worker never answers for the API: offline, a session check fails outright.
  assert.equal(await phone.page.evaluate(() => fetch("/api/session").then(r => `answered ${r.status}`, () => "failed")), "failed")
  await phone.createAccount({ name: "Birch Bakery" })
  await phone.addNoteFromList("Birch Bakery", { text: "Written offline after a reload" })
  const meta = await phone.page.getByTestId("timeline").locator(".meta").first().innerText()
  assert.match(meta, /Ann Lee/, "the note's author is the signed-in user")

  // A browser restart with no network at all: still signed in, still there.
  await phone.close()
  await phone.open(server.url, { offline: true })
  await phone.openAccount("Birch Bakery")
  await phone.page.getByTestId("timeline").getByText("Written offline after a reload").waitFor()
  await phone.waitForSyncStatus(/^Offline · \d+ changes? waiting/)
  await phone.page.evaluate(() => { location.hash = "/team" })
  await phone.page.getByTestId("signed-in-as").filter({ hasText: "Ann Lee (ann@example.com)" }).waitFor()

  // Back online, the same session syncs what waited.
  await phone.setOffline(false)
  await phone.waitForSyncStatus(/^All synced/)
})

test("a session revoked while offline: edits kept, 'signed out', sign in again and all syncs", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("revoked-phone")
  const laptop = new Device("revoked-laptop")
  after(async () => {
    await phone.close().catch(() => {}); await laptop.close().catch(() => {})
    await server.stop(); phone.cleanup(); laptop.cleanup()
  })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.waitForSyncStatus(/^All synced/)

  await phone.setOffline(true)
  await phone.createAccount({ name: "Cedar Garage" })
  await phone.addNoteFromList("Cedar Garage", { text: "Typed while the session was revoked", drivers: ["Delivery"] })
  await phone.waitForSaved()
  await revokeSessions(server.dataDir, ANN.email)

  await phone.setOffline(false)
  await phone.waitForSyncStatus(/^Signed out — sign in to sync · \d+ changes? waiting/)
  const form = signInAgain(page)
  await form.waitFor()
  await phone.screenshot("16-signed-out")
  assert.equal(await form.getByLabel("Email").inputValue(), ANN.email, "the email is prefilled")
  // Nothing was lost, and the rep can keep working.
  await phone.openAccount("Cedar Garage")
  await page.getByTestId("timeline").getByText("Typed while the session was revoked").waitFor()
  await phone.waitForSyncStatus(/^Signed out/)

  // Signing in again resumes syncing by itself.
  await form.getByLabel("Password").fill(ANN.password)
  await form.getByRole("button", { name: "Sign in", exact: true }).click()
  await phone.waitForSyncStatus(/^All synced/)
  await form.waitFor({ state: "detached" })

  await laptop.open(server.url)
  await laptop.signIn(BOB)
  await laptop.waitForSyncStatus(/^All synced/)
  await laptop.openAccount("Cedar Garage")
  await laptop.page.getByTestId("timeline").getByText("Typed while the session was revoked").waitFor()
})

test("signing in again as someone else is refused: the device keeps its user's notes", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("wrong-user")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Dove Dental" })
  await phone.waitForSyncStatus(/^All synced/)
  await revokeSessions(server.dataDir, ANN.email)
  // The server disconnects revoked sessions within 10 seconds.
  await phone.waitForSyncStatus(/^Signed out/, 30_000)
  const form = signInAgain(page)
  // The email field is read-only; a determined rep could still change it in the page.
  await form.getByLabel("Email").evaluate((el, email) => {
    el.readOnly = false
    el.value = email
    el.dispatchEvent(new InputEvent("input", { bubbles: true }))
  }, BOB.email)
  await form.getByLabel("Password").fill(BOB.password)
  await form.getByRole("button", { name: "Sign in", exact: true }).click()
  await form.getByRole("alert").filter({ hasText: "another person's account" }).waitFor()
  await phone.waitForSyncStatus(/^Signed out/)
  // Bob's session was revoked at once: the browser holds no session at all.
  await assert.doesNotReject(page.waitForFunction(async () => (await fetch("/api/session")).status === 401, null, { timeout: 10_000 }))
})

test("sign-out with unsynced changes warns, then deletes the user's data from the device", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("sign-out")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.waitForServiceWorker()
  const database = await phone.databaseName()
  assert.ok((await phone.databaseNames()).includes(database))

  await phone.setOffline(true)
  await phone.createAccount({ name: "Elm Electric" })
  await phone.waitForSaved()
  await page.evaluate(() => { location.hash = "/team" })
  await page.getByRole("button", { name: "Sign out", exact: true }).click()
  const warning = page.getByRole("alert").filter({ hasText: /have not reached the server yet/ })
  await warning.waitFor()
  assert.match(await warning.innerText(), /^\d+ changes on this phone have not reached the server yet\. Signing out deletes them/)
  await phone.screenshot("17-sign-out-warning")
  // "Stay signed in" keeps everything.
  await page.getByRole("button", { name: "Stay signed in" }).click()
  await phone.goToList()
  await page.getByTestId("account-list").getByText("Elm Electric").waitFor()

  await phone.signOut({ confirm: true })
  assert.ok(!(await phone.databaseNames()).includes(database), "the user's database is gone")
  assert.equal(await phone.storedSession(), null, "the device forgot the user")
  // Reopening (offline, from the service worker) shows the sign-in screen, nothing else.
  await page.reload()
  await page.getByRole("heading", { name: "Sign in to Fieldnotes" }).waitFor()
  assert.deepEqual((await phone.databaseNames()).filter(n => n.startsWith("fieldnotes-") && n !== "fieldnotes-device"), [])

  // The sign-out could not reach the server while offline: the next start online revokes
  // the session, so the browser holds nothing of the user any more.
  await phone.setOffline(false)
  await page.reload()
  await page.waitForFunction(async () => (await fetch("/api/session")).status === 401, null, { timeout: 10_000 })
  for (let i = 0; (await phone.deviceRecord("revoke-pending")) !== null; i++) {
    assert.ok(i < 100, "the pending revocation is done and forgotten")
    await new Promise(r => setTimeout(r, 100))
  }

  // Signed in again, the account was never synced: it is gone, as the warning said.
  await phone.signIn(ANN)
  await phone.waitForSyncStatus(/^All synced/)
  assert.equal(await page.getByTestId("account-list").getByText("Elm Electric").count(), 0)
})

test("a rep of another team sees none of the first team's accounts", async () => {
  const { server } = await startTeamServer()
  const CAROL = { email: "carol@example.com", name: "Carol South", role: "rep", password: "carol-south-password" }
  await createTeamWithUsers(server.dataDir, { team: "South", users: [CAROL] })
  const phone = new Device("north-then-south")
  const other = new Device("south")
  after(async () => {
    await phone.close().catch(() => {}); await other.close().catch(() => {})
    await server.stop(); phone.cleanup(); other.cleanup()
  })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Fir Flooring" })
  await phone.addNoteFromList("Fir Flooring", { text: "North's secret pricing" })
  await phone.waitForSyncStatus(/^All synced/)
  const northAccount = await page.evaluate(() => location.hash.split("/")[2])

  // Carol on her own phone: the team's list is empty, and North's account id gets nothing.
  await other.open(server.url)
  await other.signIn(CAROL)
  await other.waitForSyncStatus(/^All synced/)
  await other.page.getByText("No accounts yet.").waitFor()
  await other.page.evaluate(id => { location.hash = "/account/" + id }, northAccount)
  await other.page.getByRole("button", { name: "Sync now" }).click()
  await other.waitForSyncStatus(/^All synced/)
  assert.equal(await other.page.getByText("Fir Flooring").count(), 0)
  assert.equal(await other.page.getByText("North's secret pricing").count(), 0)

  // Carol on Ann's phone after Ann signed out: nothing of North's is on it or shown.
  await phone.signOut()
  await phone.signIn(CAROL)
  await phone.waitForSyncStatus(/^All synced/)
  await page.getByText("No accounts yet.").waitFor()
  const names = await phone.databaseNames()
  assert.deepEqual(names.filter(n => n.startsWith("fieldnotes-") && n !== "fieldnotes-device"), [await phone.databaseName()])
  const stored = await page.evaluate(name => new Promise((resolve, reject) => {
    const open = indexedDB.open(name)
    open.onerror = () => reject(open.error)
    open.onsuccess = () => {
      const request = open.result.transaction("chunks").objectStore("chunks").getAllKeys()
      request.onsuccess = () => { open.result.close(); resolve(request.result.map(k => k[0])) }
      request.onerror = () => reject(request.error)
    }
  }), await phone.databaseName())
  assert.ok(!stored.includes(northAccount), "North's account is not stored on the phone")
})

test("an invitation link lets a new rep join; the team's accounts arrive with progress shown", async () => {
  const { server, teamId } = await startTeamServer()
  const phone = new Device("inviter")
  const newcomer = new Device("newcomer")
  after(async () => {
    await phone.close().catch(() => {}); await newcomer.close().catch(() => {})
    await server.stop(); phone.cleanup(); newcomer.cleanup()
  })
  await phone.open(server.url)
  await phone.signIn(ANN)
  const names = ["Gale Glass", "Hazel Hardware", "Ivy Interiors", "Juniper Joinery", "Kestrel Kitchens", "Larch Logistics"]
  for (const name of names) await phone.createAccount({ name })
  await phone.waitForSyncStatus(/^All synced/)

  const link = await inviteLink(server.dataDir, { team: teamId, role: "rep", email: "erin@example.com" })
  const page = await newcomer.open(link.replace(/^https?:\/\/[^/]+/, server.url))
  await page.getByRole("heading", { name: "Join North" }).waitFor()
  await newcomer.screenshot("18-invitation")
  assert.equal(await page.getByLabel("Email").inputValue(), "erin@example.com", "the invited email is filled in")
  // Watch the status line while the accounts download.
  await page.evaluate(() => {
    window.statusSeen = []
    new MutationObserver(() => {
      const line = document.querySelector("[data-testid=sync-status]")
      if (line) window.statusSeen.push(line.textContent)
    }).observe(document.body, { subtree: true, childList: true, characterData: true })
  })
  await page.getByLabel("Your name").fill("Erin Field")
  await page.getByLabel("Password").fill("erin-new-password")
  await page.getByRole("button", { name: "Join North" }).click()
  await newcomer.waitForSyncStatus(/^All synced/)
  for (const name of names) await page.getByTestId("account-list").getByText(name).waitFor()
  const seen = await page.evaluate(() => window.statusSeen)
  assert.ok(seen.some(line => /^Downloading accounts: \d+ of 6/.test(line)), `progress was shown: ${JSON.stringify([...new Set(seen)])}`)
  // The link is used up.
  const again = await newcomer.page.evaluate(async path => (await fetch(path)).status, "/api/invitations/" + link.split("#/invite/")[1])
  assert.equal(again, 404)
})

/** A server with North (Ann and Bob) and South (Ann too), and a phone for Ann. */
async function annInNorthAndSouth(deviceName) {
  const { server } = await startTeamServer()
  const south = await createTeamWithUsers(server.dataDir, { team: "South", users: [] })
  await addToTeam(server.dataDir, { email: ANN.email, team: south.teamId, role: "rep" })
  const phone = new Device(deviceName)
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  return { server, phone }
}

test("a rep in two teams switches between them, each with its own accounts", async () => {
  const { server, phone } = await annInNorthAndSouth("two-teams")
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "North Only Ltd" })
  await phone.waitForSyncStatus(/^All synced/)

  await page.evaluate(() => { location.hash = "/team" })
  const team = page.getByLabel("Team", { exact: true })
  await team.waitFor()
  assert.deepEqual(await team.locator("option").allInnerTexts(), ["North", "South"])
  await team.selectOption({ label: "South" })
  await phone.goToList()
  await page.getByText("No accounts yet.").waitFor()
  await phone.createAccount({ name: "South Only Ltd" })
  await phone.waitForSyncStatus(/^All synced/)

  // Remembered across a reload, and each team shows only its own.
  await page.reload()
  await phone.goToList()
  await page.getByTestId("account-list").getByText("South Only Ltd").waitFor()
  assert.equal(await page.getByText("North Only Ltd").count(), 0)
  await page.evaluate(() => { location.hash = "/team" })
  await page.getByLabel("Team", { exact: true }).selectOption({ label: "North" })
  await phone.goToList()
  await page.getByTestId("account-list").getByText("North Only Ltd").waitFor()
  assert.equal(await page.getByText("South Only Ltd").count(), 0)
  await phone.waitForSyncStatus(/^All synced/)
})

test("sign-out warns about changes waiting in a team that is not open", async () => {
  const { server, phone } = await annInNorthAndSouth("sign-out-two-teams")
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.waitForServiceWorker()
  await phone.waitForSyncStatus(/^All synced/)

  // North, with no signal: an account that has not reached the server.
  await phone.setOffline(true)
  await phone.createAccount({ name: "Offline North Co" })
  await phone.waitForSaved()
  // Then South, back online: the open team has nothing waiting.
  await page.evaluate(() => { location.hash = "/team" })
  await page.getByLabel("Team", { exact: true }).selectOption({ label: "South" })
  await phone.goToList()
  await page.getByText("No accounts yet.").waitFor()
  await phone.setOffline(false)
  await phone.waitForSyncStatus(/^All synced/)

  // Signing out deletes North's data too: the warning counts its waiting changes.
  await page.evaluate(() => { location.hash = "/team" })
  await page.getByRole("button", { name: "Sign out", exact: true }).click()
  const warning = page.getByRole("alert").filter({ hasText: /have not reached the server yet/ })
  await warning.waitFor()
  assert.match(await warning.innerText(), /^\d+ changes? on this phone (have|has) not reached the server yet/)
  await page.getByRole("button", { name: "Stay signed in" }).click()

  // Kept: back in North, it syncs.
  await page.getByLabel("Team", { exact: true }).selectOption({ label: "North" })
  await phone.goToList()
  await page.getByTestId("account-list").getByText("Offline North Co").waitFor()
  await phone.waitForSyncStatus(/^All synced/)
})

test("a wrong password, too many attempts and no network are each said in plain words", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("sign-in-errors")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await phone.waitForServiceWorker()
  const error = page.locator("form.credentials .error")
  // Submits and waits for the server's answer (none when offline).
  const submit = async ({ answered = true } = {}) => {
    const response = answered && page.waitForResponse(r => r.url().endsWith("/api/session") && r.request().method() === "POST")
    await page.getByRole("button", { name: "Sign in", exact: true }).click()
    if (response) await response
  }

  await page.getByLabel("Email").fill(ANN.email)
  await page.getByLabel("Password").fill("not-the-password")
  await submit()
  await error.filter({ hasText: "That email and password do not match" }).waitFor()
  await phone.screenshot("19-sign-in-error")

  await phone.setOffline(true)
  await submit({ answered: false })
  await error.filter({ hasText: "Can't reach the server. Check your signal and try again." }).waitFor()
  await phone.setOffline(false)

  // Five failures lock the email for a while, even with the right password.
  for (let attempt = 2; attempt <= 5; attempt++) {
    await page.getByLabel("Password").fill(`wrong-password-${attempt}`)
    await submit()
  }
  await page.getByLabel("Password").fill(ANN.password)
  await submit()
  await error.filter({ hasText: /^Too many wrong passwords for this account\. Wait \d+ minutes/ }).waitFor()
  assert.equal(await page.getByRole("button", { name: "New account" }).count(), 0)
})
