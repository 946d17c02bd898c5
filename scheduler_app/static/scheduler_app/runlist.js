// Run list auto-refresh: while the "auto-refresh" box is ticked, fetch the same list
// URL every few seconds and swap the result table in place. Rows ticked for an action
// pause the refresh, so a selection is never lost. The list works without this script.
(function () {
  "use strict";

  // When the list was refreshed, in the browser's zone with seconds and the UTC offset
  // ("14:05:09 +08:00"): never an ambiguous locale time such as "2:05 PM".
  function clock(d) {
    function pad(n) { return (n < 10 ? "0" : "") + n; }
    var offset = -d.getTimezoneOffset();
    var sign = offset < 0 ? "-" : "+";
    offset = Math.abs(offset);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " +
      sign + pad(Math.floor(offset / 60)) + ":" + pad(offset % 60);
  }
  var KEY = "scheduler_app.runlist.autorefresh";
  function start() {
    var root = document.getElementById("sa-runlist-refresh");
    var box = document.getElementById("sa-runlist-auto");
    var results = document.getElementById("sa-runlist-results");
    if (!root || !box || !results || !window.fetch || !window.DOMParser) return;
    var updated = document.getElementById("sa-runlist-updated");
    var every = Math.max(parseInt(root.dataset.refresh, 10) || 5, 2) * 1000;
    var busy = false;
    try { box.checked = window.localStorage.getItem(KEY) === "1"; } catch (e) { /* private mode */ }
    box.addEventListener("change", function () {
      try { window.localStorage.setItem(KEY, box.checked ? "1" : "0"); } catch (e) { /* ignore */ }
      if (box.checked) tick();
    });
    function selecting() {
      return !!results.querySelector("input.action-select:checked, #action-toggle:checked");
    }
    function tick() {
      if (!box.checked || busy || document.hidden || selecting()) return;
      busy = true;
      fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (text) {
          var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("sa-runlist-results");
          if (fresh && !selecting()) {
            results.innerHTML = fresh.innerHTML;
            updated.textContent = "(" + clock(new Date()) + ")";
            root.dataset.refreshes = String((parseInt(root.dataset.refreshes, 10) || 0) + 1);
          }
        })
        .catch(function (error) {
          updated.textContent = "(" + error.message + ")";
        })
        .finally(function () {
          busy = false;
        });
    }
    setInterval(tick, every);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
