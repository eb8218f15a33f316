// omni console: live rows from /ui/events (server-sent events), instant
// search/filter of the fleet table, relative ages kept current by the local
// clock, and "back up now" without leaving the page. No polling.
"use strict";
(function () {
  window.omniConsoleLoadedAt = Date.now();

  function human(secs) {
    secs = Math.max(0, Math.floor(secs));
    var d = Math.floor(secs / 86400), h = Math.floor((secs % 86400) / 3600), m = Math.floor((secs % 3600) / 60);
    if (d > 0) return d + "d" + h + "h";
    if (h > 0) return h + "h" + m + "m";
    if (m > 0) return m + "m";
    return secs + "s";
  }

  function tickAges() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-ago]").forEach(function (el) {
      el.textContent = human(now - Number(el.getAttribute("data-ago"))) + " ago";
    });
  }

  function filterRows() {
    var q = document.getElementById("q"), st = document.getElementById("state");
    var table = document.getElementById("fleet");
    if (!q || !st || !table) return;
    var text = q.value.trim().toLowerCase(), want = st.value, shown = 0, all = 0;
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      var ok = (!text || tr.dataset.cluster.toLowerCase().indexOf(text) >= 0) &&
        (!want || tr.dataset.health === want);
      tr.hidden = !ok;
      all++;
      if (ok) shown++;
    });
    var out = document.getElementById("shown");
    if (out) out.textContent = "showing " + shown + " of " + all + " loaded";
  }

  function recount() {
    var s = document.getElementById("summary");
    if (!s) return;
    ["red", "amber", "green"].forEach(function (h) {
      var b = s.querySelector(".badge." + h);
      if (b) b.textContent = document.querySelectorAll('#fleet tbody tr[data-health="' + h + '"]').length + " " + h;
    });
  }

  function refreshBackups() {
    var box = document.getElementById("backups");
    if (!box) return;
    fetch(box.dataset.src, { credentials: "same-origin" }).then(function (r) {
      if (r.ok) return r.text().then(function (t) { box.innerHTML = t; });
    });
  }

  function live() {
    var table = document.getElementById("fleet");
    if (!table || !window.EventSource) return;
    var box = document.getElementById("backups");
    var only = box ? box.dataset.cluster : "";
    var es = new EventSource("/ui/events" + (only ? "?cluster=" + encodeURIComponent(only) : ""));
    es.addEventListener("row", function (e) {
      var d = JSON.parse(e.data);
      var old = document.getElementById("row-" + d.cluster);
      var before = old ? old.outerHTML : "";
      var lastBefore = old ? old.querySelector("[data-ago]") : null;
      if (old) {
        old.outerHTML = d.html;
      } else if (!only) {
        table.querySelector("tbody").insertAdjacentHTML("beforeend", d.html);
      }
      if (before !== d.html) {
        var row = document.getElementById("row-" + d.cluster);
        if (row) row.classList.add("changed");
      }
      if (only && d.status === "ok" && (!lastBefore || Number(lastBefore.dataset.ago) !== d.last)) refreshBackups();
      filterRows();
      recount();
    });
    es.addEventListener("gone", function (e) {
      var row = document.getElementById("row-" + e.data);
      if (row) row.remove();
      recount();
    });
    es.addEventListener("reload", function () { location.reload(); });
  }

  function asyncForms() {
    var btn = document.getElementById("backup-now");
    if (!btn) return;
    var form = btn.form;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      btn.disabled = true;
      var note = document.getElementById("action-status");
      if (!note) {
        note = document.createElement("p");
        note.id = "action-status";
        note.setAttribute("role", "status");
        form.after(note);
      }
      note.textContent = "Requesting a backup…";
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded", "X-Console-Async": "1" },
        body: new URLSearchParams(new FormData(form)).toString(),
      }).then(function (r) {
        return r.text().then(function (t) {
          note.textContent = r.ok ? "Backup requested; the row turns ok when it is stored." : "Refused: " + t;
          note.className = r.ok ? "notice" : "error";
        });
      }).catch(function (e) {
        note.textContent = "Request failed: " + e;
        note.className = "error";
      }).finally(function () { btn.disabled = false; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var q = document.getElementById("q"), st = document.getElementById("state");
    if (q) q.addEventListener("input", filterRows);
    if (st) st.addEventListener("change", filterRows);
    setInterval(tickAges, 30000);
    live();
    asyncForms();
  });
})();
