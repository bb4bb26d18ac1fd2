// flowerkit's page: each chosen or dropped photo is sent as its own request
// (the server coalesces concurrent requests into one model batch) and gets a
// card with its thumbnail and its top classes as bars. No build step, no
// third-party code, nothing fetched from anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const PARALLEL = 8;
let token = sessionStorage.getItem("flowerkit-token") || "";
let pendingFiles = [];

function headers() {
  return token ? { Authorization: "Bearer " + token } : {};
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
  } catch (ignored) { /* not JSON */ }
  return "The server answered " + response.status + " " + response.statusText + ".";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function needToken(message) {
  $("token-form").hidden = false;
  $("token").focus();
  showError(message);
}

async function loadModel() {
  let response;
  try {
    response = await fetch("/v1/model", { headers: headers() });
  } catch (error) {
    $("model-info").textContent = "The server cannot be reached.";
    return;
  }
  if (response.status === 401) {
    $("model-info").textContent = "Model details need the access token.";
    needToken(await errorText(response));
    return;
  }
  if (!response.ok) {
    $("model-info").textContent = await errorText(response);
    return;
  }
  const model = await response.json();
  const engine = model.backend ? "Keras on " + model.backend : model.runtime;
  const recipe = model.recipe && model.recipe.name ? model.recipe.name + ", " : "";
  $("model-info").textContent =
    model.class_names.length + " classes (" + model.class_names.join(", ") + "); " +
    recipe + model.image_size + " px; " + engine + ".";
}

function card(file, batch) {
  const item = document.createElement("li");
  item.className = "result";
  item.dataset.state = "pending";
  const image = document.createElement("img");
  image.alt = file.name;
  image.src = URL.createObjectURL(file);
  image.onload = () => URL.revokeObjectURL(image.src);
  image.onerror = () => {  // the browser cannot show it either: a plain placeholder
    const missing = document.createElement("div");
    missing.className = "no-thumb";
    missing.setAttribute("aria-hidden", "true");
    missing.textContent = "?";
    image.replaceWith(missing);
  };
  const text = document.createElement("div");
  const name = document.createElement("p");
  name.className = "name";
  name.textContent = file.name;
  const bars = document.createElement("ol");
  bars.className = "bars";
  bars.setAttribute("aria-label", "top classes of " + file.name);
  text.append(name, bars);
  item.append(image, text);
  batch.append(item);
  return item;
}

function showTop(item, top, timing) {
  const bars = item.querySelector(".bars");
  for (const entry of top) {
    const percent = (entry.probability * 100).toFixed(1) + "%";
    const row = document.createElement("li");
    const label = document.createElement("div");
    label.className = "bar-label";
    const name = document.createElement("span");
    name.className = "class";
    name.textContent = entry.class;
    const value = document.createElement("span");
    value.className = "percent";
    value.textContent = percent;
    label.append(name, value);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", entry.class + " " + percent);
    const fill = document.createElement("span");
    fill.style.width = percent;
    bar.append(fill);
    row.append(label, bar);
    bars.append(row);
  }
  item.title = timing;
  item.dataset.state = "done";
}

function showFailure(item, message) {
  const failed = document.createElement("p");
  failed.className = "failed";
  failed.textContent = message;
  item.querySelector(".bars").replaceWith(failed);
  item.dataset.state = "failed";
}

function serverTiming(response) {
  const found = {};
  for (const part of (response.headers.get("Server-Timing") || "").split(",")) {
    const match = part.trim().match(/^(\w+);dur=([\d.]+)/);
    if (match) found[match[1]] = parseFloat(match[2]);
  }
  return found;
}

async function predictOne(file, item, stats) {
  const form = new FormData();
  form.append("files", file, file.name);
  let response;
  try {
    response = await fetch("/v1/predict", { method: "POST", body: form, headers: headers() });
  } catch (error) {
    showFailure(item, "The server cannot be reached.");
    stats.failed += 1;
    return;
  }
  if (!response.ok) {
    const message = await errorText(response);
    if (response.status === 401) {
      item.remove();
      pendingFiles.push(file);
      stats.needToken = message;
      return;
    }
    showFailure(item, message);
    stats.failed += 1;
    return;
  }
  const [result] = await response.json();
  const timing = serverTiming(response);
  const batch = parseInt(response.headers.get("X-Batch-Images") || "1", 10);
  stats.server.push(timing.total || 0);
  stats.batch = Math.max(stats.batch, batch);
  showTop(item, result.top, "server " + (timing.total || 0).toFixed(0) + " ms, model " +
    (timing.model || 0).toFixed(0) + " ms in a batch of " + batch);
}

async function predictAll(files) {
  if (!files.length) return;
  showError("");
  const started = performance.now();
  const stats = { server: [], failed: 0, batch: 0, needToken: "" };
  const batch = document.createDocumentFragment();  // in the order chosen, above earlier ones
  const queue = files.map((file) => [file, card(file, batch)]);
  $("results").prepend(batch);
  $("status").textContent = "Classifying " + files.length + (files.length === 1 ? " photo" : " photos") + "\u2026";
  const workers = Array.from({ length: Math.min(PARALLEL, queue.length) }, async () => {
    while (queue.length) {
      const [file, item] = queue.shift();
      await predictOne(file, item, stats);
    }
  });
  await Promise.all(workers);
  if (stats.needToken) {
    $("status").textContent = "";
    needToken(stats.needToken);
    return;
  }
  const elapsed = performance.now() - started;
  const done = stats.server.length;
  let text = done + (done === 1 ? " photo" : " photos") + " in " + elapsed.toFixed(0) + " ms";
  if (done) {
    const slowest = Math.max(...stats.server);
    text += "; server latency " + (done === 1 ? slowest.toFixed(0) : "up to " + slowest.toFixed(0)) +
      " ms (model batches of up to " + stats.batch + ")";
  }
  if (stats.failed) text += "; " + stats.failed + " could not be classified";
  $("status").textContent = text + ".";
}

function setUp() {
  const drop = $("drop");
  $("files").addEventListener("change", (event) => {
    predictAll(Array.from(event.target.files));
    event.target.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    predictAll(Array.from(event.dataTransfer.files));
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("flowerkit-token", token);
    $("token-form").hidden = true;
    showError("");
    loadModel();
    const retry = pendingFiles;
    pendingFiles = [];
    predictAll(retry);
  });
  loadModel();
}

setUp();
