// The zoom-in second pass of the on-device mode, as tracenet.tap.zoom and TapCore._zoom_answer do it in Python:
// after the first answer, a square crop around its box, enlarged to the network's size with Pillow's BILINEAR
// resize, is encoded and tapped again at the centre of the tap's P3 cell; the crop's answer replaces the first
// inside the crop (empty outside it) when it still covers the tap's cell and at least min_inside of its pixels lie
// in the first answer's mask, else the first answer stands.
// Settings come from model.json's "zoom" (the app adds them when its server zooms): {expand, min_side, min_gain,
// cache, min_inside, grid}. Pure functions on typed arrays: they run in the page's worker and under Node
// (tests/app/test_device_js.py). Windows and boxes are [x0, y0, x1, y1] in photo pixels (window ends exclusive).

import { cellPixels, chooseMask, coversCell, photoMask, upsampleMaskProbs } from "./masks.js";
import { resample, roundHalfEven } from "./pixels.js";

/** tracenet.tap.zoom.zoom_window: the crop to segment again for an answer with ``box`` on a photoW x photoH photo
 * that reached the network at ``scale`` (network px per photo px), or null when it would not enlarge the crop at
 * least ``cfg.min_gain`` times. */
export function zoomWindow(box, photoH, photoW, maxSide, scale, cfg) {
  const [x0, y0, x1, y1] = box, grid = cfg.grid;
  let side = Math.max(cfg.min_side, cfg.expand * Math.max(x1 - x0, y1 - y0));
  side = (Math.ceil(side / grid) + 1) * grid;
  const sideW = Math.min(photoW, side), sideH = Math.min(photoH, side);
  if (maxSide / Math.max(sideW, sideH) / scale < cfg.min_gain) return null;
  let left = roundHalfEven(((x0 + x1) / 2 - sideW / 2) / grid) * grid;
  let top = roundHalfEven(((y0 + y1) / 2 - sideH / 2) / grid) * grid;
  left = Math.min(Math.max(0, left), photoW - sideW);
  top = Math.min(Math.max(0, top), photoH - sideH);
  return [left, top, left + sideW, top + sideH];
}

/** tracenet.tap.zoom.enlarge_crop: the window of an RGB image {data, width, height}, resized (Pillow BILINEAR, no
 * reducing gap) so its longer side is ``maxSide``. */
export function enlargeCrop(image, window, maxSide) {
  const [x0, y0, x1, y1] = window, cw = x1 - x0, ch = y1 - y0, crop = new Uint8Array(cw * ch * 3);
  for (let y = 0; y < ch; y++) {
    crop.set(image.data.subarray(((y0 + y) * image.width + x0) * 3, ((y0 + y) * image.width + x1) * 3), y * cw * 3);
  }
  const f = maxSide / Math.max(cw, ch);
  const w = Math.max(1, roundHalfEven(cw * f)), h = Math.max(1, roundHalfEven(ch * f));
  return resample({ data: crop, width: cw, height: ch }, w, h, [0, 0, cw, ch]);
}

/** Where the enlarged crop (innerW x innerH) is tapped: the centre of the photo's tap cell ``p3Cell`` (row, col),
 * clamped to the crop; [x, y] in the crop's network pixels. */
export function zoomTapPoint(p3Cell, scale, window, innerW, innerH, stride = 8) {
  const [x0, y0, x1, y1] = window, fx = innerW / (x1 - x0), fy = innerH / (y1 - y0);
  const [row, col] = p3Cell;
  const x = Math.min(Math.max(((col + 0.5) * stride / scale - x0) * fx, 0.0), innerW - 1.0);
  const y = Math.min(Math.max(((row + 0.5) * stride / scale - y0) * fy, 0.0), innerH - 1.0);
  return [x, y];
}

/** The zoomed answer from the decoder's outputs on the enlarged crop (``out``, tapped at ``innerCell``, the crop's
 * P3 cell of zoomTapPoint), or null when the first answer (its mask ``firstMask``, Uint8Array [photoH, photoW])
 * stands. Returns {found, k, mask (Uint8Array [photoH, photoW], empty outside the window), score, box (photo
 * pixels), level, reason}. */
export function zoomedChoice(out, { selection, minScore, requireTapInside, innerH, innerW, innerCell, window, photoH,
  photoW, scale, p3Cell, firstMask, minInside }) {
  const inner = chooseMask(out, { selection, minScore, requireTapInside, netH: innerH, netW: innerW, photoH: innerH,
    photoW: innerW, scale: 1.0, p3Cell: innerCell });
  if (!inner.found) return null;
  const [x0, y0, x1, y1] = window, cw = x1 - x0, ch = y1 - y0, fx = innerW / cw, fy = innerH / ch;
  const cells = Math.ceil(innerH / 8) * Math.ceil(innerW / 8);
  const probs = upsampleMaskProbs(out.mask_logits.subarray(inner.k * cells, (inner.k + 1) * cells), innerH, innerW);
  const crop = photoMask(probs, innerH, innerW, ch, cw), mask = new Uint8Array(photoH * photoW);
  for (let y = 0; y < ch; y++) mask.set(crop.subarray(y * cw, (y + 1) * cw), (y0 + y) * photoW + x0);
  if (requireTapInside && !coversCell(mask, photoW, cellPixels(p3Cell[0], p3Cell[1], scale, photoH, photoW))) return null;
  if (shareInside(mask, firstMask) < minInside) return null;  // the neighbour, not a closer look at the object
  const [bx0, by0, bx1, by1] = inner.box;
  return { found: true, k: inner.k, mask, score: inner.score, level: inner.level, reason: "",
    box: [x0 + bx0 / fx, y0 + by0 / fy, x0 + bx1 / fx, y0 + by1 / fy] };
}

/** tracenet.tap.zoom.share_inside: the share of the ``zoomed`` mask's pixels that are set in ``first`` (0 if empty). */
export function shareInside(zoomed, first) {
  let area = 0, both = 0;
  for (let i = 0; i < zoomed.length; i++) if (zoomed[i]) { area++; if (first[i]) both++; }
  return area ? both / area : 0;
}
