// Post-processing of the on-device mode, as model.json states it and tracenet.tap.core.TapCore does it in Python:
// tap alignment, the choice among the decoder's candidates (ranker or the paper's NMS order, min_score, "the mask
// must reach the tap's P3 cell"), and the mask upsampling (sigmoid, bilinear x4 then x2, crop to the network size,
// bilinear to the photo, > 0.5). Arithmetic is float32 (Math.fround) where numpy computes in float32.
// Pure functions: they run in the page's worker and under Node (tests/app/test_device_js.py).
// Taps are (x, y) in photo pixels; grid cells are (row, col).

const F32 = Math.fround;

/** Grid cells containing the tap on every level: [[row, col], ...] (tracenet.tap.geometry.align_tap). */
export function alignTap(xNet, yNet, netH, netW, strides) {
  return strides.map((s) => {
    const rows = Math.ceil(netH / s), cols = Math.ceil(netW / s);
    const row = Math.min(Math.max(Math.floor(Math.floor(yNet) / s), 0), rows - 1);
    const col = Math.min(Math.max(Math.floor(Math.floor(xNet) / s), 0), cols - 1);
    return [row, col];
  });
}

function axisWeights(nIn, nOut, scale) {
  // align_corners=False source positions: src = max(scale * (dst + 0.5) - 0.5, 0), upper neighbour clamped.
  const i0 = new Int32Array(nOut), i1 = new Int32Array(nOut), w0 = new Float32Array(nOut), w1 = new Float32Array(nOut);
  for (let d = 0; d < nOut; d++) {
    const src = Math.max(F32(F32(scale * F32(d + 0.5)) - 0.5), 0);
    const lo = Math.trunc(src);
    i0[d] = lo; i1[d] = lo < nIn - 1 ? lo + 1 : lo;
    w1[d] = Math.min(Math.max(F32(src - lo), 0), 1); w0[d] = F32(1 - w1[d]);
  }
  return { i0, i1, w0, w1 };
}

/** Bilinear resize (align_corners=False) of a float32 [h, w] map to [oh, ow] (tracenet.tap.masks.resize_bilinear);
 * with scaleFactor the source step is 1 / scaleFactor. Only rows < keepH and cols < keepW are computed. */
export function resizeBilinear(x, h, w, oh, ow, scaleFactor = null, keepH = oh, keepW = ow) {
  const sh = F32(scaleFactor ? 1 / scaleFactor : h / oh), sw = F32(scaleFactor ? 1 / scaleFactor : w / ow);
  const r = axisWeights(h, oh, sh), c = axisWeights(w, ow, sw), out = new Float32Array(keepH * keepW);
  for (let i = 0; i < keepH; i++) {
    const top = r.i0[i] * w, bot = r.i1[i] * w, a0 = r.w0[i], a1 = r.w1[i];
    for (let j = 0; j < keepW; j++) {
      const c0 = c.i0[j], c1 = c.i1[j], b0 = c.w0[j], b1 = c.w1[j];
      const t = F32(F32(x[top + c0] * b0) + F32(x[top + c1] * b1));
      const b = F32(F32(x[bot + c0] * b0) + F32(x[bot + c1] * b1));
      out[i * keepW + j] = F32(t * a0) + F32(b * a1);
    }
  }
  return out;
}

/** Stride-8 logits [ceil(H/8), ceil(W/8)] -> probabilities [H, W] at network size (upsample_mask_probs). */
export function upsampleMaskProbs(logits, netH, netW) {
  const rows = Math.ceil(netH / 8), cols = Math.ceil(netW / 8);
  if (logits.length !== rows * cols) throw new Error(`mask logits of ${logits.length} values do not fit a ${netW}x${netH} input`);
  const p = new Float32Array(logits.length);
  for (let i = 0; i < p.length; i++) p[i] = F32(1 / F32(1 + F32(Math.exp(-logits[i]))));
  const x4 = resizeBilinear(p, rows, cols, rows * 4, cols * 4, 4);
  return resizeBilinear(x4, rows * 4, cols * 4, rows * 8, cols * 8, 2, netH, netW);
}

/** Network-size probabilities -> Uint8Array [H, W] of 0/1 at the photo's size (TapCore._image_mask). */
export function photoMask(probs, netH, netW, photoH, photoW) {
  const full = netH === photoH && netW === photoW ? probs : resizeBilinear(probs, netH, netW, photoH, photoW);
  const mask = new Uint8Array(photoH * photoW);
  for (let i = 0; i < mask.length; i++) mask[i] = full[i] > 0.5 ? 1 : 0;
  return mask;
}

/** Photo pixel rectangle [y0, y1) x [x0, x1) of the P3 cell (row, col) (TapCore._cell_pixels). */
export function cellPixels(row, col, scale, photoH, photoW, stride = 8) {
  const y0 = Math.floor((row * stride) / scale), y1 = Math.ceil(((row + 1) * stride) / scale);
  const x0 = Math.floor((col * stride) / scale), x1 = Math.ceil(((col + 1) * stride) / scale);
  return [Math.max(0, y0), Math.max(1, Math.min(photoH, y1)), Math.max(0, x0), Math.max(1, Math.min(photoW, x1))];
}

/** Whether ``mask`` (Uint8Array [H, photoW]) has a pixel in the rectangle ``[y0, y1, x0, x1]`` of cellPixels. */
export function coversCell(mask, photoW, [y0, y1, x0, x1]) {
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (mask[y * photoW + x]) return true;
  return false;
}

/** The candidates in the order the contract prescribes: "ranker" or "paper"; those under minScore left out. */
export function candidateOrder(out, selection, minScore) {
  const n = out.scores.length;
  let order;
  if (selection === "ranker") {
    order = [...Array(n).keys()].filter((k) => Number.isFinite(out.ranker_scores[k]))
      .sort((a, b) => (out.ranker_scores[b] - out.ranker_scores[a]) || (a - b));
  } else {
    // nms_keep[i] says whether nms_order[i] survived NMS (tracenet/deploy/engine.py zips the two)
    order = [...out.nms_order].map(Number).filter((_, i) => out.nms_keep[i]);
  }
  return order.filter((k) => out.scores[k] >= minScore);
}

/** TapCore._choose on the decoder's outputs. Returns {found, k, mask, score, box, level, reason}; ``mask`` is
 * Uint8Array [photoH, photoW]. ``out`` holds the decoder outputs by name (typed arrays). */
export function chooseMask(out, { selection, minScore, requireTapInside, netH, netW, photoH, photoW, scale, p3Cell }) {
  const order = candidateOrder(out, selection, minScore), cellsPerMask = Math.ceil(netH / 8) * Math.ceil(netW / 8);
  const empty = () => new Uint8Array(photoH * photoW);
  if (!order.length) {
    const best = Math.max(...out.scores);
    return { found: false, mask: empty(), score: best, box: [0, 0, 0, 0],
      reason: `nothing here: best score ${best.toFixed(3)} < threshold ${minScore}` };
  }
  const [y0, y1, x0, x1] = cellPixels(p3Cell[0], p3Cell[1], scale, photoH, photoW);
  for (const k of order) {
    const logits = out.mask_logits.subarray(k * cellsPerMask, (k + 1) * cellsPerMask);
    const mask = photoMask(upsampleMaskProbs(logits, netH, netW), netH, netW, photoH, photoW);
    if (!requireTapInside || coversCell(mask, photoW, [y0, y1, x0, x1])) return { found: true, k, mask, score: out.scores[k], box: photoBox(out.boxes, k, scale, photoH, photoW),
      level: Number(out.levels[k]), reason: "" };
  }
  return { found: false, mask: empty(), score: out.scores[order[0]], box: photoBox(out.boxes, order[0], scale, photoH, photoW),
    reason: "nothing here: no candidate's mask covers the tap" };
}

function photoBox(boxes, k, scale, photoH, photoW) {
  const b = [0, 1, 2, 3].map((i) => boxes[4 * k + i] / scale);
  return [Math.max(0, b[0]), Math.max(0, b[1]), Math.min(photoW, b[2]), Math.min(photoH, b[3])];
}
