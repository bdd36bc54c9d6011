// The gallery's behaviour: filters select frames (PSPI range, an AU at or above a level) and
// identities (demographic groups); the gallery shows identities with a matching frame, and
// #identity-N shows that identity's matching frames. Data: the JSON block in the page.
const DATA = JSON.parse(document.getElementById("gallery-data").textContent);
const BY_ID = new Map(DATA.identities.map(e => [String(e.identity), e]));
for (const e of DATA.identities) for (const f of e.frames) f.au = Object.fromEntries(f.aus);
const $ = id => document.getElementById(id);

function query() {
  const groups = {};
  for (const g of DATA.group_cols) groups[g] = $("f-" + g).value;
  return { lo: +$("f-pspi-lo").value, hi: +$("f-pspi-hi").value, au: $("f-au").value,
           auMin: +$("f-au-min").value, groups };
}

function frameMatches(f, q) {
  if (f.pspi < q.lo || f.pspi > q.hi) return false;
  return !q.au || (f.au[q.au] || 0) >= q.auMin;
}

function matchingFrames(e, q) {
  for (const [g, v] of Object.entries(q.groups)) if (v && e.groups[g] !== v) return [];
  return e.frames.filter(f => frameMatches(f, q));
}

function applyFilters() {
  const q = query();
  let shown = 0;
  for (const tile of document.querySelectorAll("#gallery .thumb")) {
    const e = BY_ID.get(tile.dataset.id);
    const n = matchingFrames(e, q).length;
    tile.hidden = n === 0;
    tile.querySelector(".matches").textContent = `${n}/${e.frames.length} frames match`;
    if (n) shown += 1;
  }
  $("match-count").textContent = `${shown} of ${DATA.identities.length} identities shown`;
  route();
}

function el(tag, cls, text) {
  const x = document.createElement(tag);
  if (cls) x.className = cls;
  if (text !== undefined) x.textContent = text;
  return x;
}

function image(src, alt) {
  const im = el("img");
  im.src = src; im.alt = alt; im.loading = "lazy";
  return im;
}

function frameCard(f) {
  const card = el("div", "frame");
  card.dataset.sample = f.id;
  const pair = el("div", "pair");
  pair.append(image("frames/" + f.file, f.id));
  pair.append(f.heat ? image("heatmaps/" + f.file, "heatmap " + f.id) : el("div", "none", "no heatmap"));
  card.append(pair);
  const where = f.expression === null ? f.id : `expression ${f.expression} · view ${f.view}` +
    (f.yaw === null ? "" : ` (yaw ${f.yaw}°)`);
  card.append(el("div", "", where));
  card.append(el("div", "pspi", `PSPI ${f.pspi}`));
  const aus = f.aus.map(([a, v]) => `${a} ${v}`).join(" · ");
  card.append(el("div", "", aus || "no AU active"));
  if (f.qa.length) {
    const q = Object.fromEntries(f.qa), fail = q.pass === false || q.face_found === false;
    const read = f.qa.filter(([k]) => k.startsWith("AU"))
      .map(([k, v]) => `${k} ${v === null ? "—" : v.toFixed(3)}`).join(" · ");
    const head = `QA: ${q.pass === undefined ? "" : (q.pass ? "pass" : "FAIL")}` +
      (q.face_found === false ? ", no face found" : "");
    card.append(el("div", fail ? "qa-fail" : "", `${head}${read ? " · read " + read : ""}`));
  }
  return card;
}

function showIdentity(e) {
  const q = query(), frames = matchingFrames(e, q);
  $("identity-title").textContent = `Identity ${e.identity}`;
  const meta = $("identity-meta");
  meta.replaceChildren();
  for (const [k, v] of Object.entries({...e.groups, ...e.scene}))
    meta.append(el("span", "", `${k.replaceAll("_", " ")}: ${v}`));
  const total = e.total_frames > e.frames.length ?
    ` (an even sample of its ${e.total_frames} frames)` : "";
  $("identity-count").textContent =
    `${frames.length} of ${e.frames.length} frames shown${total}; the filters above apply.`;
  $("frames").replaceChildren(...frames.map(frameCard));
  const opening = $("identity-view").hidden;
  $("identity-view").hidden = false;
  $("gallery").hidden = true;
  if (opening) $("gallery-section").scrollIntoView();
}

function route() {
  const m = location.hash.match(/^#identity-(.+)$/);
  const e = m && BY_ID.get(decodeURIComponent(m[1]));
  if (e) { showIdentity(e); return; }
  $("identity-view").hidden = true;
  $("gallery").hidden = false;
}

for (const x of document.querySelectorAll("#filters select")) x.addEventListener("change", applyFilters);
$("f-reset").addEventListener("click", () => {
  for (const x of document.querySelectorAll("#filters select")) x.selectedIndex = x.dataset.default | 0;
  applyFilters();
});
window.addEventListener("hashchange", route);
applyFilters();
