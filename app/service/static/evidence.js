// Evidence view: clicking a tag (a button, so Tab + Enter/Space work too) asks the API for that
// tag's evidence map (POST /tag or /tag/url with explain_tags=TAG) and draws it over the
// track's log-mel spectrogram the API returns, on the same time axis as the tags-over-time map
// above it, with the same playhead. app.js announces each result with a "tagger:result" event.
"use strict";

(() => {
  const BAND_ROWS = 150; // CSS pixels of the spectrogram
  const AXIS_HEIGHT = 20;
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif";

  const $ = (id) => document.getElementById(id);
  const box = $("evidence");
  const tagName = $("evidence-tag");
  const statusLine = $("evidence-status");
  const canvas = $("evidence-map");
  const description = $("evidence-description");
  const player = $("player");
  const heatmap = $("heatmap");

  let current = null; // {response, source} from app.js
  let shown = null; // {tag, explanations, duration}
  let drawn = null; // {base, plotX, plotW, plotH, ratio, duration}
  let pending = null;
  let frame = 0;

  function cssColour(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function hz(value) {
    return value >= 1000 ? `${(value / 1000).toFixed(1)} kHz` : `${Math.round(value)} Hz`;
  }

  function reset() {
    if (pending) pending.abort();
    pending = null;
    shown = null;
    drawn = null;
    box.hidden = true;
    box.dataset.state = "idle";
    statusLine.textContent = "";
  }

  function addButtons() {
    document.querySelectorAll("#bars .bar").forEach((bar) => {
      const label = bar.querySelector(".bar-label");
      if (!label || label.querySelector("button")) return;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "evidence-button";
      button.textContent = bar.dataset.tag;
      button.dataset.tag = bar.dataset.tag;
      button.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-controls", "evidence");
      button.title = `Show where the model found ${bar.dataset.tag}`;
      button.addEventListener("click", () => explain(bar.dataset.tag, button));
      label.replaceChildren(button);
    });
  }

  async function request(tag, signal) {
    const { source } = current;
    const top = String(current.response.tags.length);
    if (source.file) {
      const form = new FormData();
      form.append("file", source.file, source.file.name);
      const query = new URLSearchParams({ top_k: top, explain_tags: tag });
      return fetch(`/tag?${query}`, { method: "POST", body: form, signal });
    }
    return fetch("/tag/url", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ url: source.url, top_k: Number(top), explain_tags: [tag] }),
      signal,
    });
  }

  async function explain(tag, button) {
    if (!current || !current.source) return;
    if (pending) pending.abort();
    const controller = new AbortController();
    pending = controller;
    document.querySelectorAll(".evidence-button").forEach((b) =>
      b.setAttribute("aria-pressed", String(b === button)),
    );
    box.hidden = false;
    box.dataset.state = "busy";
    tagName.textContent = tag;
    statusLine.textContent = `Finding the evidence for ${tag}…`;
    try {
      const response = await request(tag, controller.signal);
      const body = await response.json().catch(() => null);
      if (controller !== pending) return;
      if (!response.ok || !body || !body.explanations) {
        const detail = body && body.detail ? ` ${body.detail}` : "";
        throw new Error(`The tagger could not explain ${tag} (HTTP ${response.status}).${detail}`);
      }
      shown = { tag, explanations: body.explanations, duration: body.duration_seconds };
      draw();
      box.dataset.state = "done";
      statusLine.textContent = `Evidence for ${tag} (${body.explanations.method} map).`;
    } catch (error) {
      if (error.name === "AbortError" || controller !== pending) return;
      box.dataset.state = "error";
      statusLine.textContent = error.message;
    } finally {
      if (controller === pending) pending = null;
    }
  }

  function layout() {
    // The heat map's plot area, so both maps share one time axis.
    const d = heatmap.dataset;
    const width = Math.max(200, Math.floor(canvas.parentElement.clientWidth));
    const plotX = Number(d.plotX) || 60;
    const plotW = Number(d.plotWidth) || width - plotX;
    return { width, plotX, plotW };
  }

  function draw() {
    if (!shown) return;
    const { explanations, duration: seconds } = shown;
    const { width, plotX, plotW } = layout();
    const ratio = window.devicePixelRatio || 1;
    const plotH = BAND_ROWS;
    const height = plotH + AXIS_HEIGHT;
    const duration = Math.max(seconds, 0.001);

    const base = document.createElement("canvas");
    base.width = Math.round(width * ratio);
    base.height = Math.round(height * ratio);
    const ctx = base.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.fillStyle = cssColour("--card", "#ffffff");
    ctx.fillRect(0, 0, width, height);

    // The spectrogram: bytes, row-major, lowest band first; drawn bottom-up in grey.
    const spec = explanations.spectrogram;
    const bytes = Uint8Array.from(atob(spec.data), (c) => c.charCodeAt(0));
    const image = new ImageData(spec.columns, spec.rows);
    for (let r = 0; r < spec.rows; r += 1) {
      for (let c = 0; c < spec.columns; c += 1) {
        const v = bytes[r * spec.columns + c];
        const i = 4 * ((spec.rows - 1 - r) * spec.columns + c);
        image.data[i] = image.data[i + 1] = image.data[i + 2] = v;
        image.data[i + 3] = 255;
      }
    }
    const specCanvas = document.createElement("canvas");
    specCanvas.width = spec.columns;
    specCanvas.height = spec.rows;
    specCanvas.getContext("2d").putImageData(image, 0, 0);
    const specW = (Math.min(spec.columns * spec.step_seconds, duration) / duration) * plotW;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(specCanvas, plotX, 0, specW, plotH);

    // The evidence: orange cells, opacity = evidence (bands are equal steps on the mel axis).
    const map = explanations.maps[0];
    const bands = map.values.length;
    const cellH = plotH / bands;
    map.values.forEach((row, b) => {
      row.forEach((value, c) => {
        const t0 = c * explanations.step_seconds;
        if (t0 >= duration || value <= 0) return;
        const t1 = Math.min(duration, t0 + explanations.step_seconds);
        const x0 = plotX + (t0 / duration) * plotW;
        const x1 = plotX + (t1 / duration) * plotW;
        ctx.fillStyle = `rgba(255, 120, 0, ${(0.85 * value).toFixed(3)})`;
        ctx.fillRect(x0, plotH - (b + 1) * cellH, Math.max(1, x1 - x0), cellH);
      });
    });

    // Axes: Hz at a few band edges on the left, seconds below (as the heat map).
    const muted = cssColour("--muted", "#57606a");
    ctx.font = FONT;
    ctx.fillStyle = muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const edges = explanations.band_edges_hz;
    const every = Math.max(1, Math.round((edges.length - 1) / 4));
    for (let i = 0; i < edges.length; i += every) {
      const y = Math.min(plotH - 6, Math.max(6, plotH - (i / (edges.length - 1)) * plotH));
      ctx.fillText(hz(edges[i]), plotX - 6, y);
    }
    ctx.textBaseline = "top";
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
    const step = steps.find((s) => duration / s <= Math.max(1, Math.floor(plotW / 56))) || 900;
    for (let t = 0; t <= duration + 1e-6; t += step) {
      const x = plotX + (t / duration) * plotW;
      ctx.textAlign = t === 0 ? "left" : x > width - 20 ? "right" : "center";
      ctx.fillText(clock(t), x, plotH + 6);
    }

    canvas.width = base.width;
    canvas.height = base.height;
    canvas.style.height = `${height}px`;
    drawn = { base, plotX, plotW, plotH, ratio, duration };
    Object.assign(canvas.dataset, {
      tag: shown.tag,
      method: explanations.method,
      bands: String(bands),
      columns: String(explanations.columns),
      plotX: String(plotX),
      plotWidth: String(plotW),
      plotHeight: String(plotH),
    });
    describe(map, explanations, duration);
    drawPlayhead();
  }

  function describe(map, explanations, duration) {
    let best = { value: -1, band: 0, column: 0 };
    map.values.forEach((row, b) =>
      row.forEach((value, c) => {
        if (value > best.value) best = { value, band: b, column: c };
      }),
    );
    const start = best.column * explanations.step_seconds;
    const end = Math.min(duration, start + explanations.step_seconds);
    const edges = explanations.band_edges_hz;
    description.textContent =
      `Evidence for ${shown.tag} over ${clock(duration)}, ${map.values.length} frequency bands ` +
      `from ${hz(edges[0])} to ${hz(edges[edges.length - 1])}. Strongest from ${clock(start)} ` +
      `to ${clock(end)}, between ${hz(edges[best.band])} and ${hz(edges[best.band + 1])}.`;
  }

  function drawPlayhead() {
    if (!drawn) return;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(drawn.base, 0, 0);
    if (!player.src) return;
    const t = Math.min(player.currentTime || 0, drawn.duration);
    const x = (drawn.plotX + (t / drawn.duration) * drawn.plotW) * drawn.ratio;
    ctx.fillStyle = "rgba(0,0,0,0.6)";
    ctx.fillRect(Math.round(x - 2 * drawn.ratio), 0, Math.round(4 * drawn.ratio), drawn.plotH * drawn.ratio);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(Math.round(x - drawn.ratio), 0, Math.round(2 * drawn.ratio), drawn.plotH * drawn.ratio);
  }

  function animate() {
    cancelAnimationFrame(frame);
    drawPlayhead();
    if (!player.paused && !player.ended) frame = requestAnimationFrame(animate);
  }

  document.addEventListener("tagger:result", (event) => {
    reset();
    current = event.detail;
    addButtons();
  });
  document.addEventListener("tagger:heatmap", () => draw());
  player.addEventListener("play", animate);
  ["pause", "seeked", "timeupdate", "ended", "loadedmetadata"].forEach((type) =>
    player.addEventListener(type, drawPlayhead),
  );
  canvas.addEventListener("click", (event) => {
    if (!drawn || !player.src) return;
    const rect = canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * (drawn.base.width / drawn.ratio);
    if (x < drawn.plotX) return;
    player.currentTime = ((x - drawn.plotX) / drawn.plotW) * drawn.duration;
    drawPlayhead();
  });
})();
