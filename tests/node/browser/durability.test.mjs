// "Nothing typed is lost": a browser killed with SIGKILL right after the app said "Saved on
// this phone" still has the note; a full disk keeps the note on screen, says so in plain words,
// and saves it once space is back.
import { test, after } from "node:test"
import assert from "node:assert/strict"
import { execFileSync } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { ANN, Device, launchKillable, startTeamServer } from "./harness.mjs"

test("a note shown as saved survives kill -9 of the browser", async () => {
  const { server } = await startTeamServer()
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "fieldnotes-kill-"))
  let chrome
  after(async () => { await chrome?.kill().catch(() => {}); await server.stop(); fs.rmSync(profile, { recursive: true, force: true }) })

  chrome = await launchKillable(profile)
  let page = chrome.page
  await page.goto(server.url)
  await page.getByLabel("Email").fill(ANN.email)
  await page.getByLabel("Password").fill(ANN.password)
  await page.getByRole("button", { name: "Sign in", exact: true }).click()
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
  // A real full disk: the browser profile lives on a small tmpfs that the test fills up.
  // Mounting needs root (CI runs as root); without it the test fails, it never skips.
  const { server } = await startTeamServer()
  const mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), "fieldnotes-tinyfs-"))
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=48m", "tmpfs", mountPoint])
  const phone = new Device("full-disk", { profileRoot: mountPoint })
  const filler = path.join(mountPoint, "filler")
  after(async () => {
    await phone.close().catch(() => {})
    await server.stop()
    execFileSync("umount", ["-l", mountPoint])
    fs.rmSync(mountPoint, { recursive: true, force: true })
  })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Ivy Interiors" })
  await phone.waitForSaved()

  // Fill every byte that is left.
  const fd = fs.openSync(filler, "w")
  const block = Buffer.alloc(1 << 20)
  try { for (;;) fs.writeSync(fd, block) } catch (e) { assert.equal(e.code, "ENOSPC") }
  try { for (;;) fs.writeSync(fd, block.subarray(0, 4096)) } catch (e) { assert.equal(e.code, "ENOSPC") }
  try { for (;;) fs.writeSync(fd, block.subarray(0, 1)) } catch (e) { assert.equal(e.code, "ENOSPC") }
  fs.closeSync(fd)

  await page.getByRole("button", { name: "Add visit note" }).click()
  // Larger than the slack a storage engine keeps in its open files, as a long pasted email is.
  const longNote = "Written while the phone was full. " + "Details pasted from the client's email. ".repeat(6000)
  await page.getByLabel("What did you learn?").fill(longNote)
  await page.getByRole("button", { name: "Save note" }).click()
  const saveStatus = page.getByTestId("save-status")
  await saveStatus.filter({ hasText: "Not saved" }).waitFor().catch(async e => { throw new Error(`save status stayed ${JSON.stringify(await saveStatus.innerText())}; df: ${execFileSync("df", ["-k", mountPoint])}`) })
  const said = await saveStatus.innerText()
  assert.match(said, /Retry|Free some space/, `the rep is told what to do: ${said}`)
  // The note stays on screen while it cannot be written.
  await page.getByTestId("timeline").getByText("Written while the phone was full", { exact: false }).waitFor()

  fs.rmSync(filler)
  await page.getByRole("button", { name: "Retry" }).click()
  await phone.waitForSaved().catch(async e => { throw new Error(`after Retry the save status is ${JSON.stringify(await saveStatus.innerText())}`) })
  await page.reload()
  await phone.openAccount("Ivy Interiors")
  await page.getByTestId("timeline").getByText("Written while the phone was full").waitFor()
})

test("a damaged stored document is reported in plain words and the rest still works", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("damaged")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Juniper Joinery" })
  const id = await page.evaluate(() => location.hash.split("/")[2])
  await phone.createAccount({ name: "Larch Lumber" })
  await phone.waitForSaved()
  // Offline, so the server cannot repair it: the first chunk of Juniper's document becomes
  // bytes that are not Automerge. Documents load when opened, so opening it finds the damage.
  await phone.setOffline(true)
  await page.evaluate(([name, docId]) => new Promise((resolve, reject) => {
    const open = indexedDB.open(name)
    open.onerror = () => reject(open.error)
    open.onsuccess = () => {
      const tx = open.result.transaction("chunks", "readwrite")
      tx.objectStore("chunks").put(new Uint8Array([1, 2, 3, 4, 5]), [docId, 0])
      tx.oncomplete = () => { open.result.close(); resolve() }
      tx.onerror = () => reject(tx.error)
    }
  }), [await phone.databaseName(), id])
  await page.reload()
  await phone.goToList()
  await page.getByTestId("account-list").getByText("Juniper Joinery").click()
  await phone.goToList()
  await page.getByText("1 stored account could not be opened by this version of Fieldnotes").waitFor()
  // The rest still works.
  await phone.openAccount("Larch Lumber")
  await phone.goToList()
  await page.getByTestId("account-list").getByText("Juniper Joinery").waitFor()
  assert.deepEqual(phone.errors.filter(e => /panicked|RuntimeError|unreachable/.test(e)), [])
})

test("an account damaged on disk comes back from the server and is stored clean", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("recover")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Kestrel Kitchens" })
  await phone.waitForSyncStatus(/^All synced/)
  const id = await page.evaluate(() => location.hash.split("/")[2])
  // Overwrite the account's first stored chunk with bytes that are not Automerge.
  await page.evaluate(([name, docId]) => new Promise((resolve, reject) => {
    const open = indexedDB.open(name)
    open.onsuccess = () => {
      const tx = open.result.transaction("chunks", "readwrite")
      tx.objectStore("chunks").put(new Uint8Array([9, 9, 9, 9]), [docId, 0])
      tx.oncomplete = () => { open.result.close(); resolve() }
      tx.onerror = () => reject(tx.error)
    }
    open.onerror = () => reject(open.error)
  }), [await phone.databaseName(), id])

  await page.reload()
  await phone.goToList()
  // It arrives again from the server, and the notice goes once it is readable.
  await page.getByTestId("account-list").getByText("Kestrel Kitchens").waitFor()
  await phone.waitForSyncStatus(/^All synced/)
  await phone.waitForSaved()
  const notices = await page.getByText("could not be opened").allTextContents()
  assert.equal(notices.length, 0, `still shown: ${notices.join(" | ")}`)
  // Rewritten whole: readable after another reload, even offline.
  await phone.setOffline(true)
  await page.reload()
  await phone.goToList()
  await page.getByTestId("account-list").getByText("Kestrel Kitchens").waitFor()
  assert.equal(await page.getByText("could not be opened").count(), 0)
})

test("an internal error stops the app in plain words, and a reload brings back what was saved", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("stopped")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Larch Logistics" })
  await phone.waitForSaved()
  assert.equal(await page.locator("#stopped").count(), 0)

  // A real trap inside the app's WebAssembly, raised from a timer as an event handler's would be:
  // an allocation no layout allows aborts the module (the release build turns every panic into
  // the same trap).
  await page.evaluate(async () => {
    const app = await import(document.querySelector("link[rel=modulepreload]").href)
    const exports = await app.default()
    setTimeout(() => exports.__wbindgen_malloc(0xfffffff0, 3))
  })
  const notice = page.getByRole("alert").filter({ hasText: "Fieldnotes stopped because of an error in the app" })
  await notice.waitFor()
  assert.match(await notice.innerText(), /Everything shown as saved is kept on this phone\. Reload to carry on/)
  assert.ok(phone.errors.some(e => /RuntimeError|unreachable/.test(e)), `no trap was reported: ${phone.errors}`)

  await notice.getByRole("button", { name: "Reload" }).click()
  await phone.goToList()
  await page.getByTestId("account-list").getByText("Larch Logistics").waitFor()
  assert.equal(await page.locator("#stopped").count(), 0)
})

test("without working randomness the app stops in plain words rather than making ids that could collide", async () => {
  const { server } = await startTeamServer()
  const phone = new Device("no-randomness")
  after(async () => { await phone.close().catch(() => {}); await server.stop(); phone.cleanup() })
  const page = await phone.open(server.url)
  await phone.signIn(ANN)
  await phone.createAccount({ name: "Rowan Roofing" })
  await phone.waitForSaved()

  // The browser's crypto fails just as a new account needs an id: the app must not go on with
  // made-up bytes (every such phone would give its accounts the same id).
  await phone.goToList()
  await page.getByRole("button", { name: "New account" }).click()
  await page.getByLabel("Client name").fill("Spruce Supplies")
  await page.evaluate(() => {
    crypto.getRandomValues = () => { throw new DOMException("refused", "QuotaExceededError") }
  })
  await page.getByRole("button", { name: "Create account" }).click()
  const notice = page.getByRole("alert").filter({ hasText: "Fieldnotes stopped because of an error in the app" })
  await notice.waitFor()
  assert.equal(await page.getByTestId("account-name").filter({ hasText: "Spruce Supplies" }).count(), 0,
    "no account was created without a random id")

  // A reload brings working crypto back: what was saved is there, what was typed is a draft.
  await notice.getByRole("button", { name: "Reload" }).click()
  await phone.goToList()
  await page.getByTestId("account-list").getByText("Rowan Roofing").waitFor()
  assert.equal(await page.getByTestId("account-list").getByText("Spruce Supplies").count(), 0)
  await page.getByRole("button", { name: "New account" }).click()
  assert.equal(await page.getByLabel("Client name").inputValue(), "Spruce Supplies", "the typed name is kept as a draft")
  await page.getByRole("button", { name: "Create account" }).click()
  await page.getByTestId("account-name").filter({ hasText: "Spruce Supplies" }).waitFor()
})
