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
import { startServer, serverKindFromEnv, freshDataDir, defaultAuth } from "./lib/server.mjs"
import { connectClient, sleep } from "./lib/client.mjs"
import { Acknowledgements, assertServes } from "./lib/acknowledged.mjs"
import { accountSeed, editHandle } from "./lib/accounts.mjs"

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

  const acks = new Acknowledgements(storageId)
  let killedAt = null // { created, fullyAcked, unacked }
  const killOnceEnoughAcked = () => {
    if (!killedAt && acks.fullyAcked() >= KILL_AFTER_ACKED) {
      // synchronously, in the same turn as the acknowledgement was observed
      pusher.stopReconnecting() // the pusher must not dial anything after the kill
      server.child.kill("SIGKILL")
      const fullyAcked = acks.fullyAcked()
      killedAt = { created: acks.handles.length, fullyAcked, unacked: acks.handles.length - fullyAcked }
    }
  }

  try {
    for (let i = 0; i < TOTAL && !killedAt; i++) {
      editHandle(acks.watch(pusher.repo.create(accountSeed(i)), killOnceEnoughAcked), i)
      if (i % BATCH === BATCH - 1) await sleep(1) // let the network turn; keeps the push spread over time
    }
    const deadline = Date.now() + 120_000
    while (!killedAt && Date.now() < deadline) await sleep(10)
    assert.ok(killedAt, `the kill never triggered: only ${acks.fullyAcked()}/${acks.handles.length} documents were acknowledged within 120 s`)
    const exit = await server.exited
    assert.equal(exit.signal, "SIGKILL", `server must have died of SIGKILL, got ${JSON.stringify(exit)}`)
    // Frames the server sent before it died may still be in the socket buffer: they are genuine
    // acknowledgements too, so let the client read them.
    await sleep(500)
  } finally {
    await pusher.close({ settleMs: 0 })
    if (server.child.exitCode === null && server.child.signalCode === null) await server.kill9()
  }

  const owed = acks.snapshot()
  console.log(`# kill: ${JSON.stringify(killedAt)}; acknowledged documents (any heads): ${owed.size}`)
  assert.ok(owed.size > 0, "the acknowledged set must not be empty")
  assert.ok(killedAt.unacked > 0, "the kill must happen mid-push (some created documents not yet acknowledged)")

  const restarted = await startServer({ kind, dataDir })
  try {
    await assertServes(restarted, owed, { token, peerId: "crash-puller", storageId })
  } finally {
    await restarted.stop()
  }
})
