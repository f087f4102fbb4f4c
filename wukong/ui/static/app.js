// The page of `wukong ui`: plain DOM code over the JSON API of wukong/ui/server.py.
"use strict";

const MAX_FILE = 50 * 1024 * 1024;      // one image (the server says the same, wukong.ui.projects)
const MAX_ZIP = 2 * 1024 * 1024 * 1024; // one zip
const token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("wukong-token") || "";
if (token) sessionStorage.setItem("wukong-token", token);

const $ = (id) => document.getElementById(id);
let current = null;   // the project shown: the server's description of it
let polling = null;
let cameraTarget = null; // a class name, or "try"
const withToken = (url) => (token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url);

async function api(method, path, body, contentType) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload = body;
  if (body !== undefined && contentType === undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch (err) {
    throw new Error(`the Wukong server did not answer (${err.message}); is it still running?`);
  }
  const data = await response.json().catch(() => ({ error: `answer ${response.status} without JSON` }));
  if (!response.ok) throw new Error(data.error || `error ${response.status}`);
  return data;
}

function say(text, kind = "info") {
  const line = document.createElement("div");
  line.className = kind;
  line.textContent = text;
  $("messages").prepend(line);
  while ($("messages").children.length > 30) $("messages").lastChild.remove();
}

const fail = (err) => say(err.message, "error");
const projectPath = (suffix = "") => `/api/projects/${encodeURIComponent(current.name)}${suffix}`;

async function listProjects() {
  const projects = await api("GET", "/api/projects");
  const list = $("project-list");
  list.replaceChildren();
  for (const p of projects) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = current && current.name === p.name ? "current" : "secondary";
    button.textContent = `${p.name} (${p.modality}${p.trained ? ", trained" : ""})`;
    button.dataset.project = p.name;
    button.onclick = () => openProject(p.name).catch(fail);
    list.append(button);
  }
}

async function openProject(name) {
  $("messages").replaceChildren();
  show(await api("GET", `/api/projects/${encodeURIComponent(name)}`));
  await listProjects();
}

function show(project) {
  current = project;
  $("project").hidden = false;
  $("project").className = `modality-${project.modality}`;
  $("project-title").textContent = `${project.name} (${project.modality})`;
  showClasses(project);
  showJob(project.job);
  showResult(project);
}

function showClasses(project) {
  const box = $("classes");
  box.replaceChildren();
  for (const [name, count] of Object.entries(project.classes)) {
    const card = document.createElement("div");
    card.className = "class-card";
    card.dataset.class = name;
    const title = document.createElement("h4");
    const label = document.createElement("span");
    label.textContent = name;
    const counter = document.createElement("span");
    counter.className = "count";
    counter.textContent = `${count} example${count === 1 ? "" : "s"}`;
    title.append(label, counter);
    card.append(title);
    if (project.modality === "image") {
      const input = document.createElement("input");
      input.type = "file";
      input.multiple = true;
      input.accept = "image/*,.zip";
      input.onchange = () => uploadFiles([...input.files], name).finally(() => (input.value = ""));
      const camera = button("Webcam snapshot", () => openCamera(name));
      const hint = document.createElement("div");
      hint.className = "hint";
      hint.textContent = "Drop images or a zip here, or choose them:";
      card.append(hint, input, camera);
      card.ondragover = (e) => { e.preventDefault(); card.classList.add("dragging"); };
      card.ondragleave = () => card.classList.remove("dragging");
      card.ondrop = (e) => {
        e.preventDefault();
        card.classList.remove("dragging");
        uploadFiles([...e.dataTransfer.files], name);
      };
    } else {
      const area = document.createElement("textarea");
      area.rows = 3;
      area.placeholder = "One example per line";
      const add = button("Add these lines", async () => {
        try {
          const r = await api("POST", projectPath("/texts"), { cls: name, text: area.value });
          say(`${r.added} example(s) added to ${name}`);
          area.value = "";
          await refresh();
        } catch (err) { fail(err); }
      });
      add.className = "add-lines";
      card.append(area, add);
    }
    const remove = button("Remove class", async () => {
      if (!confirm(`Remove the class ${name} and its ${count} example(s)?`)) return;
      try { show(await api("DELETE", projectPath(`/classes/${encodeURIComponent(name)}`))); } catch (err) { fail(err); }
    });
    remove.className = "secondary";
    card.append(remove);
    box.append(card);
  }
}

function button(text, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.onclick = onclick;
  return b;
}

async function uploadFiles(files, cls) {
  let added = 0;
  let done = 0;
  for (const file of files) {
    const isZip = file.name.toLowerCase().endsWith(".zip");
    const limit = isZip ? MAX_ZIP : MAX_FILE;
    done += 1;
    if (file.size > limit) {
      say(`${file.name}: ${(file.size / 1e6).toFixed(0)} MB, over the ${limit / 1024 / 1024} MB limit of one ${isZip ? "zip" : "file"}; not added`, "error");
      continue;
    }
    $("progress-text").textContent = `Uploading ${done} of ${files.length}`;
    try {
      const query = `?filename=${encodeURIComponent(file.name)}&cls=${encodeURIComponent(cls || "")}`;
      const r = await api("PUT", projectPath(`/upload${query}`), file, "application/octet-stream");
      added += r.added;
      for (const s of r.skipped) say(`${s.path}: ${s.reason}`, "error");
    } catch (err) { fail(err); }
  }
  if (added) say(`${added} image(s) added${cls ? ` to ${cls}` : ""}`);
  $("progress-text").textContent = "";
  await refresh();
}

async function refresh() {
  if (current) show(await api("GET", projectPath()));
}

function showJob(job) {
  const running = job.state === "running";
  $("train").disabled = running;
  $("cancel").hidden = !running;
  $("job").hidden = job.state === "none";
  $("log-box").hidden = !job.log;
  $("log").textContent = job.log || "";
  const what = { train: "Training", audit: "Checking the data", export: "Exporting to ONNX" }[job.kind] || "";
  if (running) {
    const p = job.progress;
    if (p && p.total) { $("progress-bar").max = p.total; $("progress-bar").value = p.done || 0; }
    else $("progress-bar").removeAttribute("value");
    const resumed = job.relaunched ? " (resumed after the server stopped)" : "";
    $("progress-text").textContent = `${what}${resumed}: ${p ? p.step : "starting"}${p && p.total ? ` ${p.done}/${p.total}` : ""}`;
    if (!polling) polling = setInterval(() => refresh().catch(fail), 1000);
    return;
  }
  if (polling) { clearInterval(polling); polling = null; }
  $("progress-bar").max = 1;
  $("progress-bar").value = job.state === "done" ? 1 : 0;
  const outcome = { done: "finished", failed: `failed: ${job.error}`, cancelled: "cancelled" }[job.state];
  $("progress-text").textContent = outcome ? `${what} ${outcome}` : "";
  if (job.state === "failed" && job.error && $("messages").dataset.lastError !== job.error) {
    $("messages").dataset.lastError = job.error;
    say(`${what} failed: ${job.error}`, "error");
  }
}

function showResult(project) {
  const model = project.model;
  const trained = Boolean(model);
  for (const id of ["result", "try", "label-next", "downloads"]) $(id).hidden = !trained;
  if (!trained) return;
  $("pool-count").textContent = `${project.pool} example(s) waiting for a class.`;
  $("suggest").disabled = !project.pool;
  $("accuracy").textContent = `${(100 * model.val_accuracy).toFixed(1)}%`;
  $("strategy-reason").textContent = `How: ${model.strategy}, because ${model.strategy_reason}`;
  $("backbone").textContent = `Pretrained network: ${model.backbone}; trained in ${model.train_seconds.toFixed(0)} s`;
  const skipped = $("skipped");
  skipped.replaceChildren();
  for (const s of model.skipped) {
    const li = document.createElement("li");
    li.textContent = `${s.kept ? "note" : "skipped"} ${s.path}: ${s.reason}`;
    skipped.append(li);
  }
  const report = withToken(projectPath("/report"));
  if ($("report").dataset.src !== `${report}#${model.train_seconds}`) {
    $("report").dataset.src = `${report}#${model.train_seconds}`;
    $("report").src = report;
  }
  $("audit-box").hidden = !project.audit;
  if (project.audit && !$("audit-page").src) $("audit-page").src = withToken(projectPath("/audit"));
  $("download-model").href = withToken(projectPath("/download/model.zip"));
  $("download-onnx").hidden = !project.onnx;
  $("download-onnx").href = withToken(projectPath("/download/model.onnx"));
  $("serve-command").textContent = project.serve_command;
}

async function startJob(kind, options = {}) {
  try {
    show(await api("POST", projectPath("/jobs"), { kind, ...options }));
  } catch (err) { fail(err); }
}

async function predict(body, contentType, preview) {
  const out = $("prediction");
  out.textContent = "Thinking...";
  try {
    const row = await api("POST", projectPath("/predict"), body, contentType);
    out.replaceChildren();
    const label = document.createElement("div");
    label.className = row.unknown ? "label unknown" : "label";
    label.id = "predicted-label";
    label.textContent = row.unknown ? `${row.label}: unlike the training examples (nearest below)` : row.label;
    out.append(label);
    const table = document.createElement("table");
    for (const [name, score] of row.top_k) {
      const tr = table.insertRow();
      tr.insertCell().textContent = name;
      tr.insertCell().textContent = `${(100 * score).toFixed(1)}%`;
    }
    out.append(table);
    if (row.unknown_score !== undefined) {
      const note = document.createElement("div");
      note.className = "hint";
      note.textContent = `unknown score ${row.unknown_score.toFixed(3)} (higher: less like the training examples)`;
      out.append(note);
    }
    if (preview) out.append(preview);
  } catch (err) {
    out.textContent = "";
    fail(err);
  }
}

async function addUnlabelled(files) {
  let added = 0;
  for (const file of files) {
    if (file.size > MAX_FILE) {
      say(`${file.name}: over the ${MAX_FILE / 1024 / 1024} MB limit of one file; not added`, "error");
      continue;
    }
    try {
      await api("PUT", projectPath(`/pool?filename=${encodeURIComponent(file.name)}`), file, "application/octet-stream");
      added += 1;
    } catch (err) { fail(err); }
  }
  if (added) say(`${added} example(s) without a class added`);
  await refresh();
}

async function suggestNext() {
  const box = $("suggestions");
  box.textContent = "Choosing...";
  try {
    const r = await api("GET", projectPath("/suggest?n=8"));
    box.replaceChildren();
    for (const row of r.suggestions) box.append(suggestionCard(row));
  } catch (err) {
    box.textContent = "";
    fail(err);
  }
}

function suggestionCard(row) {
  const card = document.createElement("div");
  card.className = "suggestion";
  card.dataset.item = row.item;
  if (current.modality === "image") {
    const img = document.createElement("img");
    img.src = withToken(projectPath(`/pool/${encodeURIComponent(row.item)}`));
    img.alt = row.item;
    card.append(img);
  } else {
    const text = document.createElement("p");
    text.textContent = row.item;
    card.append(text);
  }
  const guess = document.createElement("div");
  guess.className = "hint";
  guess.textContent = `the model's guess: ${row.predicted} (${(100 * row.score).toFixed(0)}%)`;
  card.append(guess);
  for (const cls of Object.keys(current.classes)) {
    const b = button(cls, async () => {
      try {
        show(await api("POST", projectPath("/label"), { item: row.item, cls }));
        card.remove();
        say(`labelled ${cls}; train again to use it`);
      } catch (err) { fail(err); }
    });
    b.className = "label-as";
    b.dataset.class = cls;
    card.append(b);
  }
  return card;
}

async function openCamera(target) {
  cameraTarget = target;
  $(target === "try" ? "try" : "examples").append($("camera-box")); // beside what the picture is for
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    $("camera").srcObject = stream;
    $("camera-box").hidden = false;
  } catch (err) {
    say(`the camera could not be opened (${err.message})`, "error");
  }
}

function closeCamera() {
  const stream = $("camera").srcObject;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  $("camera").srcObject = null;
  $("camera-box").hidden = true;
}

async function snap() {
  const video = $("camera");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  if (cameraTarget === "try") {
    const img = document.createElement("img");
    img.src = URL.createObjectURL(blob);
    await predict(blob, "application/octet-stream", img);
  } else {
    const file = new File([blob], `webcam-${Date.now()}.jpg`, { type: "image/jpeg" });
    await uploadFiles([file], cameraTarget);
  }
}

$("new-project").onsubmit = async (e) => {
  e.preventDefault();
  const modality = document.querySelector("input[name=modality]:checked").value;
  try {
    show(await api("POST", "/api/projects", { name: $("new-name").value, modality }));
    $("new-name").value = "";
    $("messages").replaceChildren();
    await listProjects();
  } catch (err) { fail(err); }
};
$("new-class").onsubmit = async (e) => {
  e.preventDefault();
  try {
    show(await api("POST", projectPath("/classes"), { name: $("class-name").value }));
    $("class-name").value = "";
  } catch (err) { fail(err); }
};
$("import-button").onclick = async () => {
  try {
    const r = await api("POST", projectPath("/import"), { path: $("import-path").value });
    say(`${r.added} example(s) imported`);
    for (const s of r.skipped) say(`${s.path}: ${s.reason}`, "error");
    await refresh();
  } catch (err) { fail(err); }
};
$("zip-upload").onchange = () => uploadFiles([...$("zip-upload").files], "").finally(() => ($("zip-upload").value = ""));
$("train").onclick = () => startJob("train", { preset: $("preset").value, strategy: $("strategy").value });
$("cancel").onclick = async () => {
  try { show(await api("POST", projectPath("/cancel"))); } catch (err) { fail(err); }
};
$("audit").onclick = () => startJob("audit");
$("export-onnx").onclick = () => startJob("export");
$("try-file").onchange = () => {
  const file = $("try-file").files[0];
  if (!file) return;
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  predict(file, "application/octet-stream", img);
};
$("try-camera").onclick = () => openCamera("try");
$("pool-files").onchange = () => addUnlabelled([...$("pool-files").files]).finally(() => ($("pool-files").value = ""));
$("pool-add-text").onclick = async () => {
  try {
    const r = await api("POST", projectPath("/pool/texts"), { text: $("pool-text").value });
    say(`${r.added} example(s) without a class added`);
    $("pool-text").value = "";
    await refresh();
  } catch (err) { fail(err); }
};
$("suggest").onclick = () => suggestNext();
$("predict-text").onclick = () => predict({ text: $("try-text").value });
$("snap").onclick = () => snap().catch(fail);
$("camera-close").onclick = closeCamera;

listProjects().catch(fail);
