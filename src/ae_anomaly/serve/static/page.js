// The page of `ae-anomaly serve`: reads /v1/model, sends dropped, picked or drawn
// images to /v1/score?maps=true, and shows each verdict with its maps. No framework,
// no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
let model = null;

function authHeaders() {
  const token = sessionStorage.getItem("ae-anomaly-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadModel() {
  const response = await fetch("/v1/model", { headers: authHeaders() });
  if (response.status === 401) {
    $("token-box").hidden = false;
    $("model").textContent = "Enter the token to use this detector.";
    return;
  }
  if (!response.ok) {
    showError(`The detector could not be read (HTTP ${response.status}).`);
    return;
  }
  model = await response.json();
  $("token-box").hidden = true;
  $("model").textContent = describe(model);
}

function describe(m) {
  const { channels, height, width } = m.input;
  const kind = channels === 1 ? "grey" : channels === 3 ? "colour" : `${channels} channels`;
  const patch = m.patch_size ? `, in ${m.patch_size} px patches` : "";
  return `${m.model}, score ${m.score}${patch}; expects ${width} \u00d7 ${height} ${kind}; ` +
    `threshold ${fmt(m.threshold)} (${m.threshold_rule}); ` +
    `${m.training.epochs_run} epoch${m.training.epochs_run === 1 ? "" : "s"}; ae-anomaly ${m.package_version}; ` +
    `weights ${(m.weights_sha256 || "").slice(0, 12)}`;
}

function fmt(x) {
  return Math.abs(x) >= 1000 || (x !== 0 && Math.abs(x) < 0.001) ? x.toExponential(3) : x.toPrecision(4);
}

// Requests of at most the server's file count and upload size.
function chunks(items) {
  const maxFiles = model ? model.limits.max_files : 16;
  const maxBytes = (model ? model.limits.max_upload_mb : 20) * 2 ** 20 * 0.9;
  const out = [];
  let current = [], bytes = 0;
  for (const item of items) {
    if (current.length && (current.length >= maxFiles || bytes + item.blob.size > maxBytes)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += item.blob.size;
  }
  if (current.length) out.push(current);
  return out;
}

async function score(items) {
  if (!items.length) return;
  if (!model) await loadModel();
  if (!model) return;
  showError("");
  let done = 0;
  for (const part of chunks(items)) {
    $("status").textContent = `Scoring ${items.length} image${items.length > 1 ? "s" : ""}\u2026`;
    const form = new FormData();
    for (const { name, blob } of part) form.append("file", blob, name);
    const response = await fetch("/v1/score?maps=true", { method: "POST", body: form, headers: authHeaders() });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      showError(body.error || `The server answered HTTP ${response.status}.`);
      $("status").textContent = "";
      return;
    }
    for (const result of body.results) $("results").prepend(card(result));
    done += part.length;
  }
  $("status").textContent = `Scored ${done} image${done > 1 ? "s" : ""}.`;
}

function card(result) {
  const node = $("result-card").content.firstElementChild.cloneNode(true);
  const anomaly = result.is_anomaly;
  node.classList.add(anomaly ? "anomaly" : "normal");
  node.dataset.score = String(result.score);
  node.dataset.threshold = String(result.threshold);
  node.dataset.verdict = anomaly ? "anomaly" : "normal";
  node.querySelector(".name").textContent = result.name;
  node.querySelector(".verdict").textContent = anomaly ? "Anomaly" : "Normal";
  node.querySelector(".numbers").textContent =
    `score ${fmt(result.score)} ${anomaly ? ">" : "\u2264"} threshold ${fmt(result.threshold)}`;
  // The threshold sits in the middle; the bar leaves it as the score does.
  const scale = Math.abs(result.threshold) || 1;
  const share = 0.5 + 0.5 * Math.tanh((result.score - result.threshold) / scale);
  node.querySelector(".fill").style.width = `${(100 * share).toFixed(1)}%`;
  for (const [cls, key] of [["input", "input"], ["reconstruction", "reconstruction"], ["error-map", "error_map"]]) {
    if (result[key]) node.querySelector(`img.${cls}`).src = `data:image/png;base64,${result[key]}`;
  }
  return node;
}

function filesOf(list) {
  return Array.from(list).map((file) => ({ name: file.name, blob: file }));
}

function setUpDropAndPick() {
  const drop = $("drop");
  $("files").addEventListener("change", (event) => {
    score(filesOf(event.target.files));
    event.target.value = "";
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    score(filesOf(event.dataTransfer.files));
  });
}

function setUpCanvas() {
  const canvas = $("canvas");
  const pen = canvas.getContext("2d");
  const clear = () => { pen.fillStyle = "#000"; pen.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  pen.strokeStyle = "#fff";
  pen.lineWidth = canvas.width / 12;  // an MNIST stroke, once shrunk to 28 px
  pen.lineCap = pen.lineJoin = "round";
  let drawing = false;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    pen.beginPath();
    pen.moveTo(...at(event));
    pen.lineTo(...at(event));
    pen.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    pen.lineTo(...at(event));
    pen.stroke();
  });
  const stop = () => { drawing = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("clear").addEventListener("click", clear);
  $("score-drawing").addEventListener("click", () => {
    canvas.toBlob((blob) => score([{ name: "drawing.png", blob }]), "image/png");
  });
}

function setUpToken() {
  $("token-use").addEventListener("click", () => {
    sessionStorage.setItem("ae-anomaly-token", $("token").value.trim());
    loadModel();
  });
}

setUpDropAndPick();
setUpCanvas();
setUpToken();
loadModel();
