// Live queue depths: the queues table names its JSON source in data-live;
// every 2 s the numbers are replaced in place (rows of new queues appear
// on the next full page load).
(function () {
  var table = document.querySelector("table[data-live]");
  if (!table) return;
  var src = table.getAttribute("data-live");
  function fmtAge(s) {
    s = Math.round(s);
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    return m < 60 ? m + "m" + (s % 60) + "s" : Math.floor(m / 60) + "h" + (m % 60) + "m0s";
  }
  function set(row, field, text) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (cell && cell.textContent !== text) {
      var link = cell.querySelector("a");
      (link || cell).textContent = text;
    }
  }
  function tick() {
    fetch(src, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) return;
        body.queues.forEach(function (q) {
          var row = table.querySelector('tr[data-queue="' + CSS.escape(q.name) + '"]');
          if (!row) return;
          ["scheduled", "waiting", "ready", "leased", "succeeded", "dead", "cancelled"].forEach(function (k) {
            set(row, k, String(q.counts[k]));
          });
          set(row, "paused", q.paused ? "paused" : "no");
          set(row, "oldest", q.counts.ready ? fmtAge(q.oldest_ready_age_seconds) : "\u2014");
          set(row, "enq", q.rates.enqueued_per_second.toFixed(1));
          set(row, "done", q.rates.completed_per_second.toFixed(1));
        });
        table.setAttribute("data-updated", String(Date.now()));
      })
      .catch(function () {});
  }
  setInterval(tick, 2000);
  tick();
})();

// Live fragments: an element with data-refresh names a dashboard URL that
// renders its inside (the overview's cards, charts and nodes, a queue's
// depths and charts); every 3 s it is fetched and swapped in. A failed
// fetch (the node went away) leaves the last view and marks it stale.
(function () {
  var boxes = document.querySelectorAll("[data-refresh]");
  if (!boxes.length) return;
  function tick() {
    boxes.forEach(function (box) {
      fetch(box.getAttribute("data-refresh"), { headers: { Accept: "text/html" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          box.innerHTML = html;
          box.classList.remove("stale");
          box.setAttribute("data-updated", String(Date.now()));
        })
        .catch(function () { box.classList.add("stale"); });
    });
  }
  setInterval(tick, 3000);
})();
