// The image viewer of an imaging report (registry/web/viewer_pages.py). Plain JS, no library: everything comes from
// the registry's DICOMweb gateway under the page's area (data-base: /portal/dicomweb or /clinician/dicomweb) by
// fetch() — the study's series (QIDO-RS), each series' first instance (its size, for a thumbnail of the right shape),
// the series' metadata (its instances and frames), the frames rendered as JPEG — and is drawn on <canvas>, so the
// page needs no img-src beyond its own and never holds a URL of the hospital's PACS. Under break-glass every fetch
// carries the break-glass label and reason (registry/services/policy/purpose.py). Errors are the gateway's
// OperationOutcomes, shown in the page's language over the stage — never a broken image.
"use strict";
(function () {
  const root = document.getElementById("viewer");
  if (!root) return;
  const words = JSON.parse(document.getElementById("viewer-words").textContent);
  const study = root.dataset.study;
  const base = root.dataset.base;
  const breakGlass = root.dataset.breakGlass || "";
  const area = base.split("/")[1];
  const $ = (id) => document.getElementById(id);
  const canvas = $("frame"), stage = $("stage"), statusLine = $("viewer-status"), slider = $("slider");
  const count = $("frame-count"), presets = $("presets"), list = $("series");
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  const BTG = 'http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; scheme="http://hl7.org/fhir/tag/security"';
  const state = { series: [], current: null, frames: [], index: 0, preset: "default", window: "", box: null, bitmap: null };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  const first = (item, tag) => { const v = item && item[tag] && item[tag].Value; return v && v.length ? v[0] : undefined; };
  const number = (item, tag, otherwise) => { const v = Number(first(item, tag)); return Number.isFinite(v) && v > 0 ? v : otherwise; };
  const real = (item, tag) => { const v = first(item, tag); return v === undefined || v === "" || !Number.isFinite(Number(v)) ? undefined : Number(v); };

  // ------------------------------------------------------------------------------------------------ the gateway
  class Failure extends Error {
    constructor(status, detail) { super(detail || `HTTP ${status}`); this.status = status; this.detail = detail || ""; }
  }
  class Cancelled extends Error {}

  async function get(path, accept) {
    const headers = { Accept: accept };
    if (breakGlass) { headers["Category"] = BTG; headers["X-Break-Glass-Reason"] = encodeURIComponent(breakGlass); }
    let r;
    try {
      r = await fetch(`${base}/${path}`, { headers, credentials: "same-origin", cache: breakGlass ? "no-store" : "default" });
    } catch (e) { throw new Failure(0, ""); }
    if (!r.ok) {
      let detail = "";
      try { detail = (((await r.json()).issue || [])[0] || {}).diagnostics || ""; } catch (e) { /* not an OperationOutcome */ }
      throw new Failure(r.status, detail);
    }
    return r;
  }
  const dicomJson = async (path) => (await get(path, "application/dicom+json")).json();
  async function picture(path) {
    const r = await get(path, "image/jpeg");
    if (!(r.headers.get("content-type") || "").startsWith("image/")) throw new Failure(502, "");
    try { return await createImageBitmap(await r.blob()); } catch (e) { throw new Failure(502, ""); }
  }

  // at most four image requests at once; the frame asked for goes first, prefetches that are no longer near are dropped
  let active = 0;
  const waiting = [];
  function queued(task, kind) { // kind: "now" (the frame asked for), "near" (a prefetch), "list" (a thumbnail)
    return new Promise((resolve, reject) => {
      const job = { task, resolve, reject, kind };
      if (kind === "now") waiting.unshift(job); else waiting.push(job);
      pump();
    });
  }
  function pump() {
    while (active < 4 && waiting.length) {
      const job = waiting.shift();
      active += 1;
      job.task().then(job.resolve, job.reject).finally(() => { active -= 1; pump(); });
    }
  }
  function dropPrefetches() {
    for (let i = waiting.length - 1; i >= 0; i--) if (waiting[i].kind === "near") waiting.splice(i, 1)[0].reject(new Cancelled());
  }
  const frames = new Map(); // path → Promise<ImageBitmap>, the 64 used last
  function frame(path, urgent) {
    let p = frames.get(path);
    if (p) { frames.delete(path); frames.set(path, p); return p; }
    p = queued(() => picture(path), urgent ? "now" : "near");
    frames.set(path, p);
    p.catch(() => { if (frames.get(path) === p) frames.delete(path); });
    while (frames.size > 64) {
      const [oldest, gone] = frames.entries().next().value;
      frames.delete(oldest);
      gone.then((b) => { if (b !== state.bitmap) b.close(); }, () => {});
    }
    return p;
  }

  // ------------------------------------------------------------------------------------------------ status
  function say(text) {
    statusLine.replaceChildren(text);
    statusLine.classList.remove("failed");
    statusLine.hidden = false;
  }
  function quiet() { statusLine.hidden = true; statusLine.classList.remove("failed"); delete root.dataset.error; }
  function failed(f) {
    if (f instanceof Cancelled) return;
    const status = f instanceof Failure ? f.status : 0;
    const key = { 401: "viewer_err_401", 403: "viewer_err_403", 404: "viewer_err_404", 502: "viewer_err_502",
                  503: "viewer_err_502", 504: "viewer_err_504" }[status] || "viewer_err_other";
    const parts = [el("strong", { text: words[key] })];
    if (status === 401) parts.push(" ", el("a", { href: `/${area}/login?next=${encodeURIComponent(location.pathname)}`, text: "→" }));
    if (f.detail) parts.push(el("small", { class: "detail", text: f.detail }));
    statusLine.replaceChildren(...parts);
    statusLine.classList.add("failed");
    statusLine.hidden = false;
    root.dataset.error = String(status);
  }

  // ------------------------------------------------------------------------------------------------ drawing
  function fit(columns, rows, width, height) {
    const scale = Math.min(width / columns, height / rows, 1); // never larger than the image itself
    return [Math.max(1, Math.round(columns * scale)), Math.max(1, Math.round(rows * scale))];
  }
  function draw(target, bitmap, aspect) {
    const w = target.width, h = target.height, ctx = target.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, w, h);
    let dw = w, dh = w / aspect;
    if (dh > h) { dh = h; dw = h * aspect; }
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, (w - dw) / 2, (h - dh) / 2, dw, dh);
  }
  function paint() {
    const b = state.bitmap, f = state.frames[state.index];
    if (!b || !f) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(stage.clientWidth * dpr)), h = Math.max(1, Math.round(stage.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    draw(canvas, b, f.columns && f.rows ? f.columns / f.rows : b.width / b.height); // the image's own shape
  }
  new ResizeObserver(paint).observe(stage);

  // ------------------------------------------------------------------------------------------------ frames
  function windowOf(f) {
    // a CT preset; else the image's own window (0028,1050 / 0028,1051), which Orthanc does not apply by itself
    if (state.window && state.current.modality === "CT") return state.window;
    return f.center !== undefined && f.width >= 1 ? `${f.center},${f.width}` : "";
  }
  function framePath(f) {
    // Orthanc stretches a rendered image to the viewport it is given: ask for the image's own shape, at most the
    // stage's size in device pixels
    const [w, h] = fit(f.columns || state.box.w, f.rows || state.box.h, state.box.w, state.box.h);
    const windowed = windowOf(f) ? `&window=${windowOf(f)},linear` : "";
    return `studies/${study}/series/${state.current.uid}/instances/${f.sop}/frames/${f.frame}/rendered?viewport=${w},${h}${windowed}`;
  }

  async function show(i) {
    if (!state.frames.length) return;
    i = Math.max(0, Math.min(state.frames.length - 1, i));
    state.index = i;
    slider.value = String(i + 1);
    const label = fill(words.viewer_frame_of, { i: i + 1, n: state.frames.length });
    count.textContent = `${i + 1} / ${state.frames.length}`;
    canvas.setAttribute("aria-label", `${state.current.label} · ${label}`);
    $("prev").disabled = i === 0;
    $("next").disabled = i === state.frames.length - 1;
    const path = framePath(state.frames[i]);
    dropPrefetches();
    let bitmap;
    try {
      bitmap = await frame(path, true);
    } catch (f) {
      if (state.frames[state.index] && framePath(state.frames[state.index]) === path) failed(f);
      return;
    }
    if (!state.frames[state.index] || framePath(state.frames[state.index]) !== path) return; // moved on meanwhile
    state.bitmap = bitmap;
    paint();
    quiet();
    root.dataset.shown = `${state.current.uid}:${i + 1}:${state.current.modality === "CT" ? state.preset : "default"}`;
    for (const d of [1, 2, 3, 4, -1, -2]) {
      const j = i + d;
      if (j >= 0 && j < state.frames.length) frame(framePath(state.frames[j]), false).catch(() => {});
    }
  }

  async function select(s) {
    state.current = s;
    state.frames = [];
    state.bitmap = null;
    delete root.dataset.shown;
    for (const b of list.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.series === s.uid));
    presets.hidden = s.modality !== "CT";
    slider.disabled = $("prev").disabled = $("next").disabled = true;
    say(words.viewer_loading);
    let meta;
    try {
      meta = await dicomJson(`studies/${study}/series/${s.uid}/metadata`);
    } catch (f) {
      if (state.current === s) failed(f);
      return;
    }
    if (state.current !== s) return;
    const instances = meta
      .map((m) => ({ sop: first(m, "00080018"), number: number(m, "00200013", 0), frames: number(m, "00280008", 1),
                     rows: number(m, "00280010", 0), columns: number(m, "00280011", 0),
                     center: real(m, "00281050"), width: real(m, "00281051") }))
      .filter((m) => m.sop)
      .sort((a, b) => a.number - b.number || (a.sop < b.sop ? -1 : 1));
    state.frames = instances.flatMap((m) => Array.from({ length: m.frames }, (_, k) => ({ ...m, frame: k + 1 })));
    if (!state.frames.length) { failed(new Failure(404, words.viewer_no_series)); return; }
    const dpr = window.devicePixelRatio || 1;
    const side = (px) => Math.max(64, Math.min(2048, Math.round(px * dpr)));
    state.box = { w: side(stage.clientWidth), h: side(stage.clientHeight) };
    slider.max = String(state.frames.length);
    slider.disabled = state.frames.length < 2;
    await show(0);
  }

  async function thumbnail(s, target) {
    try {
      const one = (await dicomJson(`studies/${study}/series/${s.uid}/instances?limit=1`))[0];
      const aspect = number(one, "00280011", 1) / number(one, "00280010", 1);
      const [w, h] = fit(number(one, "00280011", 96), number(one, "00280010", 96), 128, 128);
      const bitmap = await queued(() => picture(`studies/${study}/series/${s.uid}/thumbnail?viewport=${w},${h}`), "list");
      draw(target, bitmap, aspect);
      bitmap.close();
    } catch (f) {
      target.replaceWith(el("span", { class: "thumb none", text: words.viewer_thumb_failed }));
    }
  }

  async function start() {
    let found;
    try {
      found = await dicomJson(`studies/${study}/series`);
    } catch (f) { failed(f); return; }
    state.series = found
      .map((s) => ({ uid: first(s, "0020000E"), number: number(s, "00200011", 0), modality: first(s, "00080060") || "",
                     description: first(s, "0008103E") || "", count: number(s, "00201209", 0) }))
      .filter((s) => s.uid)
      .sort((a, b) => a.number - b.number);
    if (!state.series.length) { failed(new Failure(404, words.viewer_no_series)); return; }
    for (const s of state.series) {
      s.label = `${fill(words.viewer_series_n, { n: s.number || state.series.indexOf(s) + 1 })} · ${s.modality}`;
      const thumb = el("canvas", { class: "thumb", width: "96", height: "96", "aria-hidden": "true" });
      const item = el("li", {}, el("button", { type: "button", class: "series-item", "data-series": s.uid, "data-testid": "series",
        "aria-pressed": "false", onclick: () => select(s) }, thumb,
        el("span", { class: "series-text" }, el("strong", { text: s.label }),
          el("span", { class: "muted", text: s.count ? fill(words.viewer_images_n, { n: s.count }) : "" }),
          el("span", { class: "muted small", text: s.description }))));
      list.append(item);
      thumbnail(s, thumb);
    }
    await select(state.series[0]);
  }

  // ------------------------------------------------------------------------------------------------ input
  slider.addEventListener("input", () => show(Number(slider.value) - 1));
  $("prev").addEventListener("click", () => show(state.index - 1));
  $("next").addEventListener("click", () => show(state.index + 1));
  for (const b of presets.querySelectorAll("button")) {
    b.addEventListener("click", () => {
      state.preset = b.dataset.preset;
      state.window = b.dataset.window || "";
      for (const o of presets.querySelectorAll("button")) o.setAttribute("aria-pressed", String(o === b));
      show(state.index);
    });
  }
  let wheel = 0;
  stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    wheel += e.deltaMode === 1 ? e.deltaY * 40 : e.deltaMode === 2 ? e.deltaY * 800 : e.deltaY;
    if (Math.abs(wheel) >= 50) { show(state.index + Math.sign(wheel)); wheel = 0; } // one image per notch
  }, { passive: false });
  const MOVES = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 };
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || !state.frames.length) return;
    if (e.target !== document.body && !root.contains(e.target)) return;
    if (e.target === slider || e.target.closest("textarea, select, input")) return; // the slider moves by itself
    if (e.key in MOVES) { e.preventDefault(); show(state.index + MOVES[e.key]); }
    else if (e.key === "Home") { e.preventDefault(); show(0); }
    else if (e.key === "End") { e.preventDefault(); show(state.frames.length - 1); }
    else if (!presets.hidden && /^[1-4]$/.test(e.key)) presets.querySelectorAll("button")[Number(e.key) - 1].click();
  });
  let touch = null; // a swipe: finger up or left is the next image, about one image per 1/20 of the stage
  stage.addEventListener("touchstart", (e) => {
    touch = e.touches.length === 1 ? { x: e.touches[0].clientX, y: e.touches[0].clientY } : null;
  }, { passive: true });
  stage.addEventListener("touchmove", (e) => {
    if (!touch || e.touches.length !== 1) return;
    e.preventDefault();
    const t = e.touches[0], dx = t.clientX - touch.x, dy = t.clientY - touch.y;
    const along = Math.abs(dy) >= Math.abs(dx) ? -dy : -dx;
    const step = Math.max(8, Math.min(stage.clientHeight, stage.clientWidth) / 20);
    const n = Math.trunc(along / step);
    if (n) { touch = { x: t.clientX, y: t.clientY }; show(state.index + n); }
  }, { passive: false });
  stage.addEventListener("touchend", () => { touch = null; });

  start();
})();
