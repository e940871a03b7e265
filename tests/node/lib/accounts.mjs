// Account-like documents, built deterministically from an index, about ten changes each,
// the shape a territory sales rep's notebook holds.
import * as A from "@automerge/automerge"

function prng(seed) {
  // mulberry32
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const BRANCHES = ["Bakery", "Hardware", "Pharmacy", "Garden centre", "Garage", "Florist", "Butcher", "Café"]
const TOWNS = ["Ashford", "Bexley", "Crawley", "Dartford", "Epsom", "Farnham", "Guildford", "Horsham"]
const WORDS = "price service delivery quality relationship margin volume promotion display stock reorder visit call sample contract".split(" ")

function sentence(rand, n) {
  const w = []
  for (let i = 0; i < n; i++) w.push(WORDS[Math.floor(rand() * WORDS.length)])
  return w.join(" ")
}

/** The initial value for account number i (the first change). */
export function accountSeed(i) {
  const rand = prng(1000 + i)
  return {
    name: `${TOWNS[i % TOWNS.length]} ${BRANCHES[Math.floor(rand() * BRANCHES.length)]} #${i}`,
    branch: BRANCHES[i % BRANCHES.length],
    drivers: {},
    notes: [],
    valueProposition: "",
    followUps: [],
    visits: 0,
    active: true,
  }
}

/**
 * The nine follow-up edits of account i, each one a separate change on the handle:
 * map keys, nested objects, list pushes, text splices, a deletion, numbers and booleans.
 * `changeFn(fn)` applies one change (a DocHandle's change, or A.change on a plain doc).
 */
export const ACCOUNT_EDITS = 9
export function applyAccountEdit(i, step, changeFn) {
  const rand = prng(7919 * (i + 1) + step)
  switch (step) {
    case 0:
      return changeFn(d => {
        d.drivers.price = Math.floor(rand() * 5) + 1
        d.drivers.service = Math.floor(rand() * 5) + 1
        d.drivers.relationship = Math.floor(rand() * 5) + 1
      })
    case 1:
      return changeFn(d => {
        d.valueProposition = `We save ${sentence(rand, 3)} for account ${i}.`
      })
    case 2:
      return changeFn(d => {
        d.notes.push({ at: `2026-11-${String(1 + (i % 28)).padStart(2, "0")}T09:00:00Z`, text: sentence(rand, 12), tags: ["visit"] })
        d.visits += 1
      })
    case 3:
      return changeFn(d => {
        A.splice(d, ["valueProposition"], 0, 0, "Pitch: ")
      })
    case 4:
      return changeFn(d => {
        d.followUps.push({ due: `2026-12-${String(1 + (i % 28)).padStart(2, "0")}`, what: sentence(rand, 5), done: false })
        d.followUps.push({ due: `2027-01-${String(1 + (i % 28)).padStart(2, "0")}`, what: sentence(rand, 4), done: false })
      })
    case 5:
      return changeFn(d => {
        d.notes.push({ at: `2026-11-${String(1 + ((i + 3) % 28)).padStart(2, "0")}T15:30:00Z`, text: sentence(rand, 20), tags: ["call", "pricing"] })
        d.visits += 1
      })
    case 6:
      return changeFn(d => {
        d.drivers.delivery = Math.floor(rand() * 5) + 1
        delete d.drivers.relationship
      })
    case 7:
      return changeFn(d => {
        d.followUps[0].done = true
        A.splice(d, ["notes", 0, "text"], 0, 0, "[reviewed] ")
      })
    case 8:
      return changeFn(d => {
        const vp = d.valueProposition
        A.splice(d, ["valueProposition"], vp.length, 0, ` Owner: rep-${i % 7}.`)
        d.active = i % 5 !== 0
      })
    default:
      throw new Error(`no edit ${step}`)
  }
}

/** Build account i in a DocHandle: it already holds the seed; applies the edits from `from` to `to`. */
export function editHandle(handle, i, from = 0, to = ACCOUNT_EDITS) {
  for (let s = from; s < to; s++) applyAccountEdit(i, s, fn => handle.change(fn))
}

/** Materialized JSON of a doc, for content comparison. */
export function toJSON(doc) {
  return JSON.parse(JSON.stringify(doc))
}
