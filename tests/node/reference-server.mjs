#!/usr/bin/env node
// The reference automerge-repo 2.x sync server: a stock Repo with the stock WebSocket server adapter
// and the stock filesystem storage adapter, sharing everything. It is what our server is compared
// against (interop development, the benchmark, and to show the crash test can fail).
//
// usage: node reference-server.mjs [--listen 127.0.0.1:PORT] [--data-dir DIR]
// Prints exactly one line `listening on http://127.0.0.1:PORT` once bound (same contract as ours).
// The WebSocket is accepted on any path (clients use /sync, like for ours); GET /healthz answers ok.
import http from "node:http"
import os from "node:os"
import path from "node:path"
import fs from "node:fs"
import { WebSocketServer } from "ws"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

function arg(name, dflt) {
  const i = process.argv.indexOf(name)
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt
}

const listen = arg("--listen", "127.0.0.1:0")
const [host, portText] = listen.split(":")
if (host !== "127.0.0.1") {
  console.error("reference server only listens on 127.0.0.1")
  process.exit(2)
}
const dataDir = arg("--data-dir", fs.mkdtempSync(path.join(os.tmpdir(), "fieldnotes-ref-")))
fs.mkdirSync(dataDir, { recursive: true })

const wss = new WebSocketServer({ noServer: true })
const server = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" })
    res.end("ok\n")
    return
  }
  res.writeHead(404)
  res.end()
})
server.on("upgrade", (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, ws => wss.emit("connection", ws, request))
})

const repo = new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dataDir),
  peerId: `reference-server-${os.hostname()}`,
  sharePolicy: async () => true,
})

// The Repo attaches the adapter's connection handler asynchronously (after loading its storage id);
// a join arriving before that would be lost, so only bind once it is attached.
for (let i = 0; wss.listenerCount("connection") === 0; i++) {
  if (i > 1000) throw new Error("NodeWSServerAdapter never attached to the WebSocket server")
  await new Promise(r => setTimeout(r, 10))
}
server.listen(Number(portText || 0), "127.0.0.1", () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`)
})

async function shutdown() {
  wss.clients.forEach(c => c.terminate())
  server.close()
  await repo.shutdown().catch(() => {})
  process.exit(0)
}
process.on("SIGTERM", shutdown)
process.on("SIGINT", shutdown)
