// The tagger's web page: sends a file or a URL to the public API (POST /tag, POST /tag/url with
// segments=true) and draws the answer: bars per category and a tag-over-time heat map.
"use strict";

(() => {
  // The categories in model/tags.py's order (GET /tags groups by them too).
  const CATEGORY_ORDER = ["genre", "era", "mood", "instrument", "vocal", "tempo/dynamics", "other"];
  const CATEGORY_NAMES = {
    genre: "Genre",
    era: "Era",
    mood: "Mood",
    instrument: "Instrument",
    vocal: "Vocals",
    "tempo/dynamics": "Tempo and dynamics",
    other: "Other",
  };
  const TAXONOMY_NAMES = {
    mtt: "MagnaTagATune (mtt)",
    msd: "Million Song Dataset, Last.fm (msd)",
  };
  // Viridis: ordered by lightness and readable with colour-vision deficiencies.
  const RAMP = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [253, 231, 37],
  ];
  const DEFAULT_TOP_K = 12;
  const ROW_HEIGHT = 18;
  const GROUP_GAP = 5;
  const AXIS_HEIGHT = 20;
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif";

  const $ = (id) => document.getElementById(id);
  const main = $("main");
  const modelLine = $("model");
  const fileInput = $("file-input");
  const dropzone = $("dropzone");
  const urlForm = $("url-form");
  const urlInput = $("url-input");
  const topKInput = $("top-k");
  const taxonomyField = $("taxonomy-field");
  const taxonomySelect = $("taxonomy");
  const vocabularySummary = $("vocabulary-summary");
  const vocabularyGroups = $("vocabulary-groups");
  const statusLine = $("status");
  const errorBox = $("error");
  const errorMessage = $("error-message");
  const errorDetail = $("error-detail");
  const results = $("results");
  const trackName = $("track-name");
  const summary = $("summary");
  const player = $("player");
  const bars = $("bars");
  const canvas = $("heatmap");
  const heatmapDescription = $("heatmap-description");
  const similarSection = $("similar");
  const similarStatus = $("similar-status");
  const similarList = $("similar-list");

  let pending = null; // AbortController of the request in flight
  let objectUrl = null; // of the picked file, revoked when the next one is picked
  let shown = null; // {response, rows} of the result on screen
  let heat = null; // {base, plotX, plotW, plotH, width, height, duration} of the drawn map
  let frame = 0;
  let repeat = null; // sends the last file or URL again, when the number of tags changes
  let lastSource = null; // {file} or {url} of the result on screen, for evidence.js
  let catalog = false; // the service has a catalogue this model can search (GET /catalog)
  let vocabulary = null; // GET /tags: the tags in model order and grouped by taxonomy, category

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail || `HTTP ${status}`);
      this.status = status;
      this.detail = detail;
    }
  }

  // ---- talking to the API ----

  async function callApi(path, init) {
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "");
    }
    const type = response.headers.get("content-type") || "";
    let body = null;
    if (type.includes("json")) {
      try {
        body = await response.json();
      } catch (error) {
        body = null;
      }
    }
    if (!response.ok) {
      // Problem details (RFC 9457): `detail` says what to change.
      throw new ApiError(response.status, body && body.detail ? String(body.detail) : "");
    }
    return body;
  }

  function explain(error, source) {
    switch (error.status) {
      case 0:
        return "The tagger could not be reached. Check the connection and that the service is running, then try again.";
      case 400:
        return source === "url" ? "This URL cannot be used." : "The tagger refused the request.";
      case 413:
        return "The audio is too large or too long for this tagger.";
      case 415:
        return "This file is not audio that the tagger can read.";
      case 422:
        return "The audio could not be decoded: the file may be damaged, cut short or silent.";
      case 500:
        return "The tagger failed while analysing this audio. Try again; if it keeps failing, tell the operator.";
      case 502:
        return "The tagger could not download the audio from this URL.";
      case 503:
        return "The tagger is busy or still starting. Try again in a moment.";
      case 504:
        return "The tagger took too long. Try again later or with a shorter file.";
      default:
        return `The tagger answered with an error (HTTP ${error.status}).`;
    }
  }

  function sentence(text) {
    const trimmed = text.trim();
    if (!trimmed) return "";
    const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(capital) ? capital : `${capital}.`;
  }

  async function loadModel() {
    try {
      const body = await callApi("/tags");
      vocabulary = body;
      const named = body.taxonomies.filter((group) => group.taxonomy);
      const count = named.length === 1 ? "1 vocabulary" : `${named.length} vocabularies`;
      const names = named.map((group) => group.taxonomy).join(", ");
      const which = named.length ? ` in ${count} (${names})` : "";
      modelLine.textContent = `Model ${body.model_id} · ${body.tags.length} tags${which}`;
      named.forEach((group) => {
        const option = document.createElement("option");
        option.value = group.taxonomy;
        option.textContent = TAXONOMY_NAMES[group.taxonomy] || group.taxonomy;
        taxonomySelect.append(option);
      });
      taxonomyField.hidden = named.length === 0;
      showVocabulary();
    } catch (error) {
      if (error.status === 503) {
        modelLine.textContent = "The model is still loading…";
        setTimeout(loadModel, 2000);
      } else {
        modelLine.textContent = explain(error, "page");
      }
    }
  }

  // ---- the vocabulary: taxonomies and categories ----

  function taxonomy() {
    return taxonomySelect.value || null;
  }

  // The groups of GET /tags the page shows now: the chosen taxonomy's, or all.
  function shownGroups() {
    if (!vocabulary) return [];
    const chosen = taxonomy();
    return vocabulary.taxonomies.filter((group) => !chosen || group.taxonomy === chosen);
  }

  function showVocabulary() {
    const groups = shownGroups();
    const count = groups.reduce(
      (n, group) => n + group.categories.reduce((m, c) => m + c.tags.length, 0),
      0,
    );
    topKInput.max = String(count || 50);
    vocabularySummary.textContent = `The model's tags (${count}), by category`;
    vocabularyGroups.replaceChildren();
    groups.forEach((group) => {
      const section = document.createElement("section");
      section.className = "vocabulary-taxonomy";
      if (group.taxonomy) section.dataset.taxonomy = group.taxonomy;
      if (group.taxonomy) {
        const heading = document.createElement("h4");
        heading.textContent = TAXONOMY_NAMES[group.taxonomy] || group.taxonomy;
        section.append(heading);
      }
      group.categories.forEach((category) => {
        const title = document.createElement("h5");
        title.textContent = CATEGORY_NAMES[category.category] || category.category;
        const list = document.createElement("ul");
        list.className = "vocabulary-tags";
        list.dataset.category = category.category;
        category.tags.forEach((tag) => {
          const item = document.createElement("li");
          item.textContent = tag.id || tag.name;
          item.title = `synonym group: ${tag.synonym_group}; threshold ${tag.threshold.toFixed(2)}`;
          list.append(item);
        });
        section.append(title, list);
      });
      vocabularyGroups.append(section);
    });
  }

  // ---- state, status and errors ----

  function setState(state, message) {
    main.dataset.state = state;
    statusLine.textContent = message;
  }

  function showError(message, detail) {
    errorMessage.textContent = message;
    errorDetail.textContent = detail ? `Details: ${sentence(detail)}` : "";
    errorDetail.hidden = !detail;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorMessage.textContent = "";
    errorDetail.textContent = "";
    urlInput.removeAttribute("aria-invalid");
    urlInput.removeAttribute("aria-describedby");
  }

  function topK() {
    const max = Number(topKInput.max) || 50;
    const value = Math.round(Number(topKInput.value));
    const k = Number.isFinite(value) && value >= 1 ? Math.min(value, max) : DEFAULT_TOP_K;
    topKInput.value = String(k);
    return k;
  }

  async function run(name, source, send, audioSource) {
    if (pending) pending.abort();
    const controller = new AbortController();
    pending = controller;
    clearError();
    player.pause();
    results.hidden = true;
    similarSection.hidden = true;
    shown = null;
    setState("busy", `Tagging ${name}…`);
    try {
      const response = await send(controller.signal);
      if (controller !== pending) return;
      render(response, name, audioSource);
      findSimilar(response, controller);
      const seconds = (response.timings.total_ms / 1000).toFixed(1);
      setState(
        "done",
        `Tagged ${name}: ${response.tags.length} tags over ${plural(response.windows, "window")} in ${seconds} s.`,
      );
    } catch (error) {
      if (error.name === "AbortError" || controller !== pending) return;
      setState("error", `Could not tag ${name}.`);
      showError(explain(error, source), error.detail);
    } finally {
      if (controller === pending) pending = null;
    }
  }

  function tagFile(file) {
    if (!file) return;
    repeat = () => tagFile(file);
    lastSource = { file };
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(file);
    const form = new FormData();
    form.append("file", file, file.name);
    const query = new URLSearchParams({ top_k: String(topK()), segments: "true" });
    if (catalog) query.set("embedding", "true");
    if (taxonomy()) query.set("taxonomy", taxonomy());
    return run(
      file.name || "the file",
      "file",
      (signal) => callApi(`/tag?${query}`, { method: "POST", body: form, signal }),
      objectUrl,
    );
  }

  function tagUrl(url) {
    repeat = () => tagUrl(url);
    lastSource = { url };
    const body = JSON.stringify({
      url,
      top_k: topK(),
      segments: true,
      embedding: catalog,
      taxonomy: taxonomy(),
    });
    return run(
      nameOfUrl(url),
      "url",
      (signal) =>
        callApi("/tag/url", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body,
          signal,
        }),
      url,
    );
  }

  // ---- similar tracks: the tagged track's embedding searched in the catalogue ----

  async function loadCatalog() {
    try {
      const body = await callApi("/catalog");
      catalog = body.compatible && body.tracks > 0;
    } catch (error) {
      catalog = false; // 404: this service has no catalogue
    }
  }

  async function findSimilar(response, controller) {
    if (!catalog || !response.embedding) return;
    similarList.replaceChildren();
    similarStatus.textContent = "Searching the catalogue…";
    similarSection.hidden = false;
    try {
      const found = await callApi("/catalog/search", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ embedding: response.embedding, top: 10 }),
        signal: controller.signal,
      });
      if (controller !== pending && pending !== null) return;
      renderSimilar(found.results);
    } catch (error) {
      if (error.name === "AbortError") return;
      similarStatus.textContent = `${explain(error, "page")} ${sentence(error.detail || "")}`;
    }
  }

  function renderSimilar(tracks) {
    similarList.replaceChildren();
    similarStatus.textContent = tracks.length
      ? `${plural(tracks.length, "track")}, most similar first (cosine similarity, 1 is identical).`
      : "The catalogue has no tracks yet.";
    tracks.forEach((track) => {
      const item = document.createElement("li");
      item.className = "similar-item";
      const title = document.createElement("span");
      title.className = "similar-name";
      title.textContent = track.file.split("/").pop();
      title.title = track.file;
      const score = document.createElement("span");
      score.className = "similar-score";
      score.textContent = track.similarity.toFixed(3);
      const tags = document.createElement("span");
      tags.className = "muted similar-tags";
      tags.textContent =
        `${clock(track.duration_seconds)} · ` +
        track.top_tags.slice(0, 3).map((t) => `${t.tag} ${t.score.toFixed(2)}`).join(", ");
      item.append(title, score, tags);
      if (track.audio_url) {
        const audio = document.createElement("audio");
        audio.controls = true;
        audio.preload = "none";
        audio.src = track.audio_url;
        audio.setAttribute("aria-label", `Play ${title.textContent}`);
        item.append(audio);
      }
      similarList.append(item);
    });
  }

  // ---- results: summary, bars ----

  function render(response, name, audioSource) {
    const rows = orderByCategory(response.tags);
    shown = { response, rows };
    trackName.textContent = name;
    const t = response.timings;
    summary.textContent =
      `${clock(response.duration_seconds)} of ${response.format} · ` +
      `${plural(response.windows, "window")} of ${response.window_seconds.toFixed(2)} s · ` +
      `model ${response.model_id} · decode ${Math.round(t.decode_ms)} ms, ` +
      `queue ${Math.round(t.queue_ms)} ms, compute ${Math.round(t.compute_ms)} ms`;
    player.src = audioSource;
    renderBars(rows);
    results.hidden = false;
    heat = null;
    drawHeatmap();
    // evidence.js adds the per-tag evidence view to the bars.
    document.dispatchEvent(
      new CustomEvent("tagger:result", { detail: { response, source: lastSource } }),
    );
  }

  function orderByCategory(tags) {
    const rank = (category) => {
      const index = CATEGORY_ORDER.indexOf(category);
      return index === -1 ? CATEGORY_ORDER.length : index;
    };
    return [...tags].sort((a, b) => rank(a.category) - rank(b.category) || b.score - a.score);
  }

  function renderBars(rows) {
    bars.replaceChildren();
    let list = null;
    let category = null;
    rows.forEach((tag) => {
      if (tag.category !== category) {
        category = tag.category;
        const group = document.createElement("section");
        group.className = "bar-group";
        const heading = document.createElement("h4");
        heading.id = `bars-${category.replace(/[^a-z0-9]+/gi, "-")}`;
        heading.textContent = CATEGORY_NAMES[category] || category;
        group.setAttribute("aria-labelledby", heading.id);
        list = document.createElement("ul");
        list.className = "bars";
        group.append(heading, list);
        bars.append(group);
      }
      list.append(barItem(tag));
    });
  }

  function barItem(tag) {
    const item = document.createElement("li");
    item.className = tag.passes_threshold ? "bar passes" : "bar";
    item.dataset.tag = tag.tag;
    item.dataset.score = String(tag.score);
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = tag.tag;
    const track = document.createElement("span");
    track.className = "bar-track";
    track.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${(100 * Math.max(0, Math.min(1, tag.score))).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = `${tag.score.toFixed(2)}${tag.passes_threshold ? " ✓" : ""}`;
    const spoken = document.createElement("span");
    spoken.className = "visually-hidden";
    spoken.textContent = tag.passes_threshold
      ? `, passes its threshold of ${tag.threshold.toFixed(2)}`
      : `, below its threshold of ${tag.threshold.toFixed(2)}`;
    value.append(spoken);
    item.append(label, track, value);
    return item;
  }

  // ---- the heat map ----

  function colour(score) {
    const x = Math.max(0, Math.min(1, score)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(x));
    const f = x - i;
    const [r, g, b] = RAMP[i].map((c, k) => Math.round(c + f * (RAMP[i + 1][k] - c)));
    return `rgb(${r},${g},${b})`;
  }

  function cssColour(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  function rowTops(rows) {
    const tops = [];
    let y = 0;
    rows.forEach((tag, i) => {
      if (i > 0 && tag.category !== rows[i - 1].category) y += GROUP_GAP;
      tops.push(y);
      y += ROW_HEIGHT;
    });
    return { tops, height: y };
  }

  function tickStep(duration, plotW) {
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
    const most = Math.max(1, Math.floor(plotW / 56));
    return steps.find((s) => duration / s <= most) || 900;
  }

  // Draws the map once into an off-screen canvas; the playhead is drawn over a copy of it.
  function drawHeatmap() {
    if (!shown) return;
    const { response, rows } = shown;
    const segments = response.segments || [];
    const width = Math.max(200, Math.floor(canvas.parentElement.clientWidth));
    const ratio = window.devicePixelRatio || 1;
    const { tops, height: rowsHeight } = rowTops(rows);
    const height = rowsHeight + AXIS_HEIGHT;

    const base = document.createElement("canvas");
    base.width = Math.round(width * ratio);
    base.height = Math.round(height * ratio);
    const ctx = base.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.font = FONT;
    const labelW = Math.min(
      Math.ceil(Math.max(...rows.map((tag) => ctx.measureText(tag.tag).width))) + 10,
      Math.floor(width * 0.35),
    );
    const plotX = labelW;
    const plotW = width - labelW;
    const duration = Math.max(response.duration_seconds, 0.001);

    ctx.fillStyle = cssColour("--card", "#ffffff");
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = colour(0);
    rows.forEach((_, r) => ctx.fillRect(plotX, tops[r], plotW, ROW_HEIGHT - 1));

    // Later windows are drawn over earlier ones: the last window overlaps its neighbour.
    segments.forEach((segment) => {
      const x0 = plotX + (Math.min(segment.start, duration) / duration) * plotW;
      const x1 = plotX + (Math.min(segment.end, duration) / duration) * plotW;
      rows.forEach((tag, r) => {
        ctx.fillStyle = colour(segment.scores[tag.tag] ?? 0);
        // Round outwards so neighbouring windows leave no hairline gaps.
        ctx.fillRect(Math.floor(x0), tops[r], Math.max(1, Math.ceil(x1) - Math.floor(x0)), ROW_HEIGHT - 1);
      });
    });

    const text = cssColour("--text", "#1b1f24");
    const muted = cssColour("--muted", "#57606a");
    ctx.fillStyle = text;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    rows.forEach((tag, r) => {
      ctx.fillText(fit(ctx, tag.tag, labelW - 8), labelW - 6, tops[r] + ROW_HEIGHT / 2);
    });

    const step = tickStep(duration, plotW);
    ctx.fillStyle = muted;
    ctx.strokeStyle = muted;
    ctx.textBaseline = "top";
    for (let t = 0; t <= duration + 1e-6; t += step) {
      const x = plotX + (t / duration) * plotW;
      ctx.beginPath();
      ctx.moveTo(x + 0.5, rowsHeight);
      ctx.lineTo(x + 0.5, rowsHeight + 4);
      ctx.stroke();
      ctx.textAlign = t === 0 ? "left" : x > width - 20 ? "right" : "center";
      ctx.fillText(clock(t), x, rowsHeight + 6);
    }

    canvas.width = base.width;
    canvas.height = base.height;
    canvas.style.height = `${height}px`;
    heat = { base, plotX, plotW, plotH: rowsHeight, width, height, duration, ratio };
    // The layout in CSS pixels, for tools that read the map (the browser test does).
    Object.assign(canvas.dataset, {
      plotX: String(plotX),
      plotWidth: String(plotW),
      plotHeight: String(rowsHeight),
      rows: String(rows.length),
      duration: String(duration),
    });
    describeHeatmap(rows, segments, duration);
    drawPlayhead();
    document.dispatchEvent(new CustomEvent("tagger:heatmap", { detail: { plotX, plotW, width } }));
  }

  function fit(ctx, label, room) {
    if (ctx.measureText(label).width <= room) return label;
    let cut = label;
    while (cut.length > 1 && ctx.measureText(`${cut}…`).width > room) cut = cut.slice(0, -1);
    return `${cut}…`;
  }

  function drawPlayhead() {
    if (!heat) return;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(heat.base, 0, 0);
    if (!player.src) return;
    const t = Math.min(player.currentTime || 0, heat.duration);
    const x = (heat.plotX + (t / heat.duration) * heat.plotW) * heat.ratio;
    ctx.fillStyle = "rgba(0,0,0,0.6)";
    ctx.fillRect(Math.round(x - 2 * heat.ratio), 0, Math.round(4 * heat.ratio), heat.plotH * heat.ratio);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(Math.round(x - heat.ratio), 0, Math.round(2 * heat.ratio), heat.plotH * heat.ratio);
  }

  function describeHeatmap(rows, segments, duration) {
    let best = null;
    segments.forEach((segment) =>
      rows.forEach((tag) => {
        const score = segment.scores[tag.tag] ?? 0;
        if (!best || score > best.score) best = { tag: tag.tag, score, segment };
      }),
    );
    let text = `${plural(rows.length, "tag")} in rows, ${plural(segments.length, "window")} in columns from 0:00 to ${clock(duration)}.`;
    if (best) {
      text += ` Strongest: ${best.tag}, ${best.score.toFixed(2)}, from ${clock(best.segment.start)} to ${clock(Math.min(best.segment.end, duration))}.`;
    }
    heatmapDescription.textContent = text;
  }

  function animate() {
    cancelAnimationFrame(frame);
    drawPlayhead();
    if (!player.paused && !player.ended) frame = requestAnimationFrame(animate);
  }

  // ---- small formatting helpers ----

  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, "0")}`;
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  function nameOfUrl(url) {
    try {
      const parsed = new URL(url);
      const last = parsed.pathname.split("/").filter(Boolean).pop();
      return last ? decodeURIComponent(last) : parsed.host;
    } catch (error) {
      return url;
    }
  }

  // ---- events ----

  dropzone.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    tagFile(file);
    // Picking the same file again must fire `change` again.
    fileInput.value = "";
  });

  let dragDepth = 0;
  dropzone.addEventListener("dragenter", (event) => {
    event.preventDefault();
    dragDepth += 1;
    dropzone.classList.add("dragging");
  });
  dropzone.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) dropzone.classList.remove("dragging");
  });
  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove("dragging");
    const file = event.dataTransfer.files && event.dataTransfer.files[0];
    if (file) tagFile(file);
  });
  // A file dropped beside the zone must not make the browser leave the page to open it.
  ["dragover", "drop"].forEach((type) =>
    window.addEventListener(type, (event) => {
      if (!dropzone.contains(event.target)) event.preventDefault();
    }),
  );

  urlForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const url = urlInput.value.trim();
    if (!url || !urlInput.checkValidity() || !/^https?:\/\//i.test(url)) {
      setState("error", "Enter a URL to tag.");
      showError("Enter the full address of an audio file, starting with http:// or https://.", "");
      urlInput.setAttribute("aria-invalid", "true");
      urlInput.setAttribute("aria-describedby", "error-message");
      urlInput.focus();
      return;
    }
    tagUrl(url);
  });

  topKInput.addEventListener("change", () => {
    // An emptied field is someone still typing, not a request for the default.
    if (topKInput.value.trim() === "" || !Number.isInteger(Number(topKInput.value))) return;
    if (repeat && main.dataset.state === "done") repeat();
  });

  taxonomySelect.addEventListener("change", () => {
    showVocabulary();
    topK(); // clamps the number of tags to the chosen vocabulary's
    if (repeat && main.dataset.state === "done") repeat();
  });

  player.addEventListener("play", animate);
  ["pause", "seeked", "timeupdate", "ended", "loadedmetadata"].forEach((type) =>
    player.addEventListener(type, drawPlayhead),
  );

  canvas.addEventListener("click", (event) => {
    if (!heat || !player.src) return;
    const rect = canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * heat.width;
    if (x < heat.plotX) return;
    player.currentTime = ((x - heat.plotX) / heat.plotW) * heat.duration;
    drawPlayhead();
  });

  let drawnWidth = 0;
  new ResizeObserver((entries) => {
    const width = Math.floor(entries[0].contentRect.width);
    // Drawing sets the canvas height, which resizes the box again: redraw on width changes only.
    if (width !== drawnWidth) {
      drawnWidth = width;
      drawHeatmap();
    }
  }).observe(canvas.parentElement);

  loadModel();
  loadCatalog();
})();
