// Several `fieldnotes serve` instances on one PostgreSQL database, as a large deployment runs them
// behind a load balancer with no sticky sessions. Real processes, the real npm automerge-repo
// client, real WebSockets. PostgreSQL only (`cargo xtask test` runs this file in its PostgreSQL
// stage; with FIELDNOTES_TEST_BACKEND=sqlite it fails loudly, never skips).
//
// 1. Two clients, one on each instance, edit the same account documents live and converge.
// 2. kill -9 of one instance in the middle of a push: every change it acknowledged is served by
//    the other instance at once, and by the killed one once it is restarted.
import { test } from "node:test"
import assert from "node:assert/strict"
import { startServer, freshDataDir, defaultAuth, shareDatabase, testBackend } from "./lib/server.mjs"
import { connectClient, pull, sleep, sameHeads, waitFor, waitAllAcked } from "./lib/client.mjs"
import { Acknowledgements, assertServes } from "./lib/acknowledged.mjs"
import { accountSeed, editHandle, toJSON } from "./lib/accounts.mjs"

if (testBackend() !== "postgres") {
  throw new Error("instances-on-postgres.mjs needs FIELDNOTES_TEST_BACKEND=postgres: several instances share one PostgreSQL database")
}

/** Two instances on one fresh database, and a token good on both. */
async function twoInstances(prefix) {
  const first = await startServer({ dataDir: freshDataDir(`${prefix}1-`) })
  const secondDir = freshDataDir(`${prefix}2-`)
  shareDatabase(first.dataDir, secondDir)
  const second = await startServer({ dataDir: secondDir })
  const { token } = await defaultAuth(first)
  return { first, second, token }
}

const LIVE_DOCS = 20
/** The notes this test's two clients added (the account's own edits add some too). */
const liveNotes = h => h.doc().notes.filter(n => n.by)

test(`a client on each of two instances edit the same ${LIVE_DOCS} accounts live and converge`, { timeout: 120_000 }, async () => {
  const { first, second, token } = await twoInstances("fieldnotes-live-")
  const one = await connectClient(first.wsUrl, { peerId: "instance-one-client", token })
  const two = await connectClient(second.wsUrl, { peerId: "instance-two-client", token })
  try {
    assert.equal(one.serverStorageId, two.serverStorageId, "both instances are one server to a client")
    const mine = []
    for (let i = 0; i < LIVE_DOCS; i++) {
      const h = one.repo.create(accountSeed(i))
      editHandle(h, i)
      mine.push(h)
    }
    await waitAllAcked(mine, one.serverStorageId, 30_000)
    const theirs = []
    for (const h of mine) theirs.push(await pull(two.repo, h.url, { expectHeads: h.heads(), timeoutMs: 15_000 }))

    // Both edit every document at the same time, three rounds each, without waiting for the other.
    const started = Date.now()
    for (let round = 0; round < 3; round++) {
      mine.forEach((h, i) => h.change(d => { d.notes.push({ by: "one", round, text: `one ${i}.${round}` }) }))
      theirs.forEach((h, i) => h.change(d => { d.notes.push({ by: "two", round, text: `two ${i}.${round}` }) }))
      await sleep(20)
    }
    await waitFor(
      () => mine.every((h, i) => sameHeads(h.heads(), theirs[i].heads()) && liveNotes(h).length === 6),
      30_000,
      () => `every document converged on both instances (${mine.filter((h, i) => sameHeads(h.heads(), theirs[i].heads())).length}/${LIVE_DOCS} so far)`,
    )
    const converged = Date.now() - started
    for (let i = 0; i < LIVE_DOCS; i++) {
      assert.deepEqual(toJSON(mine[i].doc()), toJSON(theirs[i].doc()), `account ${i} is the same on both`)
      const by = liveNotes(mine[i]).map(n => n.by).sort()
      assert.deepEqual(by, ["one", "one", "one", "two", "two", "two"], `account ${i} kept both clients' notes`)
    }
    console.log(`# ${LIVE_DOCS} documents edited from both instances converged ${converged} ms after the first edit`)
  } finally {
    await one.close({ settleMs: 0 })
    await two.close({ settleMs: 0 })
    await first.stop()
    await second.stop()
  }
})

const TOTAL = 300
const KILL_AFTER_ACKED = 47

test(`kill -9 of one instance while a client pushes ${TOTAL} documents through it: the other serves every acknowledged change at once, and the killed one after a restart`, { timeout: 240_000 }, async () => {
  const { first, second, token } = await twoInstances("fieldnotes-kill-")
  const pusher = await connectClient(first.wsUrl, { peerId: "kill-pusher", token })
  const storageId = pusher.serverStorageId
  const acks = new Acknowledgements(storageId)
  let killedAt = null
  const killOnceEnoughAcked = () => {
    if (!killedAt && acks.fullyAcked() >= KILL_AFTER_ACKED) {
      pusher.stopReconnecting()
      first.child.kill("SIGKILL")
      const fullyAcked = acks.fullyAcked()
      killedAt = { created: acks.handles.length, fullyAcked, unacked: acks.handles.length - fullyAcked }
    }
  }
  try {
    for (let i = 0; i < TOTAL && !killedAt; i++) {
      editHandle(acks.watch(pusher.repo.create(accountSeed(i)), killOnceEnoughAcked), i)
      if (i % 10 === 9) await sleep(1)
    }
    const deadline = Date.now() + 120_000
    while (!killedAt && Date.now() < deadline) await sleep(10)
    assert.ok(killedAt, `the kill never triggered: ${acks.fullyAcked()}/${acks.handles.length} acknowledged within 120 s`)
    assert.equal((await first.exited).signal, "SIGKILL")
    await sleep(500) // acknowledgements already in the socket buffer are genuine too
  } finally {
    await pusher.close({ settleMs: 0 })
    await first.kill9()
  }
  const owed = acks.snapshot()
  console.log(`# kill: ${JSON.stringify(killedAt)}; acknowledged documents: ${owed.size}`)
  assert.ok(killedAt.unacked > 0, "the kill must happen mid-push")

  try {
    // The other instance was up all along: nothing to wait for.
    await assertServes(second, owed, { token, peerId: "kill-puller-other", storageId })
    const restarted = await startServer({ dataDir: first.dataDir })
    try {
      await assertServes(restarted, owed, { token, peerId: "kill-puller-restarted", storageId })
    } finally {
      await restarted.stop()
    }
  } finally {
    await second.stop()
  }
})
