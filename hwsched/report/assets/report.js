// hwsched report: sort and filter the ranking table. No network, no dependencies.
(function () {
  "use strict";
  var table = document.getElementById("ranking-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;

  // Cells carry their sort value in data-v: a number, or text when the column is textual.
  function cellValue(row, index, numeric) {
    var raw = row.cells[index].getAttribute("data-v");
    if (raw === null) { raw = row.cells[index].textContent; }
    if (!numeric) { return raw.toLowerCase(); }
    var value = parseFloat(raw);
    return isNaN(value) ? Infinity : value;  // missing numbers sort last ascending
  }

  function sortBy(index) {
    var th = headers[index];
    var numeric = th.getAttribute("data-type") === "num";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    // Original order breaks ties, so a sort is stable and repeatable.
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      if (x < y) { return ascending ? -1 : 1; }
      if (x > y) { return ascending ? 1 : -1; }
      return a.getAttribute("data-order") - b.getAttribute("data-order");
    });
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.forEach(function (row) { body.appendChild(row); });
  }

  Array.prototype.forEach.call(headers, function (th, index) {
    if (!th.classList.contains("sortable")) { return; }
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(index); });
    th.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(index); }
    });
  });

  var text = document.getElementById("filter-text");
  var feasible = document.getElementById("filter-feasible");
  var pareto = document.getElementById("filter-pareto");
  var baselines = document.getElementById("filter-baselines");
  var count = document.getElementById("filter-count");

  function applyFilter() {
    var needle = text.value.trim().toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var hide = (needle && row.textContent.toLowerCase().indexOf(needle) < 0) ||
        (feasible.checked && row.getAttribute("data-feasible") !== "1") ||
        (pareto.checked && row.getAttribute("data-pareto") !== "1") ||
        (!baselines.checked && row.classList.contains("baseline"));
      row.hidden = !!hide;
      if (!hide) { shown += 1; }
    });
    count.textContent = shown + " of " + body.rows.length + " rows";
  }
  [text, feasible, pareto, baselines].forEach(function (input) {
    input.addEventListener("input", applyFilter);
    input.addEventListener("change", applyFilter);
  });
  applyFilter();
})();
