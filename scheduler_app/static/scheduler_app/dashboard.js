// Live dashboard: polls the JSON endpoint and swaps the panels in place. The page
// works without this script (it is rendered complete on the server).
(function () {
  "use strict";
  function start() {
    var root = document.getElementById("sa-dashboard");
    if (!root || !window.fetch) return;
    var url = root.dataset.url;
    var every = Math.max(parseInt(root.dataset.refresh, 10) || 5, 2) * 1000;
    var panels = document.getElementById("sa-dashboard-panels");
    var updated = document.getElementById("sa-dashboard-updated");
    var status = document.getElementById("sa-dashboard-status");
    var busy = false;
    function tick() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          panels.innerHTML = data.html;
          var tiles = panels.querySelector(".sa-tiles");
          updated.textContent = (tiles && tiles.dataset.generatedText) || new Date().toString();
          status.textContent = "";
          root.dataset.refreshes = String((parseInt(root.dataset.refreshes, 10) || 0) + 1);
        })
        .catch(function (error) {
          status.textContent = "(" + error.message + ")";
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
