// The chat page: plain JavaScript, no build step. It keeps the conversation as OpenAI messages and sends the whole
// history each turn to /v1/chat/completions with stream: true (the server reuses the cached conversation).
"use strict";
const $ = (id) => document.getElementById(id);
const log = $("log"), form = $("ask"), question = $("question"), status = $("status");
let history = [];        // OpenAI messages sent so far
let pending = [];        // images to send with the next question: { url (data URI), name }
let controller = null;   // aborts the running answer

function setStatus(text) { status.textContent = text; }
function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function loadModel() {
  try {
    const health = await fetch("health").then((r) => r.json());
    const models = await fetch("v1/models", { headers: headers() }).then((r) => r.ok ? r.json() : null);
    const id = models && models.data && models.data[0] ? models.data[0].id : "model";
    $("model").textContent = health.status === "Healthy" ? `Model ${id} is ready.` : `Model ${id}: ${health.checks.map((c) => c.description).join("; ")}`;
  } catch (e) {
    $("model").textContent = "The server does not answer: " + e.message;
  }
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function addFiles(files) {
  for (const file of files) {
    if (!file.type.startsWith("image/")) continue;
    pending.push({ url: await readFile(file), name: file.name || "pasted image" });
  }
  renderAttachments();
}

function renderAttachments() {
  const box = $("attachments");
  box.replaceChildren();
  pending.forEach((img, i) => {
    const item = document.createElement("div");
    item.className = "att";
    item.setAttribute("role", "listitem");
    const pic = document.createElement("img");
    pic.src = img.url;
    pic.alt = img.name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", "Remove " + img.name);
    remove.addEventListener("click", () => { pending.splice(i, 1); renderAttachments(); question.focus(); });
    item.append(pic, remove);
    box.append(item);
  });
  setStatus(pending.length ? `${pending.length} image(s) will be sent with the next question.` : "");
}

function addMessage(role, text, images) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : role === "assistant" ? "MiniGpt4" : "Error";
  div.append(who);
  if (images && images.length) {
    const thumbs = document.createElement("div");
    thumbs.className = "thumbs";
    for (const img of images) {
      const pic = document.createElement("img");
      pic.src = img.url;
      pic.alt = img.name;
      thumbs.append(pic);
    }
    div.append(thumbs);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(body);
  log.append(div);
  div.scrollIntoView({ block: "end" });
  return body;
}

// MiniGPT-v2 grounding boxes (pixels of the conversation's last image) drawn over a copy of that image.
function drawBoxes(container, boxes) {
  const last = [...history].reverse().flatMap((m) => Array.isArray(m.content) ? m.content.filter((p) => p.type === "image_url") : [])[0];
  if (!last || !boxes.length) return;
  const figure = document.createElement("div");
  figure.className = "figure";
  const pic = document.createElement("img");
  pic.alt = "The image with the boxes of the answer";
  pic.src = last.image_url.url;
  figure.append(pic);
  pic.addEventListener("load", () => {
    for (const b of boxes) {
      const box = document.createElement("div");
      box.className = "box";
      box.style.left = (100 * b.left / pic.naturalWidth) + "%";
      box.style.top = (100 * b.top / pic.naturalHeight) + "%";
      box.style.width = (100 * (b.right - b.left) / pic.naturalWidth) + "%";
      box.style.height = (100 * (b.bottom - b.top) / pic.naturalHeight) + "%";
      if (b.phrase) { const label = document.createElement("span"); label.textContent = b.phrase; box.append(label); }
      figure.append(box);
    }
  });
  container.parentElement.append(figure);
}

function options() {
  const num = (id) => Number($(id).value);
  return { temperature: num("temperature"), top_p: num("top_p"), max_tokens: num("max_tokens"), num_beams: num("num_beams") };
}

async function ask(event) {
  event.preventDefault();
  const text = question.value.trim();
  if (!text && !pending.length) { setStatus("Type a question or add an image."); return; }
  if (controller) return;
  const images = pending;
  pending = [];
  renderAttachments();
  const content = [...images.map((img) => ({ type: "image_url", image_url: { url: img.url } })), { type: "text", text }];
  const userMessage = { role: "user", content };
  addMessage("user", text, images);
  question.value = "";
  const answer = addMessage("assistant", "");
  answer.parentElement.setAttribute("aria-busy", "true");
  controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false;
  setStatus("Answering…");
  let reply = "";
  try {
    const response = await fetch("v1/chat/completions", {
      method: "POST", headers: headers(), signal: controller.signal,
      body: JSON.stringify({ model: "minigpt4", messages: [...history, userMessage], stream: true, ...options() }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices && chunk.choices[0] ? chunk.choices[0].delta : null;
        if (delta && delta.content) { reply += delta.content; answer.textContent = reply; }
        if (delta && delta.grounding_boxes) drawBoxes(answer, delta.grounding_boxes);
      }
    }
    history.push(userMessage, { role: "assistant", content: reply });
    setStatus("Done. Ask a follow-up question.");
  } catch (e) {
    if (e.name === "AbortError") {
      setStatus("Stopped.");
      if (reply) history.push(userMessage, { role: "assistant", content: reply });
    } else {
      answer.parentElement.className = "msg error";
      answer.textContent = e.message;
      setStatus("The request failed.");
    }
  } finally {
    answer.parentElement.removeAttribute("aria-busy");
    controller = null;
    $("send").disabled = false; $("stop").disabled = true;
    question.focus();
  }
}

form.addEventListener("submit", ask);
question.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
});
$("images").addEventListener("change", async (e) => { await addFiles(e.target.files); e.target.value = ""; });
document.addEventListener("paste", (e) => {
  const files = [...(e.clipboardData ? e.clipboardData.files : [])];
  if (files.length) { e.preventDefault(); addFiles(files); }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => {
  if (controller) controller.abort();
  history = []; pending = [];
  log.replaceChildren();
  renderAttachments();
  setStatus("Cleared.");
  question.focus();
});
$("api_key").addEventListener("change", loadModel);
loadModel();
