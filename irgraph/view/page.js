// irgraph view: draws the embedded graph data with dagre (vendored, inlined above).
// Layers fold into blocks; a click on a block opens or closes it, a click on a node shows it.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("irgraph-data").textContent);
  var SVG_NS = "http://www.w3.org/2000/svg";
  var expanded = {};
  var metric = "decode_flops";
  var selected = null;
  var view = { x: 0, y: 0, k: 1 };
  var svg = document.getElementById("canvas");
  var scene = document.getElementById("scene");

  var byId = {};
  var blockOrder = [];
  var blockNodes = {};
  DATA.nodes.forEach(function (n) {
    byId[n.id] = n;
    if (n.block) {
      if (!blockNodes[n.block]) { blockNodes[n.block] = []; blockOrder.push(n.block); }
      blockNodes[n.block].push(n);
    }
  });
  DATA.inputs.forEach(function (v) { byId[v.id] = v; });
  DATA.outputs.forEach(function (v) { byId[v.id] = v; });
  // A source read in many layers (position ids, the attention mask) would draw an edge into
  // every layer and drag the layout sideways: it is drawn once, without edges into blocks.
  var readers = {};
  DATA.nodes.concat(DATA.outputs).forEach(function (n) {
    (n.in || []).forEach(function (src) {
      if (!readers[src]) readers[src] = {};
      readers[src][n.block || ""] = true;
    });
  });
  var shared = {};
  Object.keys(readers).forEach(function (src) {
    var count = Object.keys(readers[src]).filter(function (b) { return b; }).length;
    if (count >= 3) shared[src] = count;
  });
  var folded = DATA.nodes.length > 150;
  blockOrder.forEach(function (b) { expanded[b] = !folded; });

  function metricValue(n) {
    if (!n.cost) return 0;
    var v = n.cost[metric] || 0;
    return metric === "prefill_flops" ? v / DATA.totals.context : v;
  }
  function blockValue(b) {
    return blockNodes[b].reduce(function (s, n) { return s + metricValue(n); }, 0);
  }
  function fmt(x) {
    if (x === 0) return "0";
    var units = ["", "K", "M", "G", "T", "P", "E"];
    var i = 0;
    while (Math.abs(x) >= 1000 && i < units.length - 1) { x /= 1000; i++; }
    return (Math.abs(x) >= 100 || i === 0 ? x.toFixed(0) : x.toPrecision(3)) + units[i];
  }
  function colour(v, max) {
    if (!(v > 0) || !(max > 0)) return "#f4f4f4";
    var t = Math.log(1 + 1000 * v / max) / Math.log(1001);  // log scale, 0..1
    return "hsl(" + (55 - 55 * t).toFixed(0) + ",90%," + (92 - 42 * t).toFixed(0) + "%)";
  }
  function rep(id) {
    var n = byId[id];
    if (n && n.block && !expanded[n.block]) return "b:" + n.block;
    return id;
  }
  function el(tag, attrs, parent) {
    var e = document.createElementNS(SVG_NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function layout() {
    var g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
    g.setGraph({ rankdir: "TB", nodesep: 18, ranksep: 26, marginx: 20, marginy: 20 });
    g.setDefaultEdgeLabel(function () { return {}; });
    var vertices = DATA.inputs.concat(DATA.nodes, DATA.outputs);
    var shown = {};
    vertices.forEach(function (v) {
      var r = rep(v.id);
      if (shown[r]) return;
      shown[r] = true;
      if (r !== v.id) {
        var changed = blockNodes[v.block].filter(function (n) { return n.status; }).length;
        g.setNode(r, { kind: "block", block: v.block, width: 200, height: 34,
          label: v.block + "  (" + blockNodes[v.block].length + " nodes)" +
            (changed ? "  \u0394" + changed : "") });
      } else {
        var label = (v.op || v.name) + (shared[v.id] ? "  \u2192 " + shared[v.id] + " layers" : "");
        g.setNode(r, { kind: v.op ? "node" : "io", data: v,
          width: Math.max(60, 7 * label.length + 16), height: 28, label: label });
        if (v.block && expanded[v.block]) {
          if (!g.hasNode("c:" + v.block)) g.setNode("c:" + v.block, { kind: "cluster", block: v.block,
            label: v.block, paddingTop: 20 });
          g.setParent(r, "c:" + v.block);
        }
      }
    });
    vertices.forEach(function (v) {
      (v.in || []).forEach(function (src) {
        var a = rep(src), b = rep(v.id);
        if (shared[src] && v.block) return;
        if (a !== b && g.hasNode(a)) g.setEdge(a, b);
      });
    });
    dagre.layout(g);
    return g;
  }

  function draw() {
    var g = layout();
    while (scene.firstChild) scene.removeChild(scene.firstChild);
    var max = 0;
    var values = {};
    g.nodes().forEach(function (id) {
      var d = g.node(id);
      if (d.kind === "block") {
        values[id] = blockValue(d.block);
        d.label += "  " + fmt(values[id]);
      }
      else if (d.kind === "node") values[id] = metricValue(d.data);
      if (values[id] > max) max = values[id];
    });
    g.nodes().forEach(function (id) {
      var d = g.node(id);
      if (d.kind !== "cluster") return;
      var grp = el("g", { "class": "cluster" }, scene);
      el("rect", { x: d.x - d.width / 2, y: d.y - d.height / 2, width: d.width, height: d.height,
        rx: 6 }, grp);
      var t = el("text", { x: d.x - d.width / 2 + 8, y: d.y - d.height / 2 + 14 }, grp);
      t.textContent = "\u25be " + d.block;
      grp.addEventListener("click", function (e) {
        if (e.target.tagName === "text") { expanded[d.block] = false; draw(); }
      });
    });
    g.edges().forEach(function (e) {
      var pts = g.edge(e).points;
      var path = "M" + pts.map(function (p) { return p.x.toFixed(1) + "," + p.y.toFixed(1); })
        .join("L");
      el("path", { d: path, "class": "edge", "marker-end": "url(#arrow)" }, scene);
    });
    g.nodes().forEach(function (id) {
      var d = g.node(id);
      if (d.kind === "cluster") return;
      var cls = "vertex " + d.kind + (d.data && d.data.status ? " " + d.data.status : "") +
        (selected === id ? " selected" : "");
      var grp = el("g", { "class": cls, "data-id": id }, scene);
      el("rect", { x: d.x - d.width / 2, y: d.y - d.height / 2, width: d.width, height: d.height,
        rx: d.kind === "io" ? 14 : 4, fill: d.kind === "io" ? "#e8eef8" : colour(values[id], max) },
        grp);
      var t = el("text", { x: d.x, y: d.y + 4, "text-anchor": "middle" }, grp);
      t.textContent = d.label;
      grp.addEventListener("click", function () {
        if (d.kind === "block") { expanded[d.block] = true; draw(); }
        else { selected = id; show(d.data); draw(); }
      });
    });
    var size = g.graph();
    scene.dataset.width = size.width;
    scene.dataset.height = size.height;
    apply();
  }

  function apply() {
    scene.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")");
  }
  function fit(whole) {
    var w = +scene.dataset.width || 1, h = +scene.dataset.height || 1;
    var box = svg.getBoundingClientRect();
    // the first view is readable (fits the width, starts at the top); "fit" shows everything
    view.k = Math.min(1.2, box.width / w, whole ? box.height / h : Infinity);
    view.x = (box.width - w * view.k) / 2;
    view.y = 10;
    apply();
  }

  function row(table, key, value) {
    var tr = document.createElement("tr");
    var th = document.createElement("th");
    th.textContent = key;
    var td = document.createElement("td");
    td.textContent = value;
    tr.appendChild(th);
    tr.appendChild(td);
    table.appendChild(tr);
  }
  function show(n) {
    var box = document.getElementById("details");
    box.innerHTML = "";
    var h = document.createElement("h3");
    h.textContent = (n.op || n.name) + (n.status ? " (" + n.status + ")" : "");
    box.appendChild(h);
    var table = document.createElement("table");
    if (n.block) row(table, "block", n.block);
    (n.types || (n.type ? [n.type] : [])).forEach(function (t, i) { row(table, "output " + i, t); });
    Object.keys(n.attrs || {}).forEach(function (k) { row(table, k, n.attrs[k]); });
    (n.params || []).forEach(function (p) { row(table, "@" + p[0], p[1]); });
    if (n.cost) Object.keys(DATA.metrics).forEach(function (k) {
      var v = n.cost[k];
      var bytes = k === "weight_bytes" || k === "kv_bytes_per_token";
      row(table, DATA.metrics[k],
        fmt(k === "prefill_flops" ? v / DATA.totals.context : v) + (bytes ? "B" : ""));
    });
    box.appendChild(table);
    if (n.text) {
      var pre = document.createElement("pre");
      pre.textContent = n.text;
      box.appendChild(pre);
    }
  }

  function totals() {
    var t = DATA.totals;
    var table = document.getElementById("totals");
    row(table, "nodes", t.nodes);
    row(table, "params", t.params.toLocaleString() + " (" + t.active_params.toLocaleString() +
      " active)");
    row(table, "weights", fmt(t.weight_bytes) + "B");
    row(table, "FLOPs/token", fmt(t.prefill_flops_per_token) + " prefill, " +
      fmt(t.decode_flops_per_token) + " decode (context " + t.context + ")");
    row(table, "KV cache/token", fmt(t.kv_bytes_per_token) + "B (16-bit)");
    if (DATA.diff) row(table, "diff (" + DATA.diff.mode + ")", DATA.diff.added + " added, " +
      DATA.diff.rewritten + " rewritten, " + DATA.diff.removed + " removed");
  }

  function topTable() {
    var body = document.getElementById("top");
    body.innerHTML = "";
    var total = DATA.nodes.reduce(function (s, n) { return s + metricValue(n); }, 0);
    var rows = DATA.nodes.filter(function (n) { return metricValue(n) > 0; })
      .sort(function (a, b) { return metricValue(b) - metricValue(a); }).slice(0, 25);
    rows.forEach(function (n) {
      var tr = document.createElement("tr");
      [n.op, n.block || "", fmt(metricValue(n)),
        (100 * metricValue(n) / total).toFixed(1) + "%"].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      tr.addEventListener("click", function () {
        if (n.block) expanded[n.block] = true;
        selected = n.id;
        show(n);
        draw();
      });
      body.appendChild(tr);
    });
  }

  var select = document.getElementById("metric");
  Object.keys(DATA.metrics).forEach(function (k) {
    var o = document.createElement("option");
    o.value = k;
    o.textContent = DATA.metrics[k];
    select.appendChild(o);
  });
  select.addEventListener("change", function () { metric = select.value; topTable(); draw(); });
  document.getElementById("expand").addEventListener("click", function () {
    blockOrder.forEach(function (b) { expanded[b] = true; }); draw(); fit(true);
  });
  document.getElementById("collapse").addEventListener("click", function () {
    blockOrder.forEach(function (b) { expanded[b] = false; }); draw(); fit(true);
  });
  document.getElementById("fit").addEventListener("click", function () { fit(true); });
  var drag = null;
  svg.addEventListener("mousedown", function (e) { drag = { x: e.clientX - view.x, y: e.clientY - view.y }; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (e) {
    if (drag) { view.x = e.clientX - drag.x; view.y = e.clientY - drag.y; apply(); }
  });
  svg.addEventListener("wheel", function (e) {
    e.preventDefault();
    var box = svg.getBoundingClientRect();
    var f = Math.exp(-e.deltaY * 0.0015);
    var mx = e.clientX - box.left, my = e.clientY - box.top;
    view.x = mx - (mx - view.x) * f;
    view.y = my - (my - view.y) * f;
    view.k *= f;
    apply();
  }, { passive: false });

  document.getElementById("title").textContent = DATA.title;
  if (!DATA.diff) document.getElementById("legend").style.display = "none";
  // page.html#fold&expand=layers.0,layers.1&select=n42: fold every block, open those, show n42
  if (/(^#|&)fold(&|$)/.test(location.hash)) {
    folded = true;
    blockOrder.forEach(function (b) { expanded[b] = false; });
  }
  var wanted = /expand=([^&]*)/.exec(location.hash);
  if (wanted) decodeURIComponent(wanted[1]).split(",").forEach(function (b) {
    if (b in expanded) expanded[b] = true;
  });
  var pick = /select=([^&]*)/.exec(location.hash);
  if (pick && byId[decodeURIComponent(pick[1])]) {
    var chosen = byId[decodeURIComponent(pick[1])];
    if (chosen.block) expanded[chosen.block] = true;
    selected = chosen.id;
    show(chosen);
  }
  totals();
  topTable();
  draw();
  fit(!folded);
  document.body.dataset.ready = "1";
})();
