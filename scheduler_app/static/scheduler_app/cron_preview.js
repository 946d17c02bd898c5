// Live preview of a cron expression on the job page (the job's own and each child
// trigger's): description and next fire times, under the field.
(function () {
  "use strict";
  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }
  function attach(input) {
    if (input.dataset.cronPreviewAttached) { return; }
    input.dataset.cronPreviewAttached = "1";
    // A child trigger's dialect and zone are in its own fieldset; the job's have fixed ids.
    var scope = input.closest("[data-child-trigger]");
    var dialect = scope ? scope.querySelector("[name$='-cron_dialect']") : document.getElementById("id_cron_dialect");
    var zone = scope ? scope.querySelector("select[name$='-trigger_timezone']") : document.getElementById("id_trigger_timezone");
    var out = document.createElement("div");
    out.className = "help cron-preview";
    out.setAttribute("aria-live", "polite");
    // Under the field (after the label + input line), so the input keeps its width.
    var line = input.closest(".sa-child-field, .flex-container") || input;
    line.parentNode.insertBefore(out, line.nextSibling);
    var url = input.getAttribute("data-cron-preview-url");
    var timer = null;
    function render(data) {
      out.textContent = "";
      if (!data.ok) { out.classList.add("errornote-inline"); out.textContent = data.error; return; }
      out.classList.remove("errornote-inline");
      var p = document.createElement("strong");
      p.textContent = data.description;
      out.appendChild(p);
      var list = document.createElement("ol");
      data.times.forEach(function (t) { var li = document.createElement("li"); li.textContent = t; list.appendChild(li); });
      out.appendChild(list);
    }
    function update() {
      if (!input.value.trim() || !url) { out.textContent = ""; return; }
      var q = "?expression=" + encodeURIComponent(input.value) +
        "&dialect=" + encodeURIComponent(dialect ? dialect.value : "crontab") +
        "&timezone=" + encodeURIComponent(zone && zone.value ? zone.value : "UTC");
      fetch(url + q, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(render)
        .catch(function () { out.textContent = ""; });
    }
    function schedule() { clearTimeout(timer); timer = setTimeout(update, 250); }
    [input, dialect, zone].forEach(function (el) { if (el) { el.addEventListener("input", schedule); el.addEventListener("change", schedule); } });
    update();
  }
  function attachAll(root) {
    Array.prototype.forEach.call(root.querySelectorAll("input[data-cron-preview]"), attach);
  }
  ready(function () {
    attachAll(document);
    // a child trigger added by job_form.js
    document.addEventListener("scheduler:child-added", function (event) { attachAll(event.target); });
  });
})();
