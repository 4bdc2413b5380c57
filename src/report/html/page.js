// fool report: renders the Vega-Lite charts, sorts tables, filters galleries. No network.
(function () {
  "use strict";
  var specs = JSON.parse(document.getElementById("fool-specs").textContent);
  var images = JSON.parse(document.getElementById("fool-images").textContent);
  document.querySelectorAll("img[data-img]").forEach(function (img) {
    img.src = images[img.getAttribute("data-img")];
  });
  var charts = document.querySelectorAll("[data-chart]");
  var pending = charts.length;
  window.foolViews = {};
  function done() {
    pending -= 1;
    if (pending <= 0) document.body.setAttribute("data-charts-ready", "1");
  }
  if (pending === 0) document.body.setAttribute("data-charts-ready", "1");
  charts.forEach(function (el) {
    var id = el.getAttribute("data-chart");
    vegaEmbed(el, specs[id], { actions: false, renderer: "svg" })
      .then(function (r) {
        window.foolViews[id] = r.view;
        el.setAttribute("data-rendered", "1");
      })
      .catch(function (e) {
        el.textContent = "this chart could not be drawn: " + e;
        console.error(e);
      })
      .then(done);
  });

  // Tables: click a heading to sort by it (numbers as numbers), again to reverse.
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("data-sort") !== "asc";
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-sort"); });
        th.setAttribute("data-sort", asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        function key(r) {
          var c = r.cells[col];
          if (c.hasAttribute("data-v")) {
            var v = c.getAttribute("data-v");
            return v === "" ? -Infinity : parseFloat(v);
          }
          return c.textContent;
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var o = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return asc ? o : -o;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });

  // Galleries: every select/checkbox with data-filter="FIELD" inside a .browse block hides the
  // cards whose data-FIELD differs (checkboxes: data-FIELD must be "1").
  document.querySelectorAll(".browse").forEach(function (box) {
    var inputs = box.querySelectorAll("[data-filter]");
    function apply() {
      var shown = 0;
      box.querySelectorAll(".card").forEach(function (card) {
        var ok = true;
        inputs.forEach(function (inp) {
          var f = inp.getAttribute("data-filter");
          var want = inp.type === "checkbox" ? (inp.checked ? "1" : "") : inp.value;
          if (want !== "" && want !== "all" && card.getAttribute("data-" + f) !== want) ok = false;
        });
        card.hidden = !ok;
        if (ok) shown += 1;
      });
      var count = box.querySelector(".count");
      if (count) count.textContent = shown + " shown";
    }
    inputs.forEach(function (inp) { inp.addEventListener("change", apply); });
    apply();
  });
})();
