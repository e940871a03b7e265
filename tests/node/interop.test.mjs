// Interop: the real npm automerge-repo 2.x client against our server binary.
// FIELDNOTES_BIN selects the binary (default ../../target/debug/fieldnotes); missing binary = failure.
// FIELDNOTES_SERVER=reference runs the same test against the reference JS server (to check the test).
import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { generateAutomergeUrl } from "@automerge/automerge-repo"
import { startServer, serverKindFromEnv } from "./lib/server.mjs"
import { connectClient, waitAllAcked, pull, sameHeads } from "./lib/client.mjs"
import { accountSeed, editHandle, toJSON, ACCOUNT_EDITS } from "./lib/accounts.mjs"

const DOCS = 100
let server

before(async () => {
  server = await startServer({ kind: serverKindFromEnv() })
})

after(async () => {
  if (server) await server.stop()
})

test(`push ${DOCS} account documents with one client, pull them all with a fresh one`, { timeout: 180_000 }, async () => {
  const pusher = await connectClient(server.wsUrl, { peerId: "interop-pusher" })
  assert.ok(pusher.serverStorageId, "server's peer message must carry a storageId (needed for acknowledgement tracking)")
  const expected = new Map()
  const handles = []
  try {
    for (let i = 0; i < DOCS; i++) {
      const h = pusher.repo.create(accountSeed(i))
      // half the edits at once, the rest after a turn of the event loop, so the server sees
      // both a first sync carrying several changes and incremental ones
      editHandle(h, i, 0, 4)
      handles.push(h)
      if (i % 10 === 9) await new Promise(r => setImmediate(r))
    }
    for (let i = 0; i < DOCS; i++) editHandle(handles[i], i, 4, ACCOUNT_EDITS)
    for (let i = 0; i < DOCS; i++) {
      const h = handles[i]
      assert.equal(h.history().length, 1 + ACCOUNT_EDITS, "each document has ten changes")
      expected.set(h.url, { heads: h.heads(), json: toJSON(h.doc()) })
    }
    await waitAllAcked(handles, pusher.serverStorageId, 90_000)
  } finally {
    await pusher.close()
  }

  // A fresh client with empty storage: everything it gets comes from the server.
  const puller = await connectClient(server.wsUrl, { peerId: "interop-puller" })
  try {
    assert.equal(puller.serverStorageId, pusher.serverStorageId, "server storageId is stable across connections")
    let checked = 0
    for (const [url, want] of expected) {
      const h = await pull(puller.repo, url, { expectHeads: want.heads })
      assert.ok(sameHeads(h.heads(), want.heads), `heads of ${url}`)
      assert.deepEqual(toJSON(h.doc()), want.json, `content of ${url}`)
      checked++
    }
    assert.equal(checked, DOCS)
  } finally {
    await puller.close()
  }
})

test("find of an unknown document id rejects (doc-unavailable)", { timeout: 60_000 }, async () => {
  const client = await connectClient(server.wsUrl, { peerId: "interop-unknown" })
  try {
    const url = generateAutomergeUrl()
    const started = Date.now()
    await assert.rejects(client.repo.find(url, { signal: AbortSignal.timeout(20_000) }), err => {
      assert.match(String(err?.message ?? err), /unavailable/i, `find must reject as unavailable, got: ${err}`)
      return true
    })
    // The rejection must come from the server's doc-unavailable, not from our abort timeout.
    assert.ok(Date.now() - started < 15_000, "rejected promptly")
  } finally {
    await client.close()
  }
})

test("a document created after an unavailable answer syncs later (doc-unavailable then sync)", { timeout: 60_000 }, async () => {
  const a = await connectClient(server.wsUrl, { peerId: "interop-late-a" })
  const b = await connectClient(server.wsUrl, { peerId: "interop-late-b" })
  try {
    const h = a.repo.create(accountSeed(4242))
    editHandle(h, 4242)
    await waitAllAcked([h], a.serverStorageId, 20_000)
    const got = await pull(b.repo, h.url, { expectHeads: h.heads() })
    assert.deepEqual(toJSON(got.doc()), toJSON(h.doc()))
    // a live edit by b reaches a through the server
    got.change(d => {
      d.notes.push({ at: "2026-11-30T10:00:00Z", text: "edited by b", tags: [] })
    })
    const deadline = Date.now() + 20_000
    while (!sameHeads(h.heads(), got.heads())) {
      if (Date.now() > deadline) throw new Error("b's edit did not reach a through the server")
      await new Promise(r => setTimeout(r, 20))
    }
    assert.deepEqual(toJSON(h.doc()), toJSON(got.doc()))
  } finally {
    await a.close()
    await b.close()
  }
})
