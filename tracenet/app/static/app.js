// TraceNet tap-to-segment page. Two modes: "on this device" (default where the browser can: the model runs in the
// page with onnxruntime-web, see static/device/; the photo never leaves the browser) and "on the server" (the JSON
// API documented in tracenet/app/__init__.py). Taps are image pixels (x right, y down) of the photo in #photo.
"use strict";

const $ = (id) => document.getElementById(id);
const photo = $("photo"), overlay = $("overlay"), statusLine = $("status");
const YELLOW = [245, 197, 24], BLUE = [61, 139, 253];

const state = {
  mode: "server",     // "device" | "server"
  device: null,       // the DeviceEngine once started (static/device/device.js)
  deviceError: "",    // why the device mode is off
  image: null,        // {image_id, name, width, height, url} (server) or {name, width, height, local: true}
  selection: [],      // [{x, y, score, found, maskCanvas, polygons, mask (device: Uint8Array), key (device)}]
  clickable: null,    // {canvas, forKey}
  tapCount: 0,
  encoderMs: null,    // device mode: the encoder's time for the current photo
};
window.tracenetPage = state;  // for the browser tests and the benchmark

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function busy(on) {
  document.body.dataset.state = on ? "busy" : "idle";
  for (const b of document.querySelectorAll("[data-mode-choice]")) b.disabled = on || (b.dataset.modeChoice === "device" && !!state.deviceError);
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
  if (state.mode === "device") return openImageOnDevice(fields);
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
    showImage(`${info.name}: ${info.width}×${info.height}. Tap an object.`);
  } catch (e) {
    setStatus(e.message, true);
  } finally { busy(false); }
}

async function openImageOnDevice(fields) {
  busy(true);
  setStatus("opening image on this device…");
  let url = null;
  try {
    let blob = fields.file, name = fields.file ? fields.file.name : fields.example;
    if (!blob) {  // a bundled example: a plain GET of the file, nothing is sent
      const res = await fetch(`/api/examples/${encodeURIComponent(fields.example)}`);
      if (!res.ok) throw new Error(`could not fetch the example ${name}: ${res.status}`);
      blob = await res.blob();
    }
    const r = await state.device.setImage(blob, name);
    url = URL.createObjectURL(blob);
    await new Promise((resolve, reject) => {
      photo.onload = resolve;
      photo.onerror = () => reject(new Error(`${name}: the browser could not display the image`));
      photo.src = url;
    });
    const old = state.image && state.image.url;
    if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
    state.image = { name, width: r.width, height: r.height, url, local: true };
    state.encoderMs = r.encoder_ms;
    showImage(`${name}: ${r.width}×${r.height}, encoded on this device in ${r.encoder_ms.toFixed(0)} ms ` +
      `(network input ${r.net_width}×${r.net_height}). Tap an object.`);
  } catch (e) {
    if (url) URL.revokeObjectURL(url);
    setStatus(e.message, true);
  } finally { busy(false); }
}

function showImage(message) {
  fitPhoto();
  overlay.width = state.image.width;
  overlay.height = state.image.height;
  clearSelection();
  $("stage").hidden = false;
  $("hint").hidden = true;
  $("result-box").hidden = true;
  setStatus(message);
}

function fitPhoto() {
  // Show the whole image as large as the stage allows (small images are scaled up too).
  if (!state.image && !photo.naturalWidth) return;
  const w = photo.naturalWidth, h = photo.naturalHeight;
  const availW = $("drop").clientWidth - 24, availH = window.innerHeight * (window.innerWidth < 600 ? 0.6 : 0.78);
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

function maskCanvas(mask, width, height, rgb, alpha) {
  // A 0/1 Uint8Array mask -> canvas coloured `rgb` with `alpha` where the mask is on.
  const c = document.createElement("canvas");
  c.width = width; c.height = height;
  const ctx = c.getContext("2d");
  const d = ctx.createImageData(width, height), p = d.data;
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    p[4 * i] = rgb[0]; p[4 * i + 1] = rgb[1]; p[4 * i + 2] = rgb[2]; p[4 * i + 3] = alpha;
  }
  ctx.putImageData(d, 0, 0);
  return c;
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
  if (state.mode === "device") return tapOnDevice(x, y, add, t0);
  try {
    const r = await (await api("/api/segment",
      { image_id: state.image.image_id, x, y, format: "png,polygon" })).json();
    const roundTrip = performance.now() - t0;
    const entry = { x, y, score: r.score, found: r.found, polygons: r.polygons,
      maskCanvas: await tintedMask(r.mask_png, YELLOW, 120) };
    const model = r.cached ? "cached" : `server model ${r.latency_ms.toFixed(0)} ms`;
    const switched = r.set_image_ms >= 0.5 ? ` + image ${r.set_image_ms.toFixed(0)} ms` : "";
    recordTap(entry, add, r.area, model, switched, roundTrip);
    setStatus(r.found ? `${state.selection.length} object(s) selected.`
      : `No object found there (${r.reason || "empty mask"}) — tap on the object itself.`, !r.found);
    if ($("clickable").checked) await updateClickable();
  } catch (e) {
    setStatus(e.message, true);
  } finally { busy(false); }
}

async function tapOnDevice(x, y, add, t0) {
  try {
    const r = await state.device.tap(x, y);
    const entry = { x, y, score: r.score, found: r.found, key: r.key, mask: r.mask, polygons: [], zoomWindow: r.zoom_window,
      maskCanvas: maskCanvas(r.mask, state.image.width, state.image.height, YELLOW, 120) };
    const zoom = r.zoom_window ? ` + zoomed in on ${r.zoom_window[2] - r.zoom_window[0]}×${r.zoom_window[3] - r.zoom_window[1]} px ` +
      `${r.zoom_ms.toFixed(0)}` : "";
    recordTap(entry, add, r.area,
      `on this device ${r.tap_ms.toFixed(0)} ms (decoder ${r.decoder_ms.toFixed(0)} + mask ${r.select_ms.toFixed(0)}${zoom})`,
      ` · photo encoded once in ${state.encoderMs.toFixed(0)} ms`, performance.now() - t0);
    setStatus(r.found ? `${state.selection.length} object(s) selected.`
      : `No object found there (${r.reason || "empty mask"}) — tap on the object itself.`, !r.found);
  } catch (e) {
    setStatus(e.message, true);
  } finally { busy(false); }
}

function recordTap(entry, add, area, model, extra, totalMs) {
  state.selection = add ? [...state.selection, entry] : [entry];
  if (!add) $("taps").innerHTML = "";
  state.tapCount += 1;
  $("latency").textContent = `Tap ${state.tapCount} at (${entry.x}, ${entry.y}): score ${entry.score.toFixed(2)} · ` +
    `${model}${extra} · total ${totalMs.toFixed(0)} ms`;
  const li = document.createElement("li");
  li.textContent = `(${entry.x}, ${entry.y}) score ${entry.score.toFixed(2)}, ${area} px, ${model}`;
  $("taps").appendChild(li);
  state.clickable = null;
  redraw();
}

async function updateClickable() {
  const last = state.selection[state.selection.length - 1];
  if (!$("clickable").checked || !last || state.mode === "device") { redraw(); return; }
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
    if (state.mode === "device") { await editOnDevice(effect); return; }
    const fields = { image_id: state.image.image_id, effect, feather: $("feather").value,
      taps: state.selection.filter((s) => s.found).map((s) => `${s.x},${s.y}`).join(";") };
    if (effect === "blur") fields.strength = $("strength").value;
    if (effect === "replace") fields.color = $("color").value;
    const res = await api("/api/edit", fields);
    const blob = await res.blob();
    const name = (/filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "") || [])[1]
      || `edit-${effect}.png`;
    showResult(blob, name, effect, "");
  } catch (e) {
    setStatus(e.message, true);
  } finally { busy(false); }
}

async function editOnDevice(effect) {
  const keys = state.selection.filter((s) => s.found).map((s) => s.key);
  const options = { feather: Number($("feather").value) };
  if (effect === "blur") options.strength = Number($("strength").value);
  if (effect === "replace") options.color = hexColor($("color").value);
  const r = await state.device.edit(effect, keys, options);
  const c = document.createElement("canvas");
  c.width = r.width; c.height = r.height;
  c.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(r.rgba), r.width, r.height), 0, 0);
  const blob = await new Promise((resolve) => c.toBlob(resolve, "image/png"));
  if (!blob) throw new Error("the browser could not encode the result as PNG");
  const stem = state.image.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]+/g, "_") || "photo";
  showResult(blob, `${stem}-${effect}.png`, effect, ` · on this device in ${r.edit_ms.toFixed(0)} ms`);
}

function hexColor(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function showResult(blob, name, effect, extra) {
  const url = URL.createObjectURL(blob);
  const old = $("download").href;
  if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
  $("result").src = url;
  $("download").href = url;
  $("download").download = name;
  $("download").textContent = `Download ${name}`;
  $("result-info").textContent = `${(blob.size / 1024).toFixed(0)} KB${extra}`;
  $("result-box").hidden = false;
  setStatus(`${effect} done.`);
}

// ---- mode: on this device or on the server ---------------------------------------------------------------
function wantedMode() {
  const q = new URLSearchParams(location.search).get("mode");
  if (q === "server" || q === "device") return q;
  try { return localStorage.getItem("tracenet-mode") || "device"; } catch (_) { return "device"; }
}

async function setMode(mode, remember = true) {
  if (remember) { try { localStorage.setItem("tracenet-mode", mode); } catch (_) { /* private mode */ } }
  busy(true);
  let note = "";
  if (mode === "device" && !state.device) {
    $("engine-info").textContent = "loading the model into this page…";
    try {
      const device = await import("/static/device/device.js");
      state.device = await device.startEngine();
    } catch (e) {
      state.deviceError = e.message;
      mode = "server";
      note = `On-device mode is not available (${e.message}); segmenting on the server instead.`;
    }
  }
  const changed = state.mode !== mode;
  state.mode = mode;
  document.body.dataset.mode = mode;
  for (const b of document.querySelectorAll("[data-mode-choice]")) b.setAttribute("aria-pressed", String(b.dataset.modeChoice === mode));
  $("mode-device").disabled = !!state.deviceError;
  $("clickable").disabled = mode === "device";
  const info = state.device && state.device.info;
  $("engine-info").textContent = mode === "device"
    ? `Model runs in this page (WebAssembly SIMD, ${info.threads} thread${info.threads > 1 ? "s" : ""}` +
      `${info.isolated ? "" : ", not cross-origin isolated"}; loaded in ${info.load_ms.toFixed(0)} ms). ` +
      "Photos stay on this device."
    : `Photos and taps are sent to the server.${state.deviceError ? ` (${state.deviceError})` : ""}`;
  if (changed && state.image) {  // a photo opened in one mode is not known to the other
    state.image = null;
    $("stage").hidden = true;
    $("hint").hidden = false;
    clearSelection();
  }
  busy(false);
  setStatus(note || (mode === "device" ? "On this device: open an image or pick an example, then tap an object."
    : "On the server: open an image or pick an example, then tap an object."), !!note);
  document.body.dataset.ready = "1";
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
for (const b of document.querySelectorAll("[data-mode-choice]")) b.addEventListener("click", () => setMode(b.dataset.modeChoice));
loadExamples();
setMode(wantedMode(), false);
