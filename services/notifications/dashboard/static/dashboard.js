/* Waymark dashboard: progressive enhancement, no build step, no dependencies.
 *
 * On the alerts list:
 *  - listens to /alerts/stream (Server-Sent Events; the session cookie authenticates) and, for
 *    each new or changed alert, fetches its row as the server renders it for the list's
 *    filters (/dashboard/alert-rows/<id>), then inserts, replaces or removes it, and updates
 *    the counts; a polite live region says what changed ("New alert: ...");
 *  - posts the row's actions (acknowledge, assign to me, snooze, resolve) with fetch and
 *    refreshes the row, keeping the keyboard focus in it.
 * Without this script every form still posts and the page reloads.
 * Rows are parsed from the server's HTML (escaped by its templates); text from the stream only
 * ever reaches the page through textContent.
 */
(function () {
  "use strict";

  var table = document.querySelector("[data-live-alerts]");
  if (!table) { return; }
  var tbody = table.querySelector("tbody");
  var announcer = document.getElementById("live-announcer");
  var stateLine = document.getElementById("live-state");
  var errorBox = document.getElementById("action-error");
  var filterQuery = table.getAttribute("data-filter-query") || "";
  var sortBySeverity = table.getAttribute("data-sort") === "severity";
  var pending = {};

  function say(text) {
    if (!announcer) { return; }
    // a new text node each time, so the same words said twice are announced twice
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function setState(text) { if (stateLine) { stateLine.textContent = text; } }

  function showError(text) { if (errorBox) { errorBox.textContent = text; } }

  function rowOf(id) {
    var rows = tbody.querySelectorAll("tr[data-alert-id]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-alert-id") === id) { return rows[i]; }
    }
    return null;
  }

  function nameOf(row) {
    var link = row.querySelector("[data-col='alert'] a");
    return link ? link.textContent.trim() : "the alert";
  }

  function titleOf(row) {
    var link = row.querySelector("[data-col='alert'] a");
    var sev = row.querySelector("[data-col='severity']");
    var status = row.querySelector("[data-col='status']");
    return (link ? link.textContent.trim() : "an alert") +
      (sev ? ", " + sev.textContent.trim() : "") +
      (status ? ", " + status.textContent.trim() : "");
  }

  function insertInOrder(row) {
    var empty = tbody.querySelector("tr.empty-row");
    if (empty) { empty.remove(); }
    if (sortBySeverity) {
      var rank = Number(row.getAttribute("data-severity-rank"));
      var rows = tbody.querySelectorAll("tr[data-alert-id]");
      for (var i = 0; i < rows.length; i++) {
        if (Number(rows[i].getAttribute("data-severity-rank")) > rank) {
          tbody.insertBefore(row, rows[i]);
          return;
        }
      }
    }
    tbody.appendChild(row); // newest is youngest: last when sorted oldest first
  }

  function focusKey(row) {
    var active = document.activeElement;
    if (!row || !active || !row.contains(active)) { return null; }
    if (active.id) { return "id:" + active.id; }
    return active.tagName === "BUTTON" ? "button:" + active.textContent.trim() : "link";
  }

  // what the user chose in the row's selects survives the row being redrawn
  function carryChoices(old, fresh) {
    old.querySelectorAll("select[id]").forEach(function (sel) {
      var twin = fresh.querySelector("#" + sel.id);
      if (twin && Array.prototype.some.call(twin.options, function (o) { return o.value === sel.value; })) {
        twin.value = sel.value;
      }
    });
  }

  function restoreFocus(row, key) {
    if (!key || !row) { return; }
    var target = null;
    if (key.indexOf("id:") === 0) {
      target = row.querySelector("#" + key.slice(3));
    } else if (key.indexOf("button:") === 0) {
      var name = key.slice(7);
      row.querySelectorAll("button").forEach(function (b) {
        if (!target && b.textContent.trim() === name) { target = b; }
      });
    }
    (target || row.querySelector("a")).focus();
  }

  function fragmentUrl(id) {
    return "/dashboard/alert-rows/" + encodeURIComponent(id) + (filterQuery ? "?" + filterQuery : "");
  }

  // fetch the row the server renders for this alert and the list's filters; put it in place
  function refreshRow(id, reason) {
    if (pending[id]) { pending[id].again = reason || pending[id].again; return pending[id].promise; }
    var entry = { again: null };
    entry.promise = fetch(fragmentUrl(id), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (resp) {
        if (resp.status === 401 || resp.redirected) { setState("Live updates stopped: sign in again."); return; }
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.text().then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.querySelector("#fragment-rows tr[data-alert-id]");
          var counts = doc.getElementById("alert-counts");
          var old = rowOf(id);
          var key = focusKey(old);
          if (fresh && old && old.getAttribute("data-version") === fresh.getAttribute("data-version")) {
            fresh = null; // unchanged: leave the row (and whatever the user is doing in it) alone
          } else if (fresh) {
            fresh = document.importNode(fresh, true);
            if (old) {
              carryChoices(old, fresh);
              if (old.classList.contains("is-new")) { markNew(fresh); }
              old.replaceWith(fresh);
              restoreFocus(fresh, key);
              if (reason === "stream" && old.getAttribute("data-status") !== fresh.getAttribute("data-status")) {
                say("Alert updated: " + titleOf(fresh) + ".");
              }
            } else {
              markNew(fresh);
              insertInOrder(fresh);
              if (reason === "stream") { say("New alert: " + titleOf(fresh) + "."); }
            }
          } else if (old && !doc.querySelector("#fragment-rows tr[data-alert-id]")) {
            var words = titleOf(old);
            old.remove();
            if (key && table.parentElement) { table.parentElement.focus(); } // the list's region
            say("Alert no longer in this list: " + words + ".");
          }
          var here = document.getElementById("alert-counts");
          if (counts && here) { here.replaceWith(document.importNode(counts, true)); }
          var range = document.getElementById("alerts-range");
          if (range) {
            var n = tbody.querySelectorAll("tr[data-alert-id]").length;
            range.textContent = n ? n + " shown (live)" : "None shown";
          }
        });
      })
      .catch(function () { setState("Live updates: an alert could not be refreshed; reload the page to be sure."); })
      .then(function () {
        delete pending[id];
        if (entry.again) { return refreshRow(id, entry.again); }
      });
    pending[id] = entry;
    return entry.promise;
  }

  function markNew(row) {
    row.classList.add("is-new");
    var cell = row.querySelector("[data-col='alert']");
    if (cell && !cell.querySelector(".tag--new")) {
      var tag = document.createElement("span");
      tag.className = "tag tag--new";
      tag.textContent = "New";
      var link = cell.querySelector("a");
      if (link) { link.after(tag); } else { cell.appendChild(tag); }
    }
  }

  // reload the whole list (after the stream may have missed changes)
  function resync() {
    return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (resp) { return resp.ok ? resp.text() : Promise.reject(new Error("HTTP " + resp.status)); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var rows = doc.getElementById("alert-rows");
        var counts = doc.getElementById("alert-counts");
        if (rows) {
          var known = {};
          tbody.querySelectorAll("tr[data-alert-id]").forEach(function (r) { known[r.getAttribute("data-alert-id")] = true; });
          tbody.replaceWith(document.importNode(rows, true));
          tbody = table.querySelector("tbody");
          // alerts that arrived while the stream was away are new to the user too: say so
          var arrived = [];
          tbody.querySelectorAll("tr[data-alert-id]").forEach(function (r) {
            if (!known[r.getAttribute("data-alert-id")]) { markNew(r); arrived.push(titleOf(r)); }
          });
          if (arrived.length === 1) { say("New alert: " + arrived[0] + "."); }
          else if (arrived.length > 1) { say(arrived.length + " new alerts: " + arrived.join("; ") + "."); }
        }
        var here = document.getElementById("alert-counts");
        if (counts && here) { here.replaceWith(document.importNode(counts, true)); }
      })
      .catch(function () { setState("Live updates: the list could not be reloaded; reload the page."); });
  }

  // --- the stream ----------------------------------------------------------------------------
  if (window.EventSource) {
    setState("Live updates: connecting…");
    var connectedBefore = false;
    var source = new EventSource("/alerts/stream");
    source.addEventListener("ready", function () {
      setState("Live updates: on. New and changed alerts appear here without reloading.");
      if (connectedBefore) { resync(); } // changes while we were away
      connectedBefore = true;
    });
    source.addEventListener("alert", function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (data && typeof data.alert_id === "string") { refreshRow(data.alert_id, "stream"); }
    });
    source.addEventListener("resync", function () { resync(); });
    source.onerror = function () {
      setState(source.readyState === EventSource.CLOSED
        ? "Live updates stopped: reload the page to start them again."
        : "Live updates paused: reconnecting…");
    };
  }

  // --- actions without a reload ----------------------------------------------------------------
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-action")) { return; }
    var row = form.closest("tr[data-alert-id]");
    if (!row || !window.fetch) { return; }
    ev.preventDefault();
    if (form.getAttribute("data-busy")) { return; } // already sent: one click, one action
    var id = row.getAttribute("data-alert-id");
    var button = form.querySelector("button[type='submit']");
    var verb = button ? button.textContent.trim() : "Act";
    var name = nameOf(row);
    // not `disabled`: a disabled button drops the keyboard focus to the page's top
    form.setAttribute("data-busy", "1");
    if (button) { button.setAttribute("aria-disabled", "true"); }
    showError("");
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(new FormData(form)).toString()
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (body) {
        form.removeAttribute("data-busy");
        if (button) { button.removeAttribute("aria-disabled"); }
        if (!resp.ok) {
          var detail = body && body.detail ? body.detail : "HTTP " + resp.status;
          showError(verb + " did not work: " + detail);
          return refreshRow(id, "action-failed");
        }
        say((body && body.message ? body.message : verb + " done.") + " " + name + ".");
        return refreshRow(id, "action");
      });
    }).catch(function () {
      form.removeAttribute("data-busy");
      if (button) { button.removeAttribute("aria-disabled"); }
      showError(verb + " did not work: the dashboard could not be reached. Try again.");
    });
  });
})();
