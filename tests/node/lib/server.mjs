// Starting and stopping the server under test (ours or the reference one) as a child process, on
// the storage backend FIELDNOTES_TEST_BACKEND names: sqlite (default, the file in the data dir) or
// postgres (a fresh PostgreSQL database per data dir, see testDatabaseFor).
import { execFileSync, spawn } from "node:child_process"
import crypto from "node:crypto"
import fs from "node:fs"
import net from "node:net"
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

/** FIELDNOTES_TEST_BACKEND: "sqlite" (default) or "postgres"; anything else throws. */
export function testBackend() {
  const b = process.env.FIELDNOTES_TEST_BACKEND || "sqlite"
  if (b !== "sqlite" && b !== "postgres") throw new Error(`FIELDNOTES_TEST_BACKEND must be sqlite or postgres, not ${b}`)
  return b
}

/** The admin URL test databases are created through (FIELDNOTES_TEST_POSTGRES; `cargo xtask test` sets it). */
export function postgresAdminUrl() {
  return process.env.FIELDNOTES_TEST_POSTGRES || "postgres://postgres@127.0.0.1:5432/postgres"
}

/**
 * psql against the admin URL, returning what it printed (unaligned, tuples only); throws loudly
 * (with psql's message) when PostgreSQL does not answer.
 */
export function psql(sql) {
  const admin = postgresAdminUrl()
  try {
    return execFileSync("psql", [admin, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], { stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 }).toString()
  } catch (e) {
    throw new Error(
      `FIELDNOTES_TEST_BACKEND=postgres: \`psql ${admin} -c "${sql}"\` failed (${e.code ?? e.status}): ${String(e.stderr ?? e.message).trim()}; ` +
        "start PostgreSQL or set FIELDNOTES_TEST_POSTGRES (`cargo xtask test` starts one)",
    )
  }
}

/** data dir -> { name, url } of its database, made on first use and dropped when this process exits. */
const testDatabases = new Map()

/**
 * The PostgreSQL database URL of the server on dataDir (FIELDNOTES_TEST_BACKEND=postgres), or null on
 * SQLite. The same data dir always gets the same database, so a restart finds its data as it finds
 * the SQLite file; every `fieldnotes serve` and `fieldnotes admin` on it gets `--database URL`.
 */
export function testDatabaseFor(dataDir) {
  const key = path.resolve(dataDir)
  if (!testDatabases.has(key)) {
    if (testBackend() !== "postgres") return null
    newTestDatabase(dataDir)
  }
  return testDatabases.get(key).url
}

/**
 * Gives `dataDir` a fresh PostgreSQL database of its own whatever FIELDNOTES_TEST_BACKEND says (a
 * benchmark that runs both backends in one process), dropped when this process exits. Returns
 * { name, url }.
 */
export function newTestDatabase(dataDir) {
  if (testDatabases.size === 0) process.once("exit", dropTestDatabases)
  const name = `fieldnotes_test_${crypto.randomBytes(8).toString("hex")}`
  psql(`CREATE DATABASE ${name}`)
  const admin = postgresAdminUrl()
  const made = { name, url: `${admin.slice(0, admin.lastIndexOf("/"))}/${name}` }
  testDatabases.set(path.resolve(dataDir), made)
  return made
}

/**
 * Makes `dataDir` use the PostgreSQL database of `existingDataDir`: a second instance of the same
 * deployment (several `fieldnotes serve` on one database). PostgreSQL only; throws on SQLite.
 */
export function shareDatabase(existingDataDir, dataDir) {
  const url = testDatabaseFor(existingDataDir)
  if (!url) throw new Error("several instances need FIELDNOTES_TEST_BACKEND=postgres (`cargo xtask test` runs these on PostgreSQL)")
  testDatabases.set(path.resolve(dataDir), testDatabases.get(path.resolve(existingDataDir)))
  return url
}

/** Makes `dataDir`'s server and admin commands use the database at `url` (one the caller owns). */
export function useDatabase(dataDir, url) {
  testDatabases.set(path.resolve(dataDir), { name: null, url })
}

/** Drop every database this process made (servers still connected are cut off). */
function dropTestDatabases() {
  for (const { name } of new Set(testDatabases.values())) {
    if (!name) continue
    try {
      psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    } catch (e) {
      console.error(`could not drop the test database ${name}: ${e.message}`)
    }
  }
  testDatabases.clear()
}

/** `--database URL` for our binary on dataDir, or nothing on SQLite. */
function backendArgs(dataDir) {
  const url = testDatabaseFor(dataDir)
  return url ? ["--database", url] : []
}

/** The environment for our binary: on SQLite no FIELDNOTES_DATABASE may send it elsewhere. */
function ourEnv() {
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" }
  if (testBackend() === "sqlite") delete env.FIELDNOTES_DATABASE
  return env
}

/** A free TCP port on 127.0.0.1, so a restarted server can come back on the same address. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
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
    args = ["serve", "--listen", listen, "--data-dir", dataDir, ...backendArgs(dataDir)]
  } else if (kind === "reference") {
    cmd = process.execPath
    args = [path.join(NODE_DIR, "reference-server.mjs"), "--listen", listen, "--data-dir", dataDir]
  } else {
    throw new Error(`unknown server kind ${kind}`)
  }
  const child = spawn(cmd, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: kind === "ours" ? ourEnv() : { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" },
  })
  let stderr = ""
  child.stderr.on("data", d => {
    stderr += d
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000)
  })
  const exited = new Promise(resolve => child.once("exit", (code, signal) => resolve({ code, signal })))
  // Everything the server prints on stdout (at most 64 KiB), read by one listener from the start,
  // so a setup line that arrives in the same chunk as the listening line is kept too. Draining
  // also keeps the child from blocking on a full pipe.
  let out = ""
  child.stdout.on("data", d => {
    if (out.length < 65_536) out += d
  })
  const line = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${kind} server did not print its listening line within ${timeoutMs} ms; stdout=${JSON.stringify(out)} stderr=${stderr.slice(-2000)}`))
    }, timeoutMs)
    const onData = () => {
      const nl = out.indexOf("\n")
      if (nl >= 0) {
        clearTimeout(timer)
        child.stdout.off("data", onData)
        resolve(out.slice(0, nl))
      }
    }
    child.stdout.on("data", onData)
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
  // What it printed after the listening line: the first-run `setup: open http://…/#/setup/<token> …`
  // line comes there while no administrator exists (docs/auth.md).
  const afterListening = () => out.slice(out.indexOf("\n") + 1)
  const findSetupLine = () => afterListening().split("\n").find(l => l.startsWith("setup: ")) ?? null
  return {
    kind,
    release,
    child,
    pid: child.pid,
    port: boundPort,
    dataDir,
    url: `http://127.0.0.1:${boundPort}`,
    wsUrl: `ws://127.0.0.1:${boundPort}/sync`,
    exited,
    stderr: () => stderr,
    /** What the server printed on stdout after the listening line (so far). */
    stdout: () => afterListening(),
    /**
     * The `setup: open http://…/#/setup/<token> to create …` line, if printed yet (null otherwise).
     * The server prints it right after the listening line while no administrator exists; use
     * waitForSetupLine() to wait for it.
     */
    get setupLine() {
      return findSetupLine()
    },
    /** The setup link (http://…/#/setup/<token>) from the setup line, or null. */
    get setupUrl() {
      const l = findSetupLine()
      return l ? (/\bopen (\S+)/.exec(l)?.[1] ?? null) : null
    },
    /** The setup token from the setup link, or null. */
    get setupToken() {
      const u = this.setupUrl
      return u ? (/#\/setup\/([^\s/?#]+)/.exec(u)?.[1] ?? null) : null
    },
    /** Wait (bounded) for the setup line; throws if it does not come within timeoutMs. */
    async waitForSetupLine(timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const l = findSetupLine()
        if (l) return l
        if (Date.now() > deadline) throw new Error(`${kind} server printed no "setup: " line within ${timeoutMs} ms; stdout after listening: ${JSON.stringify(afterListening())}`)
        await new Promise(r => setTimeout(r, 20))
      }
    },
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

// ---------------------------------------------------------------------------------------------
// Sign-in and teams (docs/auth.md): provisioning through `fieldnotes admin`, which works on the
// database file directly, before or while the server runs.

/**
 * Run `fieldnotes admin --data-dir DIR [--database URL] <args…>` (the URL of DIR's test database on
 * FIELDNOTES_TEST_BACKEND=postgres). Resolves to { code, stdout, stderr }. Throws when
 * the command exits non-zero, unless allowFailure is set. stdin: text written to its stdin (e.g. a
 * password for --password-stdin); without it stdin is empty.
 */
export async function runAdmin(dataDir, args, { stdin, allowFailure = false, release = false, timeoutMs = 30_000 } = {}) {
  if (!dataDir) throw new Error("runAdmin needs the server's data dir")
  const bin = ourBinary({ release })
  const full = ["admin", "--data-dir", dataDir, ...backendArgs(dataDir), ...args]
  const child = spawn(bin, full, { stdio: ["pipe", "pipe", "pipe"], env: ourEnv() })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", d => (stdout += d))
  child.stderr.on("data", d => (stderr += d))
  child.stdin.on("error", () => {}) // a command that does not read stdin may close it early
  child.stdin.end(stdin ?? "")
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
  const { code, signal } = await new Promise((resolve, reject) => {
    child.once("error", reject)
    child.once("close", (code, signal) => resolve({ code, signal }))
  })
  clearTimeout(timer)
  const shown = `fieldnotes ${full.map(a => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ")}`
  if (signal) throw new Error(`${shown} was killed (${signal}) after ${timeoutMs} ms; stderr: ${stderr}`)
  if (code !== 0 && !allowFailure) throw new Error(`${shown} exited with ${code}; stderr: ${stderr.trim()} stdout: ${stdout.trim()}`)
  return { code, stdout, stderr }
}

/** `admin team create NAME`: resolves to the new team's id (32 lowercase hex characters). */
export async function createTeam(dataDir, name, { release = false } = {}) {
  const { stdout } = await runAdmin(dataDir, ["team", "create", name], { release })
  const id = stdout.trim()
  if (!/^[0-9a-f]{32}$/.test(id)) throw new Error(`admin team create ${name} printed ${JSON.stringify(stdout)}, not a team id`)
  return id
}

/** A password good for the contract's rules (10+ characters), different each call. */
export function randomPassword() {
  return `pw-${crypto.randomUUID()}`
}

/**
 * `admin user create --email E --name N --team T --role R [--admin] --password-stdin`.
 * team: a team id or name. The password is always given (randomPassword() if omitted) so callers
 * know it. Resolves to { email, name, role, admin, password }.
 */
export async function createUser(dataDir, { email, name, team, role = "rep", admin = false, password, release = false }) {
  if (!email || !team) throw new Error("createUser needs email and team")
  password ??= randomPassword()
  name ??= email.split("@")[0]
  const args = ["user", "create", "--email", email, "--name", name, "--team", team, "--role", role]
  if (admin) args.push("--admin")
  args.push("--password-stdin")
  await runAdmin(dataDir, args, { stdin: `${password}\n`, release })
  return { email, name, role, admin, password }
}

/** `admin user add-to-team --email E --team T --role R`. */
export async function addToTeam(dataDir, { email, team, role = "rep" }) {
  await runAdmin(dataDir, ["user", "add-to-team", "--email", email, "--team", team, "--role", role])
}

/**
 * Create a team and its users in one go:
 *   createTeamWithUsers(dir, { team: "North", users: [{ email, name, role, password, admin }] })
 * Resolves to { teamId, team, users: [{ email, name, role, admin, password }] } (passwords filled
 * in when not given). The first user may be made the administrator with admin: true.
 */
export async function createTeamWithUsers(dataDir, { team, users = [] }) {
  const teamId = await createTeam(dataDir, team)
  const created = []
  for (const u of users) created.push(await createUser(dataDir, { ...u, team: teamId }))
  return { teamId, team, users: created }
}

/**
 * `admin token create --email E [--days N] [--label L]`: resolves to the Bearer token (the only
 * thing the command prints on stdout).
 */
export async function tokenFor(dataDir, email, { days, label, release = false } = {}) {
  const args = ["token", "create", "--email", email]
  if (days !== undefined) args.push("--days", String(days))
  if (label !== undefined) args.push("--label", label)
  const { stdout } = await runAdmin(dataDir, args, { release })
  const token = stdout.trim()
  if (!/^[A-Za-z0-9_-]{43}$/.test(token)) throw new Error(`admin token create printed ${JSON.stringify(stdout)}, not a 43-character base64url token`)
  return token
}

/** `admin session revoke --email E`: every session of that user. */
export async function revokeSessions(dataDir, email) {
  await runAdmin(dataDir, ["session", "revoke", "--email", email])
}

/** `admin user disable --email E` (revokes every session). */
export async function disableUser(dataDir, email) {
  await runAdmin(dataDir, ["user", "disable", "--email", email])
}

/** `admin user enable --email E`. */
export async function enableUser(dataDir, email) {
  await runAdmin(dataDir, ["user", "enable", "--email", email])
}

/** `admin invite --team T --role R [--email E] [--days N]`: resolves to the invitation link. */
export async function inviteLink(dataDir, { team, role = "rep", email, days, publicUrl } = {}) {
  const args = publicUrl ? ["--public-url", publicUrl] : []
  args.push("invite", "--team", team, "--role", role)
  if (email) args.push("--email", email)
  if (days !== undefined) args.push("--days", String(days))
  const { stdout } = await runAdmin(dataDir, args)
  const link = stdout.trim().split("\n").map(l => l.trim()).find(l => /#\/invite\//.test(l))
  if (!link) throw new Error(`admin invite printed no #/invite/ link: ${JSON.stringify(stdout)}`)
  return link.slice(link.indexOf("http"))
}

/**
 * POST /api/session with { email, password } over HTTP. Resolves to
 * { status, body (parsed JSON or null), cookie ("fieldnotes_session=…" or null), setCookie, headers }.
 */
export async function signIn(baseUrl, email, password, { path: apiPath = "/api/session", extra = {} } = {}) {
  const res = await fetch(new URL(apiPath, baseUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password, ...extra }),
  })
  const text = await res.text()
  let body = null
  try {
    body = text ? JSON.parse(text) : null
  } catch {
    body = null
  }
  const setCookie = res.headers.get("set-cookie")
  const cookie = setCookie ? (/^\s*(fieldnotes_session=[^;]*)/.exec(setCookie)?.[1] ?? null) : null
  return { status: res.status, body, text, cookie, setCookie, headers: res.headers }
}

/** POST /api/tokens: resolves to the Bearer token; throws unless 200. */
export async function tokenBySignIn(baseUrl, email, password, label) {
  const r = await signIn(baseUrl, email, password, { path: "/api/tokens", extra: label ? { label } : {} })
  if (r.status !== 200 || typeof r.body?.token !== "string") throw new Error(`POST /api/tokens for ${email}: ${r.status} ${r.text}`)
  return r.body.token
}

const defaultAuths = new Map()

/**
 * The credentials the Node suites sync with. For our server: a team "E2E" with one user
 * (e2e@example.com) made through `fieldnotes admin` on the server's data dir, and a Bearer token;
 * made once per data dir, so a restart on the same data dir keeps them (the token lives in the
 * database). For the reference server (no sign-in): { token: undefined }.
 * Resolves to { token, teamId, email, password }.
 */
export async function defaultAuth(server) {
  if (server.kind !== "ours") return { token: undefined }
  const key = path.resolve(server.dataDir)
  if (!defaultAuths.has(key)) {
    const made = (async () => {
      const release = server.release
      const teamId = await createTeam(server.dataDir, "E2E", { release })
      const user = await createUser(server.dataDir, { email: "e2e@example.com", name: "E2E Rep", team: teamId, role: "rep", release })
      const token = await tokenFor(server.dataDir, user.email, { release: server.release })
      return { token, teamId, email: user.email, password: user.password }
    })()
    defaultAuths.set(key, made)
    made.catch(() => defaultAuths.delete(key))
  }
  return defaultAuths.get(key)
}
