// A PostgreSQL cluster of a test's own (initdb and pg_ctl in a temporary folder on a free port),
// for a test that restarts PostgreSQL: the machine's shared server must not be restarted under
// other tests. Fails loudly when PostgreSQL's programs are missing (`cargo xtask test` installs
// Debian's postgresql when they are).
import { execFileSync } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { freePort } from "./server.mjs"

/** A PostgreSQL program: on the PATH, or in Debian's versioned folder. */
function tool(name) {
  for (const dir of (process.env.PATH || "").split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, name))) return path.join(dir, name)
  }
  const root = "/usr/lib/postgresql"
  const found = fs.existsSync(root)
    ? fs.readdirSync(root).map(v => path.join(root, v, "bin", name)).filter(p => fs.existsSync(p)).sort()
    : []
  if (found.length === 0) throw new Error(`${name} not found: PostgreSQL's programs are missing (Debian: apt-get install postgresql)`)
  return found[found.length - 1]
}

/** Starts a cluster; resolves to { url, restart({ mode }), stop() }. */
export async function startPrivateCluster() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fieldnotes-pg-"))
  // initdb refuses to run as root: then the cluster runs as the `postgres` user.
  const asRoot = process.getuid?.() === 0
  if (asRoot) execFileSync("chown", ["postgres", dir])
  const run = (program, args) => {
    const [cmd, full] = asRoot ? ["runuser", ["-u", "postgres", "--", tool(program), ...args]] : [tool(program), args]
    try {
      return execFileSync(cmd, full, { stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 }).toString()
    } catch (e) {
      throw new Error(`${program} ${args.join(" ")} failed: ${String(e.stderr ?? e.message).trim()}`)
    }
  }
  const data = path.join(dir, "data")
  const log = path.join(dir, "log")
  const port = await freePort()
  run("initdb", ["-D", data, "-U", "postgres", "--auth=trust"])
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`
  run("pg_ctl", ["-D", data, "-o", options, "-l", log, "-w", "start"])
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    try {
      run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"])
    } catch {}
    fs.rmSync(dir, { recursive: true, force: true })
  }
  process.once("exit", stop)
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    /** `immediate` is a crash: no checkpoint, recovery from the WAL on start. */
    restart({ mode = "immediate" } = {}) {
      run("pg_ctl", ["-D", data, "-m", mode, "-o", options, "-l", log, "-w", "restart"])
    },
    stop,
  }
}
