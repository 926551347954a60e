"""The one page of `rear serve`: a form, a grid that fills row by row, a download link (no build step).

Element ids the browser test relies on: class-input, class-hint, add-class, class-list, all-classes,
chosen, count, cfg-scale, cfg-power, temperature, top-k, top-p, seed, generate, message, status, grid
(data-done="1" once finished), grid-box (holds a .cell-label per image), caption, download.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>rear serve</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
  header { padding: 10px 20px; background: #263238; color: #fff; }
  header small { color: #b0bec5; margin-left: 8px; }
  main { display: flex; gap: 24px; padding: 20px; align-items: flex-start; flex-wrap: wrap; }
  form { display: grid; grid-template-columns: auto 140px; gap: 8px 10px; align-items: center;
         background: #fff; padding: 16px; border: 1px solid #ddd; border-radius: 6px; width: 330px; }
  form .wide { grid-column: 1 / 3; }
  input { width: 100%; box-sizing: border-box; padding: 4px 6px; }
  #chosen span { display: inline-block; background: #e3f2fd; border-radius: 12px; padding: 2px 8px; margin: 2px; }
  input.invalid { border: 2px solid #c62828; }
  #class-hint { grid-column: 1 / 3; color: #c62828; margin: 0; min-height: 1em; font-size: 13px; }
  #class-list { width: 100%; }
  #chosen button { border: none; background: none; cursor: pointer; padding: 0 0 0 4px; }
  #generate { grid-column: 1 / 3; padding: 8px; font-size: 16px; cursor: pointer; }
  #message { grid-column: 1 / 3; color: #b71c1c; margin: 0; min-height: 1em; }
  section { min-width: 300px; flex: 1; }
  #grid-box { position: relative; display: inline-block; line-height: 0; }
  #grid { image-rendering: pixelated; border: 1px solid #ccc; background: #eee; display: none; }
  .cell-label { position: absolute; font-size: 11px; line-height: 1.2; color: #fff; background: rgba(0, 0, 0, 0.55);
                padding: 0 3px; border-radius: 0 0 3px 0; pointer-events: none; white-space: nowrap; overflow: hidden; }
  #caption { color: #455a64; font-size: 13px; }
  progress { width: 300px; }
</style>
</head>
<body>
<header><b>rear serve</b><small id="about"></small></header>
<main>
<form id="form" novalidate>
  <label class="wide" for="class-input">Classes (type a name or an index, then Add; or pick from the list)</label>
  <input id="class-input" list="class-names" autocomplete="off" aria-describedby="class-hint">
  <button type="button" id="add-class">Add</button>
  <datalist id="class-names"></datalist>
  <p id="class-hint" role="status"></p>
  <select id="class-list"><option value="">choose a class ...</option></select>
  <button type="button" id="all-classes">All classes</button>
  <div id="chosen" class="wide"></div>
  <label for="count">Images</label><input id="count" type="number" min="1">
  <label for="cfg-scale">CFG scale (1 = none)</label><input id="cfg-scale" type="number" step="0.5" min="1">
  <label for="cfg-power">CFG schedule power</label><input id="cfg-power" type="number" step="0.25">
  <label for="temperature">Temperature</label><input id="temperature" type="number" step="0.05">
  <label for="top-k">Top-k (empty: off)</label><input id="top-k" type="number" min="1">
  <label for="top-p">Top-p (empty: off)</label><input id="top-p" type="number" step="0.05">
  <label for="seed">Seed</label><input id="seed" type="number" min="0">
  <button type="submit" id="generate">Generate</button>
  <p id="message" role="alert"></p>
</form>
<section>
  <div><progress id="progress" value="0" max="1"></progress> <span id="status">ready</span></div>
  <p><span id="grid-box"><img id="grid" alt="generated grid"></span></p>
  <p id="caption"></p>
  <p><a id="download" download hidden>Download PNG</a></p>
</section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const fields = {count: "count", cfg_scale: "cfg-scale", cfg_power: "cfg-power", temperature: "temperature",
                top_k: "top-k", top_p: "top-p", seed: "seed"};
const PAD = 2;  // pixels between the grid's cells (rear.images.tile)
let info = null;
let shown = {labels: [], columns: 1};  // the grid on screen: a class name per cell, the cells per row

// a class by its name (exact, then any case) or its index, as the server resolves it; null if none
function resolve(text) {
  text = text.trim();
  if (!text) return null;
  const exact = info.classes.indexOf(text);
  if (exact >= 0) return exact;
  const folded = info.classes.findIndex((name) => name.toLowerCase() === text.toLowerCase());
  if (folded >= 0) return folded;
  return /^\\d+$/.test(text) && Number(text) < info.classes.length ? Number(text) : null;
}

function addClass(text) {
  const index = resolve(text);
  if (index === null) {
    if (text.trim()) hint(text);
    return;
  }
  const name = info.classes[index];
  const chip = document.createElement("span");
  chip.dataset.name = name;
  chip.textContent = name;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "\\u00d7";
  remove.title = "remove";
  remove.onclick = () => chip.remove();
  chip.appendChild(remove);
  $("chosen").appendChild(chip);
  $("class-input").value = "";
  hint("");
}

// flag an unknown class as it is typed; clear the flag when the text names a class again
function hint(text) {
  const bad = text.trim() !== "" && resolve(text) === null;
  $("class-input").classList.toggle("invalid", bad);
  $("class-input").setAttribute("aria-invalid", bad ? "true" : "false");
  $("add-class").disabled = bad;
  $("class-hint").textContent = bad ? `no class "${text.trim()}" (a name from the list or an index 0..${info.classes.length - 1})` : "";
}

function say(text) { $("message").textContent = text; }

// the grid scaled to the room it has (a whole factor when it fits, pixels kept sharp), its cells labelled
function layout() {
  const img = $("grid");
  if (!img.naturalWidth) return;
  const box = $("grid-box").parentElement.parentElement.getBoundingClientRect();
  const room = Math.min(box.width - 12, window.innerHeight - $("grid-box").getBoundingClientRect().top - 90);
  const fit = room / Math.max(img.naturalWidth, img.naturalHeight);
  const scale = fit >= 1 ? Math.floor(fit) : Math.max(fit, 0.25);
  img.style.width = img.naturalWidth * scale + "px";
  img.style.height = img.naturalHeight * scale + "px";
  for (const old of [...document.querySelectorAll(".cell-label")]) old.remove();
  const columns = shown.columns, rows = Math.ceil(shown.labels.length / columns);
  const cellW = (img.naturalWidth - PAD) / columns - PAD, cellH = (img.naturalHeight - PAD) / rows - PAD;
  shown.labels.forEach((name, i) => {
    const label = document.createElement("span");
    label.className = "cell-label";
    label.textContent = name;
    label.style.left = (1 + (PAD + (i % columns) * (cellW + PAD)) * scale) + "px";
    label.style.top = (1 + (PAD + Math.floor(i / columns) * (cellH + PAD)) * scale) + "px";
    label.style.maxWidth = cellW * scale + "px";
    $("grid-box").appendChild(label);
  });
}

function show(src, done) {
  const img = $("grid");
  img.onload = () => {
    layout();
    img.dataset.frames = String(Number(img.dataset.frames || 0) + 1);
    if (done) img.dataset.done = "1";
  };
  img.src = src;
  img.style.display = "block";
}

async function load() {
  info = await (await fetch("api/info")).json();
  info.classes.forEach((name, i) => {
    const option = document.createElement("option");
    option.value = name;
    $("class-names").appendChild(option);
    const item = document.createElement("option");
    item.value = String(i);
    item.textContent = `${i}: ${name}`;
    $("class-list").appendChild(item);
  });
  for (const [key, id] of Object.entries(fields)) $(id).value = info.defaults[key] ?? "";
  $("count").max = info.limits.max_images;
  $("cfg-scale").max = info.limits.max_cfg_scale;
  $("cfg-power").max = info.limits.max_cfg_power;
  $("temperature").max = info.limits.max_temperature;
  $("top-k").max = info.limits.codebook_size;
  info.defaults.classes.forEach(addClass);
  $("about").textContent = `${info.classes.length} classes, ${info.num_tokens} tokens ` +
      `(${info.grid[0]} x ${info.grid[1]}) per ${info.image_size} px image, at most ` +
      `${info.limits.max_images} images per request`;
}

function finish() { $("generate").disabled = false; }

async function generate(event) {
  event.preventDefault();
  say("");
  const classes = [...$("chosen").children].map((chip) => chip.dataset.name);
  if ($("class-input").value.trim()) classes.push($("class-input").value.trim());
  const body = {classes};
  for (const [key, id] of Object.entries(fields)) body[key] = $(id).value;
  $("generate").disabled = true;
  let reply, response;
  try {
    response = await fetch("api/generate", {method: "POST", headers: {"Content-Type": "application/json"},
                                            body: JSON.stringify(body)});
    reply = await response.json();
  } catch (error) {
    say(`the server did not answer: ${error}`);
    return finish();
  }
  if (!response.ok) {
    say(reply.error);
    return finish();
  }
  const img = $("grid");
  img.dataset.done = "0";
  img.dataset.frames = "0";
  shown = {labels: reply.labels, columns: reply.columns};
  $("caption").textContent = "";
  $("download").hidden = true;
  $("progress").max = reply.num_tokens;
  $("progress").value = 0;
  const stream = new EventSource(`api/jobs/${reply.job}/events`);
  stream.onmessage = (message) => {
    const e = JSON.parse(message.data);
    if (e.error) {
      say(e.error);
      $("status").textContent = "failed";
      stream.close();
      return finish();
    }
    $("progress").value = e.tokens;
    $("status").textContent = `${e.tokens} / ${e.of} tokens` +
        (info.spatial || e.done ? "" : " (a 1D tokenizer: the image appears once every token is drawn)");
    if (e.image) show(e.image, e.done);
    if (e.done) {
      stream.close();
      $("status").textContent = `done: ${e.of} tokens per image`;
      $("caption").textContent = reply.caption;
      $("download").href = `api/jobs/${reply.job}/grid.png`;
      $("download").download = reply.filename;
      $("download").textContent = `Download ${reply.filename}`;
      $("download").hidden = false;
      finish();
    }
  };
  stream.onerror = () => {
    stream.close();
    say("lost the connection to the server");
    finish();
  };
}

$("add-class").onclick = () => addClass($("class-input").value);
$("class-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter") { event.preventDefault(); addClass($("class-input").value); }
});
$("class-input").addEventListener("input", () => hint($("class-input").value));
$("class-list").addEventListener("change", () => {
  if ($("class-list").value !== "") addClass($("class-list").value);
  $("class-list").value = "";
});
$("all-classes").onclick = () => {
  $("chosen").replaceChildren();
  info.classes.forEach((name) => addClass(name));
};
$("form").addEventListener("input", () => say(""));  // an old error goes once the input changes
$("form").addEventListener("submit", generate);
window.addEventListener("resize", layout);
load().catch((error) => say(`could not read the server's settings: ${error}`));
</script>
</body>
</html>
"""
