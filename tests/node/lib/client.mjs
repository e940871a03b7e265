// automerge-repo clients (the real npm library) and the acknowledgement signal.
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import WebSocket from "ws"

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
 * The npm WebSocketClientAdapter, opening its socket with extra HTTP headers on the upgrade
 * (`Authorization: Bearer …`, or `Cookie` + `Origin`), which the stock adapter cannot do: it calls
 * `new WebSocket(url)` with no options. Only connect() (socket creation and the retry timer, which
 * the parent keeps in private fields) and the socket event handlers are replaced; joining, sending,
 * receiving, CBOR and peer handling are the library's own code.
 *
 * Differences from the stock adapter, all about failures:
 * - an upgrade the server refuses (e.g. 401 without a valid token) is recorded in `refused`
 *   ({ status, message }) and emitted as "refused", instead of being thrown from the error handler
 *   (which crashes Node: the stock adapter rethrows every error except ECONNREFUSED);
 * - the last close is recorded in `lastClose` ({ code, reason }): the server closes revoked
 *   sessions with 4401 "signed out" (docs/auth.md);
 * - no reconnect is dialled after disconnect() or once retryInterval is 0.
 */
export class AuthWebSocketClientAdapter extends WebSocketClientAdapter {
  headers
  /** The server's refusal of the last upgrade: { status, message }, or null. */
  refused = null
  /** The last close of the socket: { code, reason }, or null. */
  lastClose = null
  #retryTimer
  #stopped = false
  #ready = false
  #resolveReady
  #readyPromise = new Promise(resolve => {
    this.#resolveReady = resolve
  })

  constructor(url, retryInterval = 5000, { headers = {} } = {}) {
    super(url, retryInterval)
    this.headers = { ...headers }
  }

  isReady() {
    return this.#ready
  }

  whenReady() {
    return this.#readyPromise
  }

  #forceReady() {
    if (!this.#ready) {
      this.#ready = true
      this.#resolveReady()
    }
  }

  connect(peerId, peerMetadata) {
    if (this.#stopped) return
    if (!this.socket || !this.peerId) {
      this.peerId = peerId
      this.peerMetadata = peerMetadata ?? {}
    } else {
      this.socket.removeEventListener("open", this.onOpen)
      this.socket.removeEventListener("close", this.onClose)
      this.socket.removeEventListener("message", this.onMessage)
      this.socket.removeEventListener("error", this.onError)
      // a socket that is still dialling must not linger
      if (this.socket.readyState === WebSocket.CONNECTING) this.socket.terminate()
    }
    if (!this.#retryTimer && this.retryInterval > 0) {
      this.#retryTimer = setInterval(() => {
        if (this.retryInterval > 0) this.connect(peerId, peerMetadata)
      }, this.retryInterval)
    }
    this.socket = new WebSocket(this.url, { headers: this.headers })
    this.socket.binaryType = "arraybuffer"
    this.socket.addEventListener("open", this.onOpen)
    this.socket.addEventListener("close", this.onClose)
    this.socket.addEventListener("message", this.onMessage)
    this.socket.addEventListener("error", this.onError)
    // as the stock adapter: ready after 1 s even without an answer, so finds can resolve
    setTimeout(() => this.#forceReady(), 1000)
    this.join()
  }

  onOpen = () => {
    clearInterval(this.#retryTimer)
    this.#retryTimer = undefined
    this.refused = null
    this.join()
  }

  onClose = event => {
    this.lastClose = { code: event?.code, reason: event?.reason }
    this.emit("socket-closed", this.lastClose)
    if (this.remotePeerId) this.emit("peer-disconnected", { peerId: this.remotePeerId })
    if (this.retryInterval > 0 && !this.#retryTimer && !this.#stopped) {
      setTimeout(() => {
        if (this.retryInterval > 0 && !this.#stopped) this.connect(this.peerId, this.peerMetadata)
      }, this.retryInterval)
    }
  }

  onError = event => {
    const message = String(event?.error?.message ?? event?.message ?? event)
    const m = /Unexpected server response: (\d+)/.exec(message)
    if (m) {
      this.refused = { status: Number(m[1]), message }
      this.emit("refused", this.refused)
    }
    // anything else (ECONNREFUSED, reset) ends in a close, which retries
  }

  peerCandidate(remotePeerId, peerMetadata) {
    this.#forceReady()
    super.peerCandidate(remotePeerId, peerMetadata)
  }

  // The stock adapter throws when the socket is closing. automerge-repo sends its reply from
  // inside the handle's update, so a server message that arrives just before a close (the
  // server's reply to one batch, then the close of the next, which failed) threw there and
  // left that handle holding an outdated document: every later message for it failed with
  // "Attempting to change an outdated document" and the document never synced again in that
  // session. A closing socket is a disconnected one: drop the message, as the stock adapter does
  // for no socket; the sync states are reset on the reconnect and automerge sends it again.
  send(message) {
    if (this.socket && this.socket.readyState !== WebSocket.OPEN) return
    super.send(message)
  }

  disconnect() {
    this.#stopped = true
    clearInterval(this.#retryTimer)
    this.#retryTimer = undefined
    if (this.socket) super.disconnect()
  }
}

/** The upgrade headers for a Bearer token. */
export function bearer(token) {
  return { Authorization: `Bearer ${token}` }
}

/** wsUrl with `?team=<id>`. */
export function withTeam(wsUrl, teamId) {
  const u = new URL(wsUrl)
  u.searchParams.set("team", teamId)
  return u.toString()
}

/**
 * A Repo connected to the server at wsUrl. storageDir: optional NodeFS storage (default: none,
 * i.e. an empty in-memory client). Resolves once the server answered `join` with `peer`.
 *
 * token: a Bearer token sent on the upgrade (our server refuses /sync without a session; the
 * reference server ignores it). headers: other upgrade headers (e.g. { Cookie, Origin }). With
 * either, the socket is made by AuthWebSocketClientAdapter; with neither, by the stock adapter.
 * If the server refuses the upgrade (401/403), rejects at once with an error whose `status` is
 * the HTTP status.
 */
export async function connectClient(wsUrl, { storageDir, peerId, timeoutMs = 10_000, retryInterval = 1_000, token, headers } = {}) {
  const withAuth = token !== undefined || headers !== undefined
  const allHeaders = { ...(headers ?? {}), ...(token ? bearer(token) : {}) }
  const adapter = withAuth ? new AuthWebSocketClientAdapter(wsUrl, retryInterval, { headers: allHeaders }) : new WebSocketClientAdapter(wsUrl, retryInterval)
  const repo = new Repo({
    network: [adapter],
    storage: storageDir ? new NodeFSStorageAdapter(storageDir) : undefined,
    peerId,
    sharePolicy: async () => true,
  })
  let serverPeerId
  try {
    serverPeerId = await waitFor(
      () => {
        if (adapter.refused) {
          const err = new Error(`${wsUrl} refused the WebSocket upgrade: ${adapter.refused.message}`)
          err.status = adapter.refused.status
          throw err
        }
        return repo.peers[0]
      },
      timeoutMs,
      `peer message from ${wsUrl}`,
    )
  } catch (e) {
    adapter.retryInterval = 0
    if (adapter instanceof AuthWebSocketClientAdapter) adapter.disconnect()
    await Promise.race([repo.shutdown().catch(() => {}), sleep(2_000)])
    throw e
  }
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
