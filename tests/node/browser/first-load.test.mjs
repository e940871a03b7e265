// What a first load transfers, as the network sees it: a fresh headless Chromium at phone size
// opens the sign-in screen through a counting proxy in front of the real server, and the
// service worker installs. Every byte the server sends (headers and compressed bodies, page and
// service worker together) passes the proxy; what the browser takes from its HTTP cache or the
// service worker's cache does not. The figure is printed and held to the budget, and no
// content-hashed file may cross the network twice (the service worker must not download again
// what the page already received).
import { test, after } from "node:test"
import assert from "node:assert/strict"
import http from "node:http"
import { Device, startTeamServer } from "./harness.mjs"

/** The budget for a first load, in bytes on the wire (ARCHITECTURE.md, "Size budget"), and the
 * target the project works towards (printed beside it). */
const FIRST_LOAD_BUDGET = 450_000
const FIRST_LOAD_TARGET = 400_000
const HASHED = /-[0-9a-f]{12}\.[a-z]+$/

/** An HTTP proxy to `target` that counts, per path, requests and the bytes sent back. */
async function countingProxy(target) {
  const seen = new Map()
  const upstream = new URL(target)
  const proxy = http.createServer((request, response) => {
    const path = new URL(request.url, target).pathname
    const entry = seen.get(path) || { requests: 0, bytes: 0 }
    entry.requests += 1
    seen.set(path, entry)
    const forward = http.request({
      host: upstream.hostname, port: upstream.port, method: request.method, path: request.url,
      headers: { ...request.headers, host: upstream.host },
    }, answer => {
      // The status line and headers as they go on the wire, then the body as sent (compressed).
      entry.bytes += `HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}\r\n`.length
      for (let i = 0; i < answer.rawHeaders.length; i += 2) {
        entry.bytes += `${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}\r\n`.length
      }
      entry.bytes += 2
      response.writeHead(answer.statusCode, answer.statusMessage, answer.rawHeaders)
      answer.on("data", chunk => { entry.bytes += chunk.length })
      answer.pipe(response)
    })
    forward.on("error", () => response.destroy())
    request.pipe(forward)
  })
  await new Promise(resolve => proxy.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${proxy.address().port}`,
    seen,
    total: () => [...seen.values()].reduce((sum, e) => sum + e.bytes, 0),
    close: () => new Promise(resolve => { proxy.closeAllConnections(); proxy.close(resolve) }),
  }
}

test("a first load transfers the app once, within the budget, page and service worker together", async () => {
  const { server } = await startTeamServer()
  const proxy = await countingProxy(server.url)
  const phone = new Device("first-load")
  after(async () => { await phone.close().catch(() => {}); await proxy.close(); await server.stop(); phone.cleanup() })

  const page = await phone.open(proxy.url)
  await page.getByRole("heading", { name: "Sign in to Fieldnotes" }).waitFor()
  await phone.waitForServiceWorker()
  // The worker is in control and its cache is complete: nothing more is on its way.
  await page.waitForLoadState("networkidle")

  const rows = [...proxy.seen].sort((a, b) => b[1].bytes - a[1].bytes)
  console.log("first load, as sent over the network (requests, bytes):")
  for (const [path, { requests, bytes }] of rows) console.log(`  ${path.padEnd(32)} ${requests}  ${bytes}`)
  const total = proxy.total()
  console.log(`  total ${total} bytes: budget ${FIRST_LOAD_BUDGET} (${Math.round((100 * total) / FIRST_LOAD_BUDGET)}%), target ${FIRST_LOAD_TARGET} (${((100 * total) / FIRST_LOAD_TARGET).toFixed(1)}%)`)

  const twice = rows.filter(([path, { requests }]) => HASHED.test(path) && requests > 1).map(([path]) => path)
  assert.deepEqual(twice, [], "a content-hashed file crossed the network twice")
  assert.ok(rows.some(([path]) => /\.wasm$/.test(path)), "the app's WebAssembly was loaded through the proxy")
  assert.ok(total <= FIRST_LOAD_BUDGET, `a first load transferred ${total} bytes, over the ${FIRST_LOAD_BUDGET} byte budget`)

  // Opened again, the app comes from the service worker: no content-hashed file is fetched.
  for (const entry of proxy.seen.values()) entry.requests = entry.bytes = 0
  await page.reload()
  await page.getByRole("heading", { name: "Sign in to Fieldnotes" }).waitFor()
  const refetched = [...proxy.seen].filter(([path, { requests }]) => HASHED.test(path) && requests > 0).map(([path]) => path)
  assert.deepEqual(refetched, [], "a reload fetched content-hashed files again")
})
