// Starting and stopping the server under test (ours or the reference one) as a child process.
import { spawn } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
export const NODE_DIR = path.resolve(here, "..")
export const WORKSPACE_ROOT = path.resolve(NODE_DIR, "..", "..")

/** Path of our server binary: $FIELDNOTES_BIN, else target/debug/fieldnotes of the workspace. */
export function ourBinary({ release = false } = {}) {
  const fromEnv = release ? process.env.FIELDNOTES_BIN_RELEASE : process.env.FIELDNOTES_BIN
  const target = process.env.CARGO_TARGET_DIR || path.join(WORKSPACE_ROOT, "target")
  const bin = fromEnv || path.join(target, release ? "release" : "debug", "fieldnotes")
  if (!fs.existsSync(bin)) {
    // Fail loudly: a test that needs the server never passes by skipping.
    throw new Error(
      `server binary not found at ${bin}; build it with ` +
        `\`cargo build -p fieldnotes-server${release ? " --release" : ""}\` ` +
        `or point ${release ? "FIELDNOTES_BIN_RELEASE" : "FIELDNOTES_BIN"} at it`,
    )
  }
  return bin
}

/** Which server the Node tests talk to: ours by default; FIELDNOTES_SERVER=reference for checking the tests themselves. */
export function serverKindFromEnv() {
  const k = process.env.FIELDNOTES_SERVER || "ours"
  if (k !== "ours" && k !== "reference") throw new Error(`FIELDNOTES_SERVER must be ours or reference, not ${k}`)
  return k
}

export function freshDataDir(prefix = "fieldnotes-e2e-") {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

/**
 * Start a server and wait for its `listening on http://127.0.0.1:PORT` line.
 * kind: "ours" | "reference". Returns a handle with url/wsUrl/pid and stop()/kill9().
 */
export async function startServer({ kind = "ours", dataDir, release = false, port = 0, timeoutMs = 30_000 } = {}) {
  dataDir ??= freshDataDir()
  const listen = `127.0.0.1:${port}`
  let cmd, args
  if (kind === "ours") {
    cmd = ourBinary({ release })
    args = ["serve", "--listen", listen, "--data-dir", dataDir]
  } else if (kind === "reference") {
    cmd = process.execPath
    args = [path.join(NODE_DIR, "reference-server.mjs"), "--listen", listen, "--data-dir", dataDir]
  } else {
    throw new Error(`unknown server kind ${kind}`)
  }
  const child = spawn(cmd, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" },
  })
  let stderr = ""
  child.stderr.on("data", d => {
    stderr += d
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000)
  })
  const exited = new Promise(resolve => child.once("exit", (code, signal) => resolve({ code, signal })))
  const line = await new Promise((resolve, reject) => {
    let out = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${kind} server did not print its listening line within ${timeoutMs} ms; stdout=${JSON.stringify(out)} stderr=${stderr.slice(-2000)}`))
    }, timeoutMs)
    child.stdout.on("data", d => {
      out += d
      const nl = out.indexOf("\n")
      if (nl >= 0) {
        clearTimeout(timer)
        resolve(out.slice(0, nl))
      }
    })
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${kind} server exited (code ${code}, signal ${signal}) before listening; stderr=${stderr.slice(-4000)}`))
    })
  })
  const m = /^listening on http:\/\/127\.0\.0\.1:(\d+)$/.exec(line.trim())
  if (!m) {
    child.kill("SIGKILL")
    throw new Error(`unexpected first stdout line from ${kind} server: ${JSON.stringify(line)}`)
  }
  const boundPort = Number(m[1])
  // keep draining stdout so the child never blocks on a full pipe
  child.stdout.resume()
  return {
    kind,
    child,
    pid: child.pid,
    port: boundPort,
    dataDir,
    url: `http://127.0.0.1:${boundPort}`,
    wsUrl: `ws://127.0.0.1:${boundPort}/sync`,
    exited,
    stderr: () => stderr,
    /** SIGKILL, like a power cut for the process. Resolves once it is gone. */
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      return exited
    },
    /** Graceful stop (SIGTERM), escalating to SIGKILL after graceMs. */
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited
      child.kill("SIGTERM")
      const t = setTimeout(() => child.kill("SIGKILL"), graceMs)
      const r = await exited
      clearTimeout(t)
      return r
    },
  }
}

/** CPU seconds (utime+stime) of a live process, from /proc/PID/stat. */
export function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  // fields after the ")" of comm; utime is field 14, stime 15 (1-based)
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const utime = Number(rest[11])
  const stime = Number(rest[12])
  const hz = 100 // USER_HZ on Linux
  return (utime + stime) / hz
}

/** Peak resident set size in bytes (VmHWM) of a live process. */
export function peakRssBytes(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const m = /VmHWM:\s+(\d+)\s+kB/.exec(status)
  return m ? Number(m[1]) * 1024 : NaN
}
