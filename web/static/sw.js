// The Fieldnotes service worker: the app must open with no network at all.
//
// The build fills PRECACHE with the exact, content-hashed names of the app shell and VERSION with
// a hash of that list, so a new deployment installs a new worker with a new cache. The page is
// told a new version is waiting and the rep chooses when to switch (a tap, never mid-note).
const VERSION = {{VERSION}};
const CACHE = "fieldnotes-shell-" + VERSION;
const PRECACHE = {{PRECACHE}};

self.addEventListener("install", (event) => {
  // `cache: "reload"` bypasses the HTTP cache so the shell is exactly this deployment's files.
  event.waitUntil(
    caches.open(CACHE).then((cache) =>
      cache.addAll(PRECACHE.map((url) => new Request(url, { cache: "reload" }))),
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
        cache.match("/index.html").then((hit) => hit || fetch(request)),
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
