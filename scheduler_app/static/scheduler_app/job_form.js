// The job page: show only the chosen trigger type's fields (also inside each child of
// an all/any trigger, with "Add another child trigger"), a search box for each time
// zone select, and only the chosen tenant's groups and calendars. Without JavaScript
// every field is shown and the server ignores the ones the chosen type does not use.
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
    "interval_jitter", "interval_start", "interval_end", "plugin_config", "combination"];
  var CHILD_FIELDS = {
    cron: ["cron_expression", "cron_dialect", "trigger_timezone"],
    date: ["run_at", "trigger_timezone"],
    interval: ["interval_seconds", "interval_jitter", "interval_start", "interval_end", "trigger_timezone"],
    json: ["document"]
  };
  var CHILD_ALWAYS = ["trigger_type", "DELETE"];

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  function rowOf(name) {
    var el = document.getElementById("id_" + name);
    return el ? el.closest(".form-row") : null;
  }

  function showTriggerFields(kind) {
    // a type not listed is a plugin's: edited as one JSON object
    var wanted = FIELDS[kind] || ["plugin_config"];
    ALL.forEach(function (name) {
      var row = rowOf(name);
      if (!row) { return; }
      // a row may hold two fields (start/end): shown when any of them is wanted
      var names = Array.prototype.map.call(row.querySelectorAll("[name]"), function (el) { return el.name; });
      var show = wanted.indexOf(name) !== -1 || names.some(function (n) { return wanted.indexOf(n) !== -1; });
      row.hidden = !show;
    });
  }

  function zoneSearch(select) {
    if (select.dataset.zoneSearchAttached) { return; }
    select.dataset.zoneSearchAttached = "1";
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

  // -- the children of an all/any trigger -------------------------------------------

  function setupChild(child) {
    var type = child.querySelector("select[name$='-trigger_type']");
    function apply() {
      // a type not listed is a plugin's: edited as one JSON object, as at the top level
      var wanted = CHILD_ALWAYS.concat(CHILD_FIELDS[type.value] || ["plugin_config"]);
      Array.prototype.forEach.call(child.querySelectorAll("[data-child-field]"), function (row) {
        row.hidden = wanted.indexOf(row.getAttribute("data-child-field")) === -1;
      });
    }
    if (type) { type.addEventListener("change", apply); apply(); }
    Array.prototype.forEach.call(child.querySelectorAll("select[data-zone-select]"), zoneSearch);
  }

  function setupChildren(box) {
    var prefix = box.getAttribute("data-child-prefix");
    var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
    var max = document.getElementById("id_" + prefix + "-MAX_NUM_FORMS");
    var template = box.querySelector("template.sa-child-template");
    var button = box.querySelector("button.sa-add-child");
    Array.prototype.forEach.call(box.querySelectorAll("[data-child-trigger]"), setupChild);
    if (!total || !template || !button) { return; }
    function limit() {
      var most = max ? parseInt(max.value, 10) : NaN;
      button.disabled = !isNaN(most) && parseInt(total.value, 10) >= most;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var index = parseInt(total.value, 10);
      var html = template.innerHTML.replace(/__prefix__/g, String(index)).replace(/__number__/g, String(index + 1));
      var holder = document.createElement("div");
      holder.innerHTML = html;
      var child = holder.firstElementChild;
      box.insertBefore(child, template);
      total.value = String(index + 1);
      setupChild(child);
      child.dispatchEvent(new CustomEvent("scheduler:child-added", {bubbles: true}));
      limit();
      var first = child.querySelector("select, input, textarea");
      if (first) { first.focus(); }
    });
    limit();
  }

  // -- groups and calendars follow the tenant ---------------------------------------

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

  // The calendars' select carries {calendar id: tenant id} (data-calendar-tenants). Once
  // SelectFilter2 has made it a pair of boxes (on window load), another tenant's
  // calendars are taken out of both boxes' caches and put back when their tenant is
  // chosen again; without SelectFilter2 the plain select's options are hidden.
  function followTenantCalendars(tenant, select) {
    var owners = {};
    try { owners = JSON.parse(select.getAttribute("data-calendar-tenants") || "{}"); } catch (e) { owners = {}; }
    var id = select.id;
    var away = {};  // value -> text of the calendars taken out
    function filtered() {
      var box = window.SelectBox;
      return box && box.cache && box.cache[id + "_from"] && box.cache[id + "_to"] ? box : null;
    }
    function apply() {
      var chosen = tenant.value;
      var box = filtered();
      if (!box) {
        Array.prototype.forEach.call(select.options, function (opt) {
          var owner = owners[opt.value];
          var hide = !!(chosen && owner && owner !== chosen);
          opt.hidden = hide;
          if (hide) { opt.selected = false; }
        });
        return;
      }
      [id + "_from", id + "_to"].forEach(function (which) {
        box.cache[which].slice().forEach(function (item) {
          var owner = owners[item.value];
          if (chosen && owner && owner !== chosen) {
            away[item.value] = item.text;
            box.delete_from_cache(which, item.value);
          }
        });
      });
      Object.keys(away).forEach(function (value) {
        var owner = owners[value];
        if (!chosen || !owner || owner === chosen) {
          if (!box.cache_contains(id + "_from", value) && !box.cache_contains(id + "_to", value)) {
            box.add_to_cache(id + "_from", {value: value, text: away[value], displayed: 1});
          }
          delete away[value];
        }
      });
      box.sort(id + "_from");
      box.redisplay(id + "_from");
      box.redisplay(id + "_to");
    }
    tenant.addEventListener("change", apply);
    apply();
    // SelectFilter2 builds its boxes on window load: filter them once they exist.
    window.addEventListener("load", function () { setTimeout(apply, 0); });
  }

  ready(function () {
    var type = document.getElementById("id_trigger_type");
    if (type) {
      type.addEventListener("change", function () { showTriggerFields(type.value); });
      showTriggerFields(type.value);
    }
    var zone = document.getElementById("id_trigger_timezone");
    if (zone && zone.matches("select[data-zone-select]")) { zoneSearch(zone); }
    Array.prototype.forEach.call(document.querySelectorAll(".sa-children[data-child-prefix]"), setupChildren);
    var tenant = document.getElementById("id_tenant");
    var group = document.getElementById("id_group");
    if (tenant && group) { followTenant(tenant, group); }
    var calendars = document.querySelector("select[data-calendar-tenants]");
    if (tenant && calendars) { followTenantCalendars(tenant, calendars); }
  });
})();
