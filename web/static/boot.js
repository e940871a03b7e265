// Starts the app: a file of its own, not inline, so the Content-Security-Policy can forbid
// inline script. The build fills in the content-hashed names.
import init from "/{{APP_JS}}";
// The release build stops the app at once on an internal error (a WebAssembly trap) rather
// than carry on in a state nobody can vouch for. Say so in plain words and offer the way out.
const stopped = (error) => {
  if (!(error instanceof WebAssembly.RuntimeError) || document.getElementById("stopped")) return;
  console.error(error);
  const notice = document.createElement("div");
  notice.id = "stopped";
  notice.className = "stopped";
  notice.setAttribute("role", "alert");
  notice.textContent = "Fieldnotes stopped because of an error in the app. Everything shown as " +
    "saved is kept on this phone. Reload to carry on; if it happens again, tell your administrator.";
  const reload = document.createElement("button");
  reload.className = "primary";
  reload.textContent = "Reload";
  reload.addEventListener("click", () => location.reload());
  notice.append(reload);
  document.body.prepend(notice);
};
window.addEventListener("error", (event) => stopped(event.error));
window.addEventListener("unhandledrejection", (event) => stopped(event.reason));
init({ module_or_path: "/{{APP_WASM}}" }).catch((error) => {
  console.error(error);
  document.getElementById("boot").textContent =
    "Fieldnotes could not start on this browser. Reload the page; if it keeps happening, " +
    "update the browser or tell your administrator. Your saved notes are kept on this phone.";
});
// The service worker makes the next open work with no network. When a new deployment is
// waiting, the app is told and offers the switch; the rep decides when.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").then((registration) => {
    const announce = () => window.dispatchEvent(new Event("fieldnotes-update-ready"));
    if (registration.waiting && navigator.serviceWorker.controller) announce();
    registration.addEventListener("updatefound", () => {
      const worker = registration.installing;
      worker && worker.addEventListener("statechange", () => {
        if (worker.state === "installed" && navigator.serviceWorker.controller) announce();
      });
    });
    window.fieldnotesActivateUpdate = () => {
      if (registration.waiting) registration.waiting.postMessage("activate-new-version");
    };
  });
  let reloading = false;
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    if (window.fieldnotesUpdateAccepted && !reloading) { reloading = true; location.reload(); }
  });
}
