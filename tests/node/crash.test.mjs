// Crash safety: "acknowledged means durable".
// A real automerge-repo client pushes many account documents; we record every acknowledgement the
// server gives (a server sync message whose heads cover the document, seen through automerge-repo's
// per-storageId sync info); the server is killed with SIGKILL in the middle of the push, restarted on
// the same data dir, and every acknowledged document must be there with byte-identical content at the
// acknowledged heads (Automerge.save of the document viewed at those heads).
// FIELDNOTES_SERVER=reference runs it against the reference JS server, which is expected to FAIL
// (it acknowledges before its debounced write) - that shows the assertion can fail.
import { test } from "node:test"
import assert from "node:assert/strict"
import * as A from "@automerge/automerge"
import { decodeHeads } from "@automerge/automerge-repo"
import { startServer, serverKindFromEnv, freshDataDir, defaultAuth } from "./lib/server.mjs"
import { connectClient, pull, sleep, sameHeads } from "./lib/client.mjs"
import { accountSeed, editHandle, toJSON } from "./lib/accounts.mjs"

const TOTAL = 400
// kill once this many documents are fully acknowledged; not a multiple of BATCH, so documents of
// the same batch are still in flight at that moment
const KILL_AFTER_ACKED = 63
const BATCH = 10

test(`kill -9 while a client pushes ${TOTAL} documents: every acknowledged document survives`, { timeout: 240_000 }, async () => {
  const kind = serverKindFromEnv()
  const dataDir = freshDataDir("fieldnotes-crash-")
  const server = await startServer({ kind, dataDir })
  // our server refuses /sync without a session; the token survives the restart (it is in the database)
  const { token } = await defaultAuth(server)
  const pusher = await connectClient(server.wsUrl, { peerId: "crash-pusher", token })
  const storageId = pusher.serverStorageId
  assert.ok(storageId, "server's peer message must carry a storageId")

  /** url -> { heads (url-encoded), saved: Uint8Array, json } for the latest acknowledged heads */
  const acked = new Map()
  const handles = []
  let killedAt = null // { created, fullyAcked, unacked }

  const fullyAcked = () => handles.filter(h => sameHeads(acked.get(h.url)?.heads, h.heads())).length
  const onRemoteHeads = h => ({ storageId: sid, heads }) => {
    if (sid !== storageId || !heads || heads.length === 0) return
    const view = A.view(h.doc(), decodeHeads(heads))
    acked.set(h.url, { heads, saved: A.save(view), json: toJSON(view) })
    if (!killedAt && fullyAcked() >= KILL_AFTER_ACKED) {
      // synchronously, in the same turn as the acknowledgement was observed
      pusher.stopReconnecting() // the pusher must not dial anything after the kill
      server.child.kill("SIGKILL")
      killedAt = { created: handles.length, fullyAcked: fullyAcked(), unacked: handles.length - fullyAcked() }
    }
  }

  try {
    for (let i = 0; i < TOTAL && !killedAt; i++) {
      const h = pusher.repo.create(accountSeed(i))
      h.on("remote-heads", onRemoteHeads(h))
      editHandle(h, i)
      handles.push(h)
      if (i % BATCH === BATCH - 1) await sleep(1) // let the network turn; keeps the push spread over time
    }
    const deadline = Date.now() + 120_000
    while (!killedAt && Date.now() < deadline) await sleep(10)
    assert.ok(killedAt, `the kill never triggered: only ${fullyAcked()}/${handles.length} documents were acknowledged within 120 s`)
    const exit = await server.exited
    assert.equal(exit.signal, "SIGKILL", `server must have died of SIGKILL, got ${JSON.stringify(exit)}`)
    // Frames the server sent before it died may still be in the socket buffer: they are genuine
    // acknowledgements too, so let the client read them.
    await sleep(500)
  } finally {
    await pusher.close({ settleMs: 0 })
    if (server.child.exitCode === null && server.child.signalCode === null) await server.kill9()
  }

  const ackedSnapshot = new Map(acked)
  console.log(`# kill: ${JSON.stringify(killedAt)}; acknowledged documents (any heads): ${ackedSnapshot.size}`)
  assert.ok(ackedSnapshot.size > 0, "the acknowledged set must not be empty")
  assert.ok(killedAt.unacked > 0, "the kill must happen mid-push (some created documents not yet acknowledged)")

  const restarted = await startServer({ kind, dataDir })
  const puller = await connectClient(restarted.wsUrl, { peerId: "crash-puller", token })
  const lost = []
  try {
    assert.equal(puller.serverStorageId, storageId, "server storageId must be stable across restarts")
    for (const [url, want] of ackedSnapshot) {
      let h
      try {
        h = await pull(puller.repo, url, { timeoutMs: 10_000 })
        const hex = decodeHeads(want.heads)
        const deadline = Date.now() + 10_000
        // the server may hold more than was acknowledged, never less
        while (A.getMissingDeps(h.doc(), hex).length > 0 && Date.now() < deadline) await sleep(20)
        if (A.getMissingDeps(h.doc(), hex).length > 0) {
          lost.push(`${url}: acknowledged heads ${want.heads} missing after restart (server has ${h.heads()})`)
          continue
        }
      } catch (e) {
        lost.push(`${url}: ${e.message}`)
        continue
      }
      const view = A.view(h.doc(), decodeHeads(want.heads))
      assert.deepEqual(toJSON(view), want.json, `content of ${url} at its acknowledged heads`)
      assert.ok(Buffer.from(A.save(view)).equals(Buffer.from(want.saved)), `Automerge.save of ${url} at its acknowledged heads is byte-identical`)
    }
  } finally {
    await puller.close()
    await restarted.stop()
  }
  assert.deepEqual(lost, [], `${lost.length}/${ackedSnapshot.size} acknowledged documents lost after kill -9:\n${lost.slice(0, 10).join("\n")}`)
})
