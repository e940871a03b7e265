// What a server acknowledged to an npm automerge-repo client, and whether a server still holds it.
//
// An acknowledgement is a server sync message whose heads cover a document, as automerge-repo
// reports it per storage id ("remote-heads"). Each is recorded with the document's bytes and JSON
// at those heads, so a later check can demand the same content byte for byte.
import assert from "node:assert/strict"
import * as A from "@automerge/automerge"
import { decodeHeads } from "@automerge/automerge-repo"
import { connectClient, pull, sameHeads, waitFor } from "./client.mjs"
import { toJSON } from "./accounts.mjs"

export class Acknowledgements {
  /** `storageId`: the server's, from the client's peer message. */
  constructor(storageId) {
    assert.ok(storageId, "the server's peer message must carry a storageId")
    this.storageId = storageId
    /** url -> { heads (url-encoded), saved: Uint8Array, json } at the latest acknowledged heads */
    this.acked = new Map()
    this.handles = []
  }

  /** Records `handle`'s acknowledgements from now on; `onAck` runs in the same turn as each. */
  watch(handle, onAck = () => {}) {
    this.handles.push(handle)
    handle.on("remote-heads", ({ storageId, heads }) => {
      if (storageId !== this.storageId || !heads || heads.length === 0) return
      const view = A.view(handle.doc(), decodeHeads(heads))
      this.acked.set(handle.url, { heads, saved: A.save(view), json: toJSON(view) })
      onAck()
    })
    return handle
  }

  /** Documents whose latest heads are all acknowledged. */
  fullyAcked() {
    return this.handles.filter(h => sameHeads(this.acked.get(h.url)?.heads, h.heads())).length
  }

  /** What is owed from this moment on: the acknowledgements so far. */
  snapshot() {
    return new Map(this.acked)
  }
}

/**
 * Pulls every document of `owed` (a snapshot) through `server` as a fresh client and checks it at
 * its acknowledged heads, byte for byte (the server may hold more than was acknowledged, never
 * less). Fails with the list of what is missing.
 */
export async function assertServes(server, owed, { token, peerId, storageId }) {
  const puller = await connectClient(server.wsUrl, { peerId, token })
  const lost = []
  try {
    if (storageId) assert.equal(puller.serverStorageId, storageId, "the server's storageId is stable across restarts and instances")
    for (const [url, want] of owed) {
      try {
        const h = await pull(puller.repo, url, { timeoutMs: 10_000 })
        const hex = decodeHeads(want.heads)
        await waitFor(() => A.getMissingDeps(h.doc(), hex).length === 0, 10_000, `${url} at its acknowledged heads`)
        const view = A.view(h.doc(), hex)
        assert.deepEqual(toJSON(view), want.json, `content of ${url} at its acknowledged heads`)
        assert.ok(Buffer.from(A.save(view)).equals(Buffer.from(want.saved)), `Automerge.save of ${url} at its acknowledged heads is byte-identical`)
      } catch (e) {
        lost.push(`${url}: ${e.message}`)
      }
    }
  } finally {
    await puller.close({ settleMs: 0 })
  }
  assert.deepEqual(lost, [], `${lost.length}/${owed.size} acknowledged documents missing on ${server.url}:\n${lost.slice(0, 10).join("\n")}`)
}
