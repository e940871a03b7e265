// The Fieldnotes service worker: the app must open with no network at all.
//
// The build fills PRECACHE with the exact, content-hashed names of the app shell and VERSION with
// a hash of that list, so a new deployment installs a new worker with a new cache. The page is
// told a new version is waiting and the rep chooses when to switch (a tap, never mid-note).
const VERSION = {{VERSION}};
const CACHE = "fieldnotes-shell-" + VERSION;
const PRECACHE = {{PRECACHE}};

// A content-hashed name can only ever hold these bytes, so the copy the page just received (in
// the HTTP cache, served `immutable`) is the right one: a first load transfers the app once, not
// twice. The few files without a hash in their name (the page, the manifest, the icons) are
// revalidated with the server (`cache: "no-cache"`: a 304 when the browser's copy is this
// deployment's, the file when it is not), so the shell is exactly this deployment's files.
const HASHED = /-[0-9a-f]{12}\.[a-z]+$/;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) =>
      cache.addAll(
        PRECACHE.map((url) => new Request(url, { cache: HASHED.test(url) ? "default" : "no-cache" })),
      ),
    ),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) =>
        Promise.all(
          keys
            .filter((key) => key.startsWith("fieldnotes-shell-") && key !== CACHE)
            .map((key) => caches.delete(key)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("message", (event) => {
  if (event.data === "activate-new-version") self.skipWaiting();
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  // The sync socket and the API always go to the network; only the shell is cached.
  if (url.pathname.startsWith("/sync") || url.pathname.startsWith("/api/")) return;
  if (request.mode === "navigate") {
    // Cache first: with one bar of signal a network-first page would hang before it opens.
    event.respondWith(
      caches.open(CACHE).then((cache) =>
        cache.match("/").then((hit) => hit || fetch(request)),
      ),
    );
    return;
  }
  event.respondWith(
    caches.open(CACHE).then((cache) =>
      cache.match(request).then((hit) => hit || fetch(request)),
    ),
  );
});
