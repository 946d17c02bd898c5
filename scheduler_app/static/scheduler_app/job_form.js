// The job page: show only the chosen trigger type's fields, a search box for the time
// zone select, and only the chosen tenant's groups. Without JavaScript every field is
// shown and the server ignores the ones the chosen type does not use.
(function () {
  "use strict";
  var FIELDS = {
    cron: ["cron_expression", "cron_dialect", "trigger_timezone"],
    date: ["run_at", "trigger_timezone"],
    interval: ["interval_seconds", "interval_jitter", "interval_start", "interval_end", "trigger_timezone"],
    manual: [],
    all: ["combination"],
    any: ["combination"]
  };
  var ALL = ["cron_expression", "cron_dialect", "trigger_timezone", "run_at", "interval_seconds",
    "interval_jitter", "interval_start", "interval_end", "combination"];

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  function rowOf(name) {
    var el = document.getElementById("id_" + name);
    return el ? el.closest(".form-row") : null;
  }

  function showTriggerFields(kind) {
    var wanted = FIELDS[kind] || [];
    ALL.forEach(function (name) {
      var row = rowOf(name);
      if (!row) { return; }
      // a row may hold two fields (start/end): shown when any of them is wanted
      var names = Array.prototype.map.call(row.querySelectorAll("[name]"), function (el) { return el.name; });
      var show = names.some(function (n) { return wanted.indexOf(n) !== -1; });
      row.hidden = !show;
    });
  }

  function zoneSearch(select) {
    var box = document.createElement("input");
    box.type = "search";
    box.className = "vTextField";
    box.id = select.id + "_search";
    box.setAttribute("list", select.id + "_names");
    box.setAttribute("aria-label", select.getAttribute("data-search-label") || "Search time zones");
    box.placeholder = select.getAttribute("data-search-placeholder") || "Search…";
    box.autocomplete = "off";
    var note = document.createElement("div");
    note.className = "help zone-search-note";
    note.setAttribute("aria-live", "polite");
    var options = Array.prototype.slice.call(select.options);
    box.addEventListener("input", function () {
      var q = box.value.trim().toLowerCase().replace(/ /g, "_");
      var first = null;
      var count = 0;
      options.forEach(function (opt) {
        var match = !q || opt.value.toLowerCase().indexOf(q) !== -1;
        opt.hidden = !match;
        opt.disabled = !match && opt.value !== select.value;
        if (match && opt.value) { count += 1; if (!first) { first = opt; } }
        if (match && opt.value.toLowerCase() === q) { first = opt; }
      });
      if (q && first) { select.value = first.value; select.dispatchEvent(new Event("change")); }
      note.textContent = q && !count ? (select.getAttribute("data-no-match") || "No time zone matches.") : "";
    });
    select.parentNode.insertBefore(box, select);
    select.parentNode.insertBefore(note, select.nextSibling);
  }

  function followTenant(tenant, group) {
    function apply() {
      var chosen = tenant.value;
      Array.prototype.forEach.call(group.options, function (opt) {
        var owner = opt.getAttribute("data-tenant");
        var hide = !!(chosen && owner && owner !== chosen);
        opt.hidden = hide;
        opt.disabled = hide;
        if (hide && opt.selected) { group.value = ""; }
      });
    }
    tenant.addEventListener("change", apply);
    apply();
  }

  ready(function () {
    var type = document.getElementById("id_trigger_type");
    if (type) {
      type.addEventListener("change", function () { showTriggerFields(type.value); });
      showTriggerFields(type.value);
    }
    var zone = document.querySelector("select[data-zone-select]");
    if (zone) { zoneSearch(zone); }
    var tenant = document.getElementById("id_tenant");
    var group = document.getElementById("id_group");
    if (tenant && group) { followTenant(tenant, group); }
  });
})();
