// Items: filter by change type, metric and slice, search text, page through. Every value from the
// data is put into the page with textContent, never as markup.
(function () {
  "use strict";
  var source = document.getElementById("items-data");
  if (!source) { return; }
  var items = JSON.parse(source.textContent);
  var list = document.getElementById("item-list");
  var more = document.getElementById("item-more");
  var shown = document.getElementById("item-shown");
  var controls = {
    change: document.getElementById("f-change"), metric: document.getElementById("f-metric"),
    slice: document.getElementById("f-slice"), search: document.getElementById("f-search")
  };
  var PAGE = 100, limit = PAGE, matching = [];

  function text(tag, value, cls) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    node.textContent = value === null || value === undefined ? "" : String(value);
    return node;
  }

  function words(value) { return value ? value.split(/(\s+)/) : []; }

  // Word-level LCS diff; outputs are at most 300 characters, so the table stays small.
  function diff(a, b) {
    var x = words(a), y = words(b), n = x.length, m = y.length, i, j;
    var table = [];
    for (i = 0; i <= n; i++) { table.push(new Array(m + 1).fill(0)); }
    for (i = n - 1; i >= 0; i--) {
      for (j = m - 1; j >= 0; j--) {
        table[i][j] = x[i] === y[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
      }
    }
    var left = [], right = [];
    i = 0; j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) { left.push(["", x[i]]); right.push(["", y[j]]); i++; j++; }
      else if (j < m && (i === n || table[i][j + 1] >= table[i + 1][j])) { right.push(["ins", y[j]]); j++; }
      else { left.push(["del", x[i]]); i++; }
    }
    return [left, right];
  }

  function output(parts, missing) {
    var pre = document.createElement("pre");
    if (missing) { pre.appendChild(text("em", "(no output)")); return pre; }
    parts.forEach(function (part) {
      pre.appendChild(part[0] ? text(part[0], part[1]) : document.createTextNode(part[1]));
    });
    return pre;
  }

  function score(value) { return value === null ? "n/a" : Number(value).toFixed(2); }

  function card(item) {
    var box = document.createElement("div");
    box.className = "item";
    var head = document.createElement("div");
    head.className = "head";
    head.appendChild(text("span", item[0], "id"));
    head.appendChild(text("span", item[2], item[2]));
    head.appendChild(text("span", item[1] + ": " + score(item[3]) + " \u2192 " + score(item[4])));
    head.appendChild(text("span", "slices: " + item[7].join(", "), "sub"));
    box.appendChild(head);
    if (item[8].length) {
      box.appendChild(text("div", item[8].map(function (f) { return f[0] + ": " + f[1]; }).join("\n"), "input"));
    }
    var parts = diff(item[5] || "", item[6] || "");
    var sides = document.createElement("div");
    sides.className = "sides";
    [["baseline", parts[0], item[5] === null], ["candidate", parts[1], item[6] === null]].forEach(function (side) {
      var column = document.createElement("div");
      column.appendChild(text("div", side[0], "label"));
      column.appendChild(output(side[1], side[2]));
      sides.appendChild(column);
    });
    box.appendChild(sides);
    return box;
  }

  function haystack(item) {
    return [item[0], item[5] || "", item[6] || ""].concat(item[8].map(function (f) { return f[1]; }))
      .join("\n").toLowerCase();
  }
  var searchable = items.map(haystack);

  function apply() {
    var change = controls.change.value, metric = controls.metric.value, slice = controls.slice.value;
    var needle = controls.search.value.trim().toLowerCase();
    matching = [];
    items.forEach(function (item, index) {
      if (change && item[2] !== change) { return; }
      if (metric && item[1] !== metric) { return; }
      if (slice && item[7].indexOf(slice) < 0) { return; }
      if (needle && searchable[index].indexOf(needle) < 0) { return; }
      matching.push(item);
    });
    draw();
  }

  function draw() {
    list.textContent = "";
    var fragment = document.createDocumentFragment();
    matching.slice(0, limit).forEach(function (item) { fragment.appendChild(card(item)); });
    list.appendChild(fragment);
    shown.textContent = Math.min(limit, matching.length) + " of " + matching.length + " shown";
    more.hidden = matching.length <= limit;
  }

  ["change", "metric", "slice"].forEach(function (name) {
    controls[name].addEventListener("change", function () { limit = PAGE; apply(); });
  });
  controls.search.addEventListener("input", function () { limit = PAGE; apply(); });
  more.addEventListener("click", function () { limit += PAGE; draw(); });
  apply();
}());
