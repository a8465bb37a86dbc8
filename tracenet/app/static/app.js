// TraceNet tap-to-segment page. Talks to the JSON API documented in tracenet/app/__init__.py.
// Coordinates sent to the server are image pixels (x right, y down) of the image shown in #photo.
"use strict";

const $ = (id) => document.getElementById(id);
const photo = $("photo"), overlay = $("overlay"), statusLine = $("status");
const YELLOW = [245, 197, 24], BLUE = [61, 139, 253];

const state = {
  image: null,        // {image_id, name, width, height, url}
  selection: [],      // [{x, y, score, maskCanvas, polygons}]
  clickable: null,    // {canvas, forKey}
  tapCount: 0,
};

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function busy(on) {
  document.body.dataset.state = on ? "busy" : "idle";
  const anything = state.selection.some((s) => s.found);
  for (const b of document.querySelectorAll("[data-effect]")) b.disabled = on || !anything;
}

async function api(path, fields) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) form.append(k, v);
  const res = await fetch(path, { method: "POST", body: form });
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      detail = typeof body.detail === "string" ? body.detail
        : (body.detail || []).map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
    } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  return res;
}

// ---- opening images -------------------------------------------------------------------------------------
async function loadExamples() {
  const box = $("examples");
  try {
    const { examples } = await (await fetch("/api/examples")).json();
    for (const ex of examples) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.testid = `example-${ex.name}`;
      b.title = `open example ${ex.name}`;
      const thumb = document.createElement("img");
      thumb.alt = "";
      thumb.src = ex.url;
      const label = document.createElement("span");
      label.textContent = ex.name.replace(/\.png$/, "");
      b.append(thumb, label);
      b.addEventListener("click", () => openImage({ example: ex.name }));
      box.appendChild(b);
    }
  } catch (e) { setStatus(`could not list examples: ${e.message}`, true); }
}

async function openImage(fields) {
  busy(true);
  setStatus("opening image…");
  try {
    const info = await (await api("/api/images", fields)).json();
    await new Promise((resolve, reject) => {
      photo.onload = resolve;
      photo.onerror = () => reject(new Error("the browser could not display the image"));
      photo.src = info.url;
    });
    state.image = info;
    fitPhoto();
    overlay.width = info.width;
    overlay.height = info.height;
    clearSelection();
    $("stage").hidden = false;
    $("hint").hidden = true;
    $("result-box").hidden = true;
    setStatus(`${info.name}: ${info.width}×${info.height}. Tap an object.`);
  } catch (e) {
    setStatus(e.message, true);
  } finally { busy(false); }
}

function fitPhoto() {
  // Show the whole image as large as the stage allows (small images are scaled up too).
  if (!state.image && !photo.naturalWidth) return;
  const w = photo.naturalWidth, h = photo.naturalHeight;
  const availW = $("drop").clientWidth - 24, availH = window.innerHeight * 0.78;
  const scale = Math.max(0.01, Math.min(availW / w, availH / h));
  photo.style.width = `${Math.round(w * scale)}px`;
  photo.style.height = `${Math.round(h * scale)}px`;
}

// ---- taps and masks -------------------------------------------------------------------------------------
function tintedMask(pngBase64, rgb, alpha) {
  // Decode a 0/255 grey PNG into a canvas coloured `rgb` with `alpha` where the mask is on.
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const c = document.createElement("canvas");
      c.width = img.width; c.height = img.height;
      const ctx = c.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height), p = d.data;
      for (let i = 0; i < p.length; i += 4) {
        const on = p[i] > 127;
        p[i] = rgb[0]; p[i + 1] = rgb[1]; p[i + 2] = rgb[2]; p[i + 3] = on ? alpha : 0;
      }
      ctx.putImageData(d, 0, 0);
      resolve(c);
    };
    img.onerror = () => reject(new Error("could not decode the mask"));
    img.src = `data:image/png;base64,${pngBase64}`;
  });
}

function redraw() {
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  const lw = Math.max(1.5, overlay.width / 400);
  for (const s of state.selection) {
    ctx.drawImage(s.maskCanvas, 0, 0);
    ctx.strokeStyle = "rgba(20, 20, 20, 0.9)";
    ctx.lineWidth = lw;
    for (const poly of s.polygons) {
      ctx.beginPath();
      poly.forEach(([x, y], i) => (i ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
      ctx.closePath();
      ctx.stroke();
    }
  }
  if ($("clickable").checked && state.clickable) ctx.drawImage(state.clickable.canvas, 0, 0);
  for (const s of state.selection) {
    ctx.beginPath();
    ctx.arc(s.x + 0.5, s.y + 0.5, lw * 3, 0, 2 * Math.PI);
    ctx.fillStyle = "#e53935"; ctx.fill();
    ctx.strokeStyle = "#fff"; ctx.lineWidth = lw; ctx.stroke();
  }
  overlay.dataset.masks = String(state.selection.length);
}

function clearSelection() {
  state.selection = [];
  state.clickable = null;
  $("taps").innerHTML = "";
  $("latency").textContent = "No tap yet.";
  $("clickable-info").textContent = "";
  redraw();
  busy(false);
}

function tapPosition(event) {
  const r = photo.getBoundingClientRect();
  const x = Math.floor(((event.clientX - r.left) / r.width) * state.image.width);
  const y = Math.floor(((event.clientY - r.top) / r.height) * state.image.height);
  return [Math.min(Math.max(x, 0), state.image.width - 1), Math.min(Math.max(y, 0), state.image.height - 1)];
}

async function onTap(event) {
  if (!state.image || document.body.dataset.state === "busy") return;
  const [x, y] = tapPosition(event);
  const add = event.shiftKey || $("add-mode").checked;
  busy(true);
  setStatus(`segmenting at (${x}, ${y})…`);
  const t0 = performance.now();
  try {
    const r = await (await api("/api/segment",
      { image_id: state.image.image_id, x, y, format: "png,polygon" })).json();
    const roundTrip = performance.now() - t0;
    const maskCanvas = await tintedMask(r.mask_png, YELLOW, 120);
    const entry = { x, y, score: r.score, found: r.found, maskCanvas, polygons: r.polygons };
    state.selection = add ? [...state.selection, entry] : [entry];
    if (!add) $("taps").innerHTML = "";
    state.tapCount += 1;
    const model = r.cached ? "cached" : `model ${r.latency_ms.toFixed(0)} ms`;
    const switched = r.set_image_ms >= 0.5 ? ` + image ${r.set_image_ms.toFixed(0)} ms` : "";
    $("latency").textContent =
      `Tap ${state.tapCount} at (${x}, ${y}): score ${r.score.toFixed(2)} · ${model}${switched} · ` +
      `round trip ${roundTrip.toFixed(0)} ms`;
    const li = document.createElement("li");
    li.textContent = `(${x}, ${y}) score ${r.score.toFixed(2)}, ${r.area} px, ${model}`;
    $("taps").appendChild(li);
    state.clickable = null;
    redraw();
    setStatus(r.found ? `${state.selection.length} object(s) selected.`
      : `No object found there (${r.reason || "empty mask"}) — tap on the object itself.`, !r.found);
    if ($("clickable").checked) await updateClickable();
  } catch (e) {
    setStatus(e.message, true);
  } finally { busy(false); }
}

async function updateClickable() {
  const last = state.selection[state.selection.length - 1];
  if (!$("clickable").checked || !last) { redraw(); return; }
  const key = `${state.image.image_id}:${last.x},${last.y}`;
  if (state.clickable && state.clickable.forKey === key) { redraw(); return; }
  $("clickable-info").textContent = "computing where a tap gives this same mask…";
  try {
    const r = await (await api("/api/clickable",
      { image_id: state.image.image_id, x: last.x, y: last.y })).json();
    state.clickable = { canvas: await tintedMask(r.mask_png, BLUE, 150), forKey: key };
    $("clickable-info").textContent =
      `Blue: taps here give (nearly) the same mask — ${(100 * r.tolerance).toFixed(0)}% of the object ` +
      `(${r.n_predictions} model calls${r.exact ? "" : ", interpolated"}, ${r.server_ms.toFixed(0)} ms).`;
    redraw();
  } catch (e) { $("clickable-info").textContent = e.message; }
}

// ---- edits ----------------------------------------------------------------------------------------------
async function applyEffect(effect) {
  if (!state.selection.some((s) => s.found)) { setStatus("Tap an object first.", true); return; }
  busy(true);
  setStatus(`applying ${effect}…`);
  try {
    const fields = { image_id: state.image.image_id, effect,
      taps: state.selection.filter((s) => s.found).map((s) => `${s.x},${s.y}`).join(";") };
    if (effect === "blur") fields.strength = $("strength").value;
    if (effect === "replace") fields.color = $("color").value;
    const res = await api("/api/edit", fields);
    const blob = await res.blob();
    const name = (/filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "") || [])[1]
      || `edit-${effect}.png`;
    const url = URL.createObjectURL(blob);
    const old = $("download").href;
    if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
    $("result").src = url;
    $("download").href = url;
    $("download").download = name;
    $("download").textContent = `Download ${name}`;
    $("result-info").textContent = `${(blob.size / 1024).toFixed(0)} KB`;
    $("result-box").hidden = false;
    setStatus(`${effect} done.`);
  } catch (e) {
    setStatus(e.message, true);
  } finally { busy(false); }
}

// ---- wiring ---------------------------------------------------------------------------------------------
$("stage").addEventListener("click", onTap);
window.addEventListener("resize", fitPhoto);
$("clear").addEventListener("click", clearSelection);
$("clickable").addEventListener("change", updateClickable);
document.addEventListener("keydown", (e) => { if (e.key === "Escape") clearSelection(); });
for (const b of document.querySelectorAll("[data-effect]")) {
  b.addEventListener("click", () => applyEffect(b.dataset.effect));
}
$("file").addEventListener("change", (e) => {
  const f = e.target.files[0];
  if (f) openImage({ file: f });
  e.target.value = "";
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("dragging");
  const f = e.dataTransfer.files[0];
  if (f) openImage({ file: f });
});
loadExamples();
busy(false);
