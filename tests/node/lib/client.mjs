// automerge-repo clients (the real npm library) and the acknowledgement signal.
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

export function sleep(ms) {
  return new Promise(r => setTimeout(r, ms))
}

/** Poll `fn` until it returns a truthy value, or throw after timeoutMs. */
export async function waitFor(fn, timeoutMs, what = "condition") {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "function" ? what() : what}`)
    await sleep(10)
  }
}

/**
 * A Repo connected to the server at wsUrl. storageDir: optional NodeFS storage (default: none,
 * i.e. an empty in-memory client). Resolves once the server answered `join` with `peer`.
 */
export async function connectClient(wsUrl, { storageDir, peerId, timeoutMs = 10_000, retryInterval = 1_000 } = {}) {
  const adapter = new WebSocketClientAdapter(wsUrl, retryInterval)
  const repo = new Repo({
    network: [adapter],
    storage: storageDir ? new NodeFSStorageAdapter(storageDir) : undefined,
    peerId,
    sharePolicy: async () => true,
  })
  const serverPeerId = await waitFor(() => repo.peers[0], timeoutMs, `peer message from ${wsUrl}`)
  const serverStorageId = repo.getStorageIdOfPeer(serverPeerId)
  return {
    repo,
    adapter,
    serverPeerId,
    serverStorageId,
    /** After this, a closed socket is not re-dialled (the adapter's onClose checks retryInterval). */
    stopReconnecting() {
      adapter.retryInterval = 0
    },
    /**
     * Let handles the server announced to us settle first (a stock server announces every document
     * it has to each new peer; a handle left loading keeps a 60 s timer of automerge-repo alive).
     */
    async close({ settleMs = 15_000 } = {}) {
      const settled = new Set(["ready", "unavailable", "deleted", "unloaded"])
      const deadline = Date.now() + settleMs
      while (Date.now() < deadline && Object.values(repo.handles).some(h => !settled.has(h.state))) await sleep(20)
      adapter.retryInterval = 0 // no reconnect timer may outlive the client
      await Promise.race([repo.shutdown().catch(() => {}), sleep(2_000)])
    },
  }
}

export function sameHeads(a, b) {
  if (!a || !b || a.length !== b.length) return false
  const sa = [...a].sort()
  const sb = [...b].sort()
  return sa.every((h, i) => h === sb[i])
}

/**
 * The heads the server last told us it has for this doc (theirHeads from the server's most recent
 * sync message), via automerge-repo's per-storageId sync info. undefined if none yet.
 */
export function serverHeads(handle, serverStorageId) {
  return handle.getSyncInfo(serverStorageId)?.lastHeads
}

/** True once the server has replied to a sync with heads equal to the handle's current heads. */
export function isAcked(handle, serverStorageId) {
  return sameHeads(serverHeads(handle, serverStorageId), handle.heads())
}

/** Wait until every handle is acknowledged by the server. */
export async function waitAllAcked(handles, serverStorageId, timeoutMs, onProgress) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const pending = handles.filter(h => !isAcked(h, serverStorageId))
    if (onProgress) onProgress(handles.length - pending.length)
    if (pending.length === 0) return
    if (Date.now() > deadline) {
      const h = pending[0]
      throw new Error(
        `${pending.length}/${handles.length} documents not acknowledged by the server within ${timeoutMs} ms; ` +
          `e.g. ${h.url}: local heads ${JSON.stringify(h.heads())}, server heads ${JSON.stringify(serverHeads(h, serverStorageId))}`,
      )
    }
    await sleep(20)
  }
}

/** find() with a deadline; resolves to the handle once its heads equal `expectHeads` (if given). */
export async function pull(repo, url, { timeoutMs = 15_000, expectHeads } = {}) {
  const signal = AbortSignal.timeout(timeoutMs)
  const handle = await repo.find(url, { signal })
  if (expectHeads) {
    await waitFor(() => sameHeads(handle.heads(), expectHeads), timeoutMs, () => `heads of ${url} to reach ${JSON.stringify(expectHeads)} (have ${JSON.stringify(handle.heads())})`)
  }
  return handle
}
