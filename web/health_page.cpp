// The swarm health page: one self-contained HTML document (style and script
// inline, nothing fetched from elsewhere) that polls /api/v1/state every two
// seconds and re-renders. Data reaches the DOM only through textContent and
// attributes, never as HTML, since names and addresses come from any peer.
// Stable hooks for tests and scrapers: section.model[data-model],
// .block[data-block][data-servers][data-gap], tr.server[data-server-id][data-state],
// section.run[data-run], #status[data-crawls].
#include "web/health_routes.h"

namespace engine::web {

namespace {

const char kPage[] = R"engine_html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>engine swarm health</title>
<style>
  :root { --bg: #f7f7f5; --fg: #1d1d1f; --mute: #6b6b70; --ok: #2e9e57; --gap: #d92d20; --join: #d9a400; --line: #deded8; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
  header { padding: 14px 22px; background: #1d1d1f; color: #fafafa; display: flex; gap: 18px; align-items: baseline; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  header .meta { color: #b5b5ba; font-size: 13px; }
  #status.bad { color: #ff8a80; }
  main { padding: 6px 22px 30px; max-width: 1200px; }
  h2 { font-size: 16px; margin: 22px 0 6px; }
  h2 .tag { font-size: 12px; font-weight: 600; padding: 2px 8px; border-radius: 10px; margin-left: 8px; color: #fff; background: var(--ok); }
  h2 .tag.gap { background: var(--gap); }
  .sub { color: var(--mute); font-size: 13px; }
  .blocks { display: flex; gap: 3px; margin: 8px 0 10px; flex-wrap: wrap; }
  .block { min-width: 34px; height: 34px; border-radius: 4px; display: flex; align-items: center; justify-content: center;
           flex-direction: column; font-size: 11px; color: #fff; background: var(--ok); }
  .block small { font-size: 9px; opacity: .85; }
  .block[data-gap="true"] { background: var(--gap); }
  table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
  th, td { text-align: left; padding: 5px 9px; border-bottom: 1px solid var(--line); font-size: 13px; white-space: nowrap; }
  th { background: #efefeb; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state { font-weight: 600; }
  .state.online { color: var(--ok); } .state.joining { color: var(--join); } .state.offline { color: var(--mute); }
  .span { position: relative; height: 10px; background: #ecece8; border-radius: 3px; min-width: 120px; }
  .span i { position: absolute; top: 0; bottom: 0; background: #5b7fd6; border-radius: 3px; }
  .bar { height: 8px; background: #ecece8; border-radius: 4px; min-width: 120px; overflow: hidden; }
  .bar i { display: block; height: 100%; background: #5b7fd6; }
  .id { font-family: ui-monospace, monospace; font-size: 12px; color: var(--mute); }
  .empty { color: var(--mute); font-style: italic; margin: 10px 0; }
</style>
</head>
<body>
<header>
  <h1>engine swarm health</h1>
  <span class="meta" id="node"></span>
  <span class="meta" id="status" data-crawls="0">loading…</span>
</header>
<main>
  <section id="models"><h2>Models</h2><div class="empty">waiting for the first crawl…</div></section>
  <section id="runs"></section>
</main>
<script>
"use strict";
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, String(v));
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function fmt(v, digits) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return String(v);
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(digits === undefined ? 1 : digits);
}
function short(id) { return id ? id.slice(0, 8) : ""; }
function span(a, b) { return b - a === 1 ? String(a) : a + "–" + (b - 1); }

function renderModel(m) {
  const gaps = m.gaps.map(g => span(g[0], g[1]));
  const h = el("h2", {}, m.name, " ",
    el("span", {class: "tag" + (m.complete ? "" : " gap")}, m.complete ? "all blocks served" : "gap: blocks " + gaps.join(", ")),
    " ", el("span", {class: "sub"}, m.n_blocks + " blocks, " + m.servers.length + (m.servers.length === 1 ? " server" : " servers")));
  const strip = el("div", {class: "blocks"});
  for (const b of m.blocks)
    strip.append(el("div", {class: "block", id: "block-" + m.name + "-" + b.index, "data-block": b.index,
      "data-servers": b.servers.length, "data-gap": b.gap ? "true" : "false",
      title: "block " + b.index + ": " + (b.gap ? "no online server" : b.servers.map(short).join(", "))},
      String(b.index), el("small", {}, "×" + b.servers.length)));
  const t = el("table", {class: "servers"},
    el("tr", {}, ...["server", "state", "blocks", "", "throughput (tok/s/block)", "cache tokens left", "address", "version"]
      .map(x => el("th", {}, x))));
  for (const s of m.servers) {
    const bar = el("div", {class: "span"}, el("i", {style: "left:" + (100 * s.first / m.n_blocks) + "%;width:" +
      (100 * (s.last - s.first) / m.n_blocks) + "%"}));
    t.append(el("tr", {class: "server", "data-server-id": s.id, "data-state": s.state, "data-first": s.first, "data-last": s.last},
      el("td", {}, s.public_name ? s.public_name + " " : "", el("span", {class: "id"}, short(s.id))),
      el("td", {class: "state " + s.state}, s.state),
      el("td", {}, s.first + ":" + s.last), el("td", {}, bar),
      el("td", {class: "num"}, fmt(s.throughput)), el("td", {class: "num"}, fmt(s.cache_tokens_left, 0)),
      el("td", {}, s.address), el("td", {}, s.version)));
  }
  if (!m.servers.length) t.append(el("tr", {}, el("td", {colspan: 8, class: "empty"}, "no live announcements")));
  return el("section", {class: "model", "data-model": m.name, "data-complete": m.complete ? "true" : "false"}, h, strip, t);
}

function renderRun(r) {
  const frac = r.target_batch > 0 ? Math.min(1, r.samples / r.target_batch) : 0;
  const h = el("h2", {}, r.name, " ", el("span", {class: "sub"}, r.parent ? "part of " + r.parent : "collaborative run"));
  const t = el("table", {class: "progress"},
    el("tr", {}, ...["epoch", "samples / target batch", "", "samples/s", "peers (at epoch)", "loss", "eta"].map(x => el("th", {}, x))),
    el("tr", {class: "run-summary"},
      el("td", {class: "num", "data-epoch": r.epoch}, r.epoch),
      el("td", {class: "num"}, r.samples + " / " + (r.target_batch || "?")),
      el("td", {}, el("div", {class: "bar"}, el("i", {style: "width:" + (100 * frac) + "%"}))),
      el("td", {class: "num"}, fmt(r.samples_per_s)),
      el("td", {class: "num", "data-peers": r.n_peers}, r.n_peers + " (" + r.peers_at_epoch + ")"),
      el("td", {class: "num"}, fmt(r.loss, 4)),
      el("td", {class: "num"}, r.eta_s === null ? "—" : fmt(r.eta_s) + " s")));
  const p = el("table", {class: "peers"}, el("tr", {}, ...["peer", "epoch", "samples", "samples/s", "loss", "address"].map(x => el("th", {}, x))));
  for (const q of r.peers)
    p.append(el("tr", {class: "peer", "data-peer": q.peer}, el("td", {class: "id"}, short(q.peer.replace("@", ""))),
      el("td", {class: "num"}, q.epoch), el("td", {class: "num"}, q.samples), el("td", {class: "num"}, fmt(q.samples_per_s)),
      el("td", {class: "num"}, fmt(q.loss, 4)), el("td", {}, q.client ? "(client)" : q.address)));
  return el("section", {class: "run", "data-run": r.name, "data-parent": r.parent}, h, t, el("details", {}, el("summary", {}, "peers"), p));
}

function render(s) {
  document.getElementById("node").textContent = s.node.role + " " + s.node.address + " · swarm " + s.node.swarm;
  const st = document.getElementById("status");
  st.dataset.crawls = s.crawls;
  st.className = s.status === "ok" ? "meta" : "meta bad";
  st.textContent = (s.status === "ok" ? "" : s.status + " · ") + "crawl #" + s.crawls +
    (s.age_s === null ? "" : ", " + fmt(s.age_s) + " s ago") + " · every " + s.crawl_interval_s + " s";
  const models = el("section", {id: "models"}, el("h2", {}, "Models"));
  if (!s.models.length) models.append(el("div", {class: "empty"}, s.crawls ? "no model is announced in this swarm" : "waiting for the first crawl…"));
  for (const m of s.models) models.append(renderModel(m));
  document.getElementById("models").replaceWith(models);
  const runs = el("section", {id: "runs"});
  if (s.runs.length) runs.append(el("h2", {}, "Training runs"));
  for (const r of s.runs) runs.append(renderRun(r));
  document.getElementById("runs").replaceWith(runs);
}

async function refresh() {
  try {
    const r = await fetch("/api/v1/state", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    const st = document.getElementById("status");
    st.className = "meta bad";
    st.textContent = "cannot reach the node: " + e.message;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
)engine_html";

}  // namespace

const char* health_page_html() { return kPage; }

}  // namespace engine::web
