// The rpc console: lists what the caller may call (GET /v1), builds a form
// for the chosen RPC, and calls it (POST /v1/{service}/{rpc}) with the typed
// fields as `text-arguments`, which the gateway converts exactly as
// `rpc call` converts its command line. Streaming RPCs are read as
// Server-Sent Events. Values are shown as the server's JSON text, so
// integers beyond 2^53 stay exact.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { services: [], controller: undefined };
const STORAGE_KEY = "rpc-console-credential";

function headers(extra = {}) {
  const credential = $("credential").value.trim();
  return credential ? { ...extra, authorization: `Bearer ${credential}` } : extra;
}

function show(kind, text) {
  const status = $("status");
  status.className = kind;
  status.textContent = text;
}

function signature(rpc) {
  const returns = rpc.returns.length === 1 ? rpc.returns[0] : `(${rpc.returns.join(", ")})`;
  const yields = rpc.yields ? ` yields (${rpc.yields.join(", ")})` : "";
  return `${rpc.name}(${rpc.args.join(", ")}) -> ${returns}${yields}`;
}

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

async function errorOf(response) {
  const text = await response.text();
  try {
    const { kind, message } = JSON.parse(text);
    return `${response.status} ${kind}: ${message}`;
  } catch {
    return `${response.status}: ${text}`;
  }
}

async function load(event) {
  event?.preventDefault();
  sessionStorage.setItem(STORAGE_KEY, $("credential").value);
  show("", "Loading services…");
  let response;
  try {
    response = await fetch("/v1", { headers: headers() });
  } catch (error) {
    show("error", `Cannot reach the server: ${error.message}`);
    return;
  }
  if (!response.ok) {
    state.services = [];
    fillServices();
    show("error", await errorOf(response));
    return;
  }
  state.services = (await response.json()).services;
  fillServices();
  show("", `${state.services.length} service(s) you may call.`);
}

function fillServices() {
  const select = $("service");
  select.replaceChildren(...state.services.map((s) => option(s.name, s.name)));
  select.disabled = state.services.length === 0;
  fillRpcs();
}

function fillRpcs() {
  const service = state.services.find((s) => s.name === $("service").value);
  const select = $("rpc");
  const rpcs = service?.rpcs ?? [];
  select.replaceChildren(...rpcs.map((rpc, i) => option(String(i), signature(rpc))));
  select.disabled = rpcs.length === 0;
  fillArguments();
}

function chosen() {
  const service = state.services.find((s) => s.name === $("service").value);
  const rpc = service?.rpcs[Number($("rpc").value)];
  return service && rpc ? { service, rpc } : undefined;
}

function fillArguments() {
  const fieldset = $("arguments");
  const legend = document.createElement("legend");
  legend.textContent = "Arguments";
  const call = chosen();
  $("doc").textContent = call?.rpc.doc ?? "";
  $("submit").disabled = !call;
  if (!call) {
    fieldset.replaceChildren(legend);
    return;
  }
  const fields = call.rpc.args.map((type, i) => {
    const id = `arg-${i}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `Argument ${i + 1} (${type})`;
    const input = document.createElement("input");
    input.id = id;
    input.name = id;
    input.dataset.type = type;
    input.autocomplete = "off";
    input.placeholder = type.startsWith("List[") ? "[1, 2] or 1,2" : type;
    return [label, input];
  }).flat();
  if (fields.length === 0) {
    const none = document.createElement("p");
    none.className = "muted";
    none.textContent = "This RPC takes no arguments.";
    fields.push(none);
  }
  fieldset.replaceChildren(legend, ...fields);
}

function item(text) {
  const element = document.createElement("li");
  element.textContent = text;
  return element;
}

/** Splits Server-Sent Events as they arrive; calls `onEvent(name, data)` for each. */
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      onEvent(name, data.join("\n"));
    }
  }
}

function valuesText(json, field) {
  // The JSON text of `field`'s list, as the server wrote it (exact integers).
  const start = json.indexOf("[", json.indexOf(`"${field}"`));
  return start < 0 ? json : json.slice(start, json.lastIndexOf("]") + 1);
}

async function call(event) {
  event.preventDefault();
  const current = chosen();
  if (!current) return;
  const { service, rpc } = current;
  const inputs = [...$("arguments").querySelectorAll("input")];
  const body = JSON.stringify({
    "text-arguments": inputs.map((input) => input.value),
    "argument-types": rpc.args,
  });
  $("parts").replaceChildren();
  $("result").textContent = "";
  show("", `Calling ${service.name}.${rpc.name}…`);
  const controller = new AbortController();
  state.controller = controller;
  $("cancel").disabled = false;
  $("submit").disabled = true;
  const started = performance.now();
  const took = () => `${(performance.now() - started).toFixed(1)} ms`;
  try {
    const response = await fetch(
      `/v1/${encodeURIComponent(service.name)}/${encodeURIComponent(rpc.name)}`,
      {
        method: "POST",
        headers: headers({ "content-type": "application/json" }),
        body,
        signal: controller.signal,
      },
    );
    if (!response.ok) {
      show("error", `${await errorOf(response)} (${took()})`);
      return;
    }
    if (response.headers.get("content-type")?.startsWith("text/event-stream")) {
      let parts = 0;
      let ended = false;
      await readEvents(response, (name, data) => {
        if (name === "part") {
          parts++;
          $("parts").append(item(valuesText(data, "values")));
          show("", `${parts} part(s) so far (${took()})`);
        } else if (name === "result") {
          ended = true;
          $("result").textContent = valuesText(data, "return-values");
          show("ok", `ok: ${parts} part(s), then the result (${took()})`);
        } else if (name === "error") {
          ended = true;
          const { kind, message } = JSON.parse(data);
          show("error", `${kind}: ${message} (${took()})`);
        }
      });
      if (!ended) show("error", `The stream ended without a result (${took()})`);
      return;
    }
    $("result").textContent = valuesText(await response.text(), "return-values");
    show("ok", `ok (${took()})`);
  } catch (error) {
    show("error", error.name === "AbortError" ? `Cancelled (${took()})` : error.message);
  } finally {
    state.controller = undefined;
    $("cancel").disabled = true;
    $("submit").disabled = !chosen();
  }
}

function cancel() {
  state.controller?.abort();
}

document.addEventListener("DOMContentLoaded", () => {
  $("credential").value = sessionStorage.getItem(STORAGE_KEY) ?? "";
  $("identity").addEventListener("submit", load);
  $("service").addEventListener("change", fillRpcs);
  $("rpc").addEventListener("change", fillArguments);
  $("call").addEventListener("submit", call);
  $("cancel").addEventListener("click", cancel);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") cancel();
  });
  load();
});
