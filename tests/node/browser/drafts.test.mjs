// "Nothing typed is lost, even before Save": what a rep types into a form is kept on the phone as
// they type, so a browser killed mid-sentence (a call, the system reclaiming memory, a swipe
// away, a dead battery) loses nothing typed more than a moment before.
// - SIGKILL at random moments while typing a note: everything typed more than 200 ms before the
//   kill comes back, character for character, with the ticked drivers, objection and follow-up;
// - every form (new account, details, reason, goal, follow-up, contact, note) after a reload and
//   after a reboot-like restart with no server and no network, announced on the account list;
// - a discarded draft stays discarded (and "Undo" brings it back first); a saved one leaves none;
// - two phones keep their own drafts, and no draft ever reaches the server;
// - sign-out counts drafts in its warning and deletes them; the next user sees none;
// - a full disk keeps the draft on screen, says so, and keeps it once space is back.
// Random choices come from DRAFTS_SEED (printed), so a failure replays.
import { test, after } from "node:test"
import assert from "node:assert/strict"
import { execFileSync } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { ANN, BOB, Device, startTeamServer } from "./harness.mjs"
import { addToTeam, createTeamWithUsers } from "../lib/server.mjs"

const SEED = Number(process.env.DRAFTS_SEED || Math.floor(Math.random() * 1e9))
console.log(`DRAFTS_SEED=${SEED}`)

/** mulberry32: a small seeded generator in [0, 1). */
function random(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const NOTE = "What did you learn?"
const banners = page => page.getByTestId("drafts")
const banner = (page, text) => page.locator(".draft-banner").filter({ hasText: text })

/** The draft records in the open team's database (their `draft/…` keys). */
async function draftRecords(phone) {
  return phone.page.evaluate(name => new Promise((resolve, reject) => {
    const open = indexedDB.open(name)
    open.onerror = () => reject(open.error)
    open.onsuccess = () => {
      const request = open.result.transaction("meta").objectStore("meta").getAllKeys()
      request.onsuccess = () => {
        open.result.close()
        resolve(request.result.filter(key => typeof key === "string" && key.startsWith("draft/")))
      }
      request.onerror = () => reject(request.error)
    }
  }), await phone.databaseName())
}

/** The capture form as the rep sees it. */
async function noteForm(page) {
  const pressed = await page.locator(".chip[aria-pressed=true]").allInnerTexts()
  return {
    text: await page.getByLabel(NOTE).inputValue(),
    drivers: pressed.sort(),
    objection: await page.getByLabel("Objection or resistance heard").inputValue(),
    followUp: await page.getByLabel("Follow-up", { exact: true }).inputValue(),
    due: await page.getByLabel("Due", { exact: true }).inputValue(),
  }
}

test("a note typed while the browser is killed at random moments comes back as typed", async () => {
  const rng = random(SEED)
  const { server } = await startTeamServer()
  const phone = new Device("drafts-kill")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  let page = await phone.openKillable(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Draft Depot" })
  await phone.waitForSaved()
  await phone.goToList()
  await page.getByRole("button", { name: "Add a visit note to Draft Depot" }).click()
  // The rep ticks what the visit touched and notes the follow-up, then writes.
  await page.getByRole("button", { name: "Delivery", exact: true }).click()
  await page.getByRole("button", { name: "Relationship", exact: true }).click()
  await page.getByLabel("Objection or resistance heard").pressSequentially("Wants a slot at half six")
  await page.getByLabel("Follow-up", { exact: true }).pressSequentially("Call back about the early van")
  await page.getByLabel("Due", { exact: true }).fill("2026-12-03")
  const expected = {
    drivers: ["Delivery", "Relationship"],
    objection: "Wants a slot at half six",
    followUp: "Call back about the early van",
    due: "2026-12-03",
  }
  const sentence = "They buy from us because the van comes before seven. The owner said twice " +
    "that the other wholesaler turns up at ten, when his fitters are already on site; " +
    "he would pay a little more for that. Ask about a standing order for the winter. " +
    "His daughter runs the counter now and wants training on the new boilers."
  let typed = ""
  await page.getByLabel(NOTE).click()
  for (let round = 0; round < 4; round++) {
    // Type at a rep's pace, with pauses, until the browser is killed at a random moment.
    const history = [[Date.now(), typed]]
    let attempted = typed
    let killedAt = null
    const killer = sleep(300 + rng() * 2500).then(async () => {
      killedAt = Date.now()
      await phone.kill()
    })
    while (killedAt === null && typed.length < sentence.length) {
      const next = sentence[typed.length]
      attempted = typed + next
      try {
        await page.keyboard.type(next)
      } catch {
        break
      }
      if (killedAt !== null) break
      typed += next
      history.push([Date.now(), typed])
      await sleep(rng() < 0.05 ? 400 + rng() * 600 : rng() * 120)
    }
    await killer
    const mustHave = history.filter(([at]) => at <= killedAt - 200).at(-1)[1]

    page = await phone.openKillable(server.url)
    await banner(page, "Unsaved note for Draft Depot").waitFor()
    await banner(page, "Unsaved note for Draft Depot").getByRole("button", { name: "Continue" }).click()
    await page.getByLabel(NOTE).waitFor()
    if (round === 0) await phone.screenshot("21-draft-restored-note")
    const restored = await noteForm(page)
    assert.ok(
      restored.text.startsWith(mustHave) && attempted.startsWith(restored.text),
      `round ${round} (DRAFTS_SEED=${SEED}): killed ${killedAt - history[0][0]} ms into typing; ` +
        `restored ${JSON.stringify(restored.text)}, typed 200 ms before the kill ${JSON.stringify(mustHave)}`,
    )
    assert.deepEqual({ ...restored, text: undefined }, { ...expected, text: undefined }, `round ${round}`)
    typed = restored.text
    await page.getByLabel(NOTE).click()
    await page.keyboard.press("Control+End")
  }
  assert.deepEqual(phone.errors.filter(e => /panicked|RuntimeError|unreachable/.test(e)), [])
})

test("a discarded draft stays discarded, Undo brings it back, and a saved one leaves none", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("drafts-end")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  let page = await phone.openKillable(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Draft Depot" })
  await phone.createAccount({ name: "Ember Electrical" })

  // Discard on the list, with a chance to undo.
  await phone.goToList()
  await page.getByRole("button", { name: "Add a visit note to Draft Depot" }).click()
  await page.getByLabel(NOTE).pressSequentially("Not worth keeping")
  await phone.goToList()
  const draft = banner(page, "Unsaved note for Draft Depot")
  await draft.getByRole("button", { name: "Discard" }).click()
  const undo = page.getByTestId("draft-discarded")
  await undo.filter({ hasText: "Unsaved note for Draft Depot discarded." }).waitFor()
  await phone.screenshot("22-draft-discarded-undo")
  assert.equal(await draft.count(), 0)
  await undo.getByRole("button", { name: "Undo" }).click()
  await draft.waitFor()
  await draft.getByRole("button", { name: "Continue" }).click()
  assert.equal(await page.getByLabel(NOTE).inputValue(), "Not worth keeping", "Undo brought it back whole")
  await phone.goToList()
  await draft.getByRole("button", { name: "Discard" }).click()
  await undo.waitFor()
  // Cancel on the note form discards too.
  await page.getByRole("button", { name: "Add a visit note to Ember Electrical" }).click()
  await page.getByLabel(NOTE).pressSequentially("Cancelled on purpose")
  await page.getByRole("button", { name: "Cancel" }).click()
  await page.getByTestId("draft-discarded").filter({ hasText: "Unsaved note for Ember Electrical discarded." }).waitFor()

  // Saved: the draft goes with the note, in one transaction.
  await phone.goToList()
  await page.getByRole("button", { name: "Add a visit note to Draft Depot" }).click()
  assert.equal(await page.getByLabel(NOTE).inputValue(), "", "the discarded draft is not offered again")
  await page.getByLabel(NOTE).pressSequentially("Saved right away, then the battery died")
  await page.getByLabel("Follow-up", { exact: true }).pressSequentially("Send the catalogue")
  await page.getByRole("button", { name: "Save note" }).click()
  await page.getByTestId("timeline").getByText("Saved right away, then the battery died").waitFor()
  await phone.waitForSaved()
  await sleep(300)
  assert.deepEqual(await draftRecords(phone), [])

  await phone.kill()
  page = await phone.openKillable(server.url)
  await phone.goToList()
  await phone.waitForSaved()
  assert.equal(await banners(page).count(), 0, "neither the discarded nor the saved draft is announced")
  await phone.openAccount("Draft Depot")
  assert.equal(await page.getByTestId("timeline").getByText("Saved right away, then the battery died").count(), 1)
  assert.equal(await page.getByTestId("follow-ups").getByText("Send the catalogue").count(), 1)
  await page.getByRole("button", { name: "Add visit note" }).click()
  assert.equal(await page.getByLabel(NOTE).inputValue(), "", "the form opens empty")
  await phone.goToList()
  await page.getByRole("button", { name: "Add a visit note to Ember Electrical" }).click()
  assert.equal(await page.getByLabel(NOTE).inputValue(), "")
})

test("every form keeps its draft over a reload and a reboot-like restart offline", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("drafts-forms")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  let page = await phone.openKillable(server.url)
  await phone.signIn(ANN)
  await phone.waitForServiceWorker()
  await phone.createAccount({ name: "Draft Depot", branch: "North", area: "Riverside" })
  await phone.createAccount({ name: "Flint Fixings" })
  await phone.waitForSyncStatus(/^All synced/)

  // Half-typed, every form: nothing saved.
  await phone.goToList()
  await page.getByRole("button", { name: "New account" }).click()
  await page.getByLabel("Client name").pressSequentially("Half-typed Hardware")
  await page.getByLabel("Branch").pressSequentially("South")
  await phone.openAccount("Draft Depot")
  await page.getByRole("button", { name: "Edit details" }).click()
  await page.getByLabel("Address or area").fill("")
  await page.getByLabel("Address or area").pressSequentially("Docks")
  await page.getByRole("button", { name: "Add a reason" }).click()
  await page.getByRole("combobox", { name: "Reason" }).selectOption({ label: "Training" })
  await page.getByLabel("How much it matters").selectOption({ label: "4 · strong" })
  await page.getByLabel("Evidence: what they said or did").pressSequentially("Asked twice for courses")
  await page.getByLabel("Their goal").pressSequentially("Open a second depot")
  await page.getByLabel("New follow-up").pressSequentially("Send the price list")
  await page.getByRole("button", { name: "Add contact" }).click()
  await page.getByLabel("Name", { exact: true }).pressSequentially("Pat Quinn")
  await page.getByLabel("Role").pressSequentially("Buyer")
  await page.getByRole("button", { name: "Add visit note" }).click()
  await page.getByLabel(NOTE).pressSequentially("They buy from us because the van comes before seven")
  await page.getByRole("button", { name: "Training", exact: true }).click()
  await sleep(300)

  const expectEverything = async () => {
    await phone.goToList()
    for (const text of [
      "Unsaved new account \u201cHalf-typed Hardware\u201d",
      "Unsaved details of Draft Depot",
      "Unsaved reason for Draft Depot",
      "Unsaved goal for Draft Depot",
      "Unsaved follow-up for Draft Depot",
      "Unsaved contact for Draft Depot",
      "Unsaved note for Draft Depot",
    ]) await banner(page, text).waitFor()
    assert.equal(await page.locator(".draft-banner").count(), 7)
    assert.equal(await banner(page, "Flint Fixings").count(), 0)

    await banner(page, "Unsaved new account").getByRole("button", { name: "Continue" }).click()
    assert.equal(await page.getByLabel("Client name").inputValue(), "Half-typed Hardware")
    assert.equal(await page.getByLabel("Branch").inputValue(), "South")
    await phone.goToList()
    await banner(page, "Unsaved note for").getByRole("button", { name: "Continue" }).click()
    assert.equal(await page.getByLabel(NOTE).inputValue(), "They buy from us because the van comes before seven")
    assert.deepEqual(await page.locator(".chip[aria-pressed=true]").allInnerTexts(), ["Training"])
    await phone.goToList()
    // The others are filled in where they stand on the account screen; Continue brings the
    // form into view with its first field focused.
    await banner(page, "Unsaved goal for").getByRole("button", { name: "Continue" }).click()
    const goal = page.getByLabel("Their goal")
    await goal.waitFor()
    assert.equal(await goal.inputValue(), "Open a second depot")
    assert.ok(await goal.evaluate(el => el === document.activeElement), "the goal field is focused")
    assert.equal(await page.getByLabel("New follow-up").inputValue(), "Send the price list")
    assert.equal(await page.getByLabel("Name", { exact: true }).inputValue(), "Pat Quinn")
    assert.equal(await page.getByLabel("Role").inputValue(), "Buyer")
    assert.equal(await page.getByLabel("Address or area").inputValue(), "Docks")
    assert.equal(await page.getByLabel("Client name").inputValue(), "Draft Depot")
    assert.equal(await page.getByRole("combobox", { name: "Reason" }).inputValue(), "training")
    assert.equal(await page.getByLabel("How much it matters").inputValue(), "4")
    assert.equal(await page.getByLabel("Evidence: what they said or did").inputValue(), "Asked twice for courses")
    // The account screen announces the note, whose form is a screen of its own.
    await banner(page, "Unsaved note for Draft Depot").waitFor()
    assert.equal(await page.locator(".draft-banner").count(), 1)
  }

  await page.reload()
  await expectEverything()
  await page.evaluate(() => window.scrollTo(0, 0))
  await phone.screenshot("23-drafts-on-account-screen")

  // A reboot with no signal: the browser dies, there is no server and no network.
  await phone.kill()
  await server.stop()
  page = await phone.openKillable(server.url, { offline: true })
  await expectEverything()
  await phone.goToList()
  await page.evaluate(() => window.scrollTo(0, 0))
  await phone.screenshot("24-drafts-after-reboot-offline")
  await phone.waitForSyncStatus(/^Offline|^Connecting|^Can't sync/)

  // Saving each form ends its draft; the rest stay. (The details being edited stand in for the
  // account's heading, so the account is opened from its row.)
  await phone.goToList()
  await page.getByRole("button", { name: /^Draft Depot/ }).click()
  await page.getByRole("button", { name: "Add goal" }).waitFor()
  await page.getByRole("button", { name: "Add goal" }).click()
  await page.getByText("Open a second depot").first().waitFor()
  assert.equal(await page.getByLabel("Their goal").inputValue(), "")
  await page.getByRole("button", { name: "Save contact" }).click()
  await page.getByRole("button", { name: "Save reason" }).click()
  await page.getByRole("button", { name: "Save", exact: true }).click()
  await page.getByRole("button", { name: "Add follow-up" }).click()
  await phone.waitForSaved()
  await phone.goToList()
  assert.deepEqual(
    (await page.locator(".draft-banner .draft-text").allInnerTexts()).sort(),
    ["Unsaved new account \u201cHalf-typed Hardware\u201d", "Unsaved note for Draft Depot"],
  )
  assert.deepEqual((await draftRecords(phone)).length, 2)
  assert.deepEqual(phone.errors.filter(e => /panicked|RuntimeError|unreachable/.test(e)), [])
})

test("two phones keep their own drafts, and no draft reaches the server", async () => {
  const { server } = await startTeamServer()
  const ann = new Device("drafts-ann")
  const bob = new Device("drafts-bob")
  after(async () => {
    await ann.close().catch(() => {}); await bob.close().catch(() => {})
    await server.stop(); ann.cleanup(); bob.cleanup()
  })
  await ann.open(server.url)
  await ann.signIn(ANN)
  await ann.createAccount({ name: "Draft Depot" })
  await ann.waitForSyncStatus(/^All synced/)
  await bob.open(server.url)
  await bob.signIn(BOB)
  await bob.waitForSyncStatus(/^All synced/)

  const annText = "Ann-only draft 7Q3 van"
  const bobText = "Bob-only draft 9K1 price"
  for (const [phone, text] of [[ann, annText], [bob, bobText]]) {
    await phone.goToList()
    await phone.page.getByRole("button", { name: "Add a visit note to Draft Depot" }).click()
    await phone.page.getByLabel(NOTE).pressSequentially(text)
  }
  for (const phone of [ann, bob]) {
    await phone.page.getByRole("button", { name: "Sync now" }).click()
    await phone.waitForSyncStatus(/^All synced/)
  }
  for (const [phone, mine] of [[ann, annText], [bob, bobText]]) {
    // Reloaded on the note form, the form opens with the draft.
    await phone.page.reload()
    await phone.page.getByText("Your unsaved note from").waitFor()
    assert.equal(await phone.page.getByLabel(NOTE).inputValue(), mine, `${phone.name} has its own draft`)
    await phone.goToList()
    assert.equal(await phone.page.locator(".draft-banner").count(), 1)
    if (phone === ann) await phone.screenshot("20-draft-on-account-list")
    await banner(phone.page, "Unsaved note for Draft Depot").getByRole("button", { name: "Continue" }).click()
    assert.equal(await phone.page.getByLabel(NOTE).inputValue(), mine)
  }

  // The server's database: no draft in it. The same check finds a saved note, so it can fail.
  const serverBytes = () => ["fieldnotes.sqlite3", "fieldnotes.sqlite3-wal"]
    .map(name => path.join(server.dataDir, name))
    .filter(file => fs.existsSync(file))
    .map(file => fs.readFileSync(file))
  const onServer = text => serverBytes().some(bytes => bytes.includes(Buffer.from(text)))
  assert.equal(onServer(annText), false, "Ann's draft is not on the server")
  assert.equal(onServer(bobText), false, "Bob's draft is not on the server")
  await ann.page.getByRole("button", { name: "Save note" }).click()
  await ann.page.getByTestId("timeline").getByText(annText).waitFor()
  await ann.waitForSyncStatus(/^All synced/)
  assert.equal(onServer(annText), true, "the saved note is on the server")
  assert.equal(onServer(bobText), false)
})

test("sign-out counts drafts in its warning and deletes them; the next user sees none", async () => {
  const { server } = await startTeamServer()
  const south = await createTeamWithUsers(server.dataDir, { team: "South", users: [] })
  await addToTeam(server.dataDir, { email: ANN.email, team: south.teamId, role: "rep" })
  const phone = new Device("drafts-sign-out")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.waitForServiceWorker()
  await phone.waitForSyncStatus(/^All synced/)
  const north = await phone.databaseName()

  // North, offline: an account that has not reached the server, and a note not saved.
  await phone.setOffline(true)
  await phone.createAccount({ name: "Draft Depot" })
  await page.getByRole("button", { name: "Add visit note" }).click()
  await page.getByLabel(NOTE).pressSequentially("They buy from us because the van comes before seven")
  await sleep(300)
  // South, back online: a new account half typed.
  await page.evaluate(() => { location.hash = "/team" })
  await page.getByLabel("Team", { exact: true }).selectOption({ label: "South" })
  await phone.goToList()
  await page.getByRole("button", { name: "New account" }).click()
  await page.getByLabel("Client name").pressSequentially("Southern Supplies")
  await phone.setOffline(false)
  await phone.waitForSyncStatus(/^All synced/)

  await page.evaluate(() => { location.hash = "/team" })
  await page.getByRole("button", { name: "Sign out", exact: true }).click()
  const warning = page.getByRole("alert").filter({ hasText: /unsaved drafts? and/ })
  await warning.waitFor()
  assert.match(
    await warning.innerText(),
    /^2 unsaved drafts and \d+ changes? not yet synced are on this phone\. Signing out deletes them from this phone for good\./,
  )
  await phone.screenshot("25-sign-out-warns-about-drafts")
  await page.getByRole("button", { name: "Stay signed in" }).click()
  await phone.goToList()
  await banner(page, "Unsaved new account \u201cSouthern Supplies\u201d").waitFor()

  await phone.signOut({ confirm: true })
  assert.deepEqual((await phone.databaseNames()).filter(n => n.startsWith("fieldnotes-") && n !== "fieldnotes-device"), [])
  assert.ok(!(await phone.databaseNames()).includes(north))

  // Bob on the same phone: nothing of Ann's drafts.
  await phone.signIn(BOB)
  await phone.waitForSyncStatus(/^All synced/)
  await phone.goToList()
  assert.equal(await banners(page).count(), 0)
  await page.getByRole("button", { name: "New account" }).click()
  assert.equal(await page.getByLabel("Client name").inputValue(), "")
  assert.equal(await page.getByText("Southern Supplies").count(), 0)
  assert.deepEqual(await draftRecords(phone), [])
  // And Ann, signing in again, finds them gone as the warning said.
  await phone.signOut({ confirm: true })
  await phone.signIn(ANN)
  await phone.waitForSyncStatus(/^All synced/)
  assert.equal(await banners(page).count(), 0)
})

test("a full disk keeps the draft on screen, says so, and keeps it once space is back", async () => {
  // A real full disk, as in durability.test.mjs: the profile on a small tmpfs filled up.
  const { server } = await startTeamServer()
  const mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), "fieldnotes-tinyfs-"))
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=48m", "tmpfs", mountPoint])
  const phone = new Device("drafts-full-disk", { profileRoot: mountPoint })
  const filler = path.join(mountPoint, "filler")
  after(async () => {
    await phone.close().catch(() => {})
    await server.stop()
    execFileSync("umount", ["-l", mountPoint])
    fs.rmSync(mountPoint, { recursive: true, force: true })
  })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Draft Depot" })
  await phone.waitForSyncStatus(/^All synced/)
  await page.getByRole("button", { name: "Add visit note" }).click()
  await page.getByLabel(NOTE).waitFor()

  const fd = fs.openSync(filler, "w")
  const block = Buffer.alloc(1 << 20)
  try { for (;;) fs.writeSync(fd, block) } catch (e) { assert.equal(e.code, "ENOSPC") }
  try { for (;;) fs.writeSync(fd, block.subarray(0, 4096)) } catch (e) { assert.equal(e.code, "ENOSPC") }
  try { for (;;) fs.writeSync(fd, block.subarray(0, 1)) } catch (e) { assert.equal(e.code, "ENOSPC") }
  fs.closeSync(fd)

  // A long email pasted in: more than the slack a storage engine keeps in its files.
  const longNote = "Pasted while the phone was full. " + "The client's email, word for word. ".repeat(7000)
  await page.getByLabel(NOTE).fill(longNote)
  const saveStatus = page.getByTestId("save-status")
  await saveStatus.filter({ hasText: /not saved/i }).waitFor().catch(async () => {
    throw new Error(`save status stayed ${JSON.stringify(await saveStatus.innerText())}; df: ${execFileSync("df", ["-k", mountPoint])}`)
  })
  const said = await saveStatus.innerText()
  assert.match(said, /^Draft not saved: this phone's storage is full[\s\S]*Free some space[\s\S]*Retry[\s\S]*still on screen/, `the rep is told what happened and what to do: ${said}`)
  await phone.screenshot("26-draft-not-saved-disk-full")
  assert.equal(await page.getByLabel(NOTE).inputValue(), longNote, "the draft stays on screen")

  fs.rmSync(filler)
  await page.getByRole("button", { name: "Retry" }).click()
  await phone.waitForSaved().catch(async () => {
    throw new Error(`after Retry the save status is ${JSON.stringify(await saveStatus.innerText())}`)
  })
  await page.reload()
  await page.getByText("Your unsaved note from").waitFor()
  assert.equal(await page.getByLabel(NOTE).inputValue(), longNote)
})
