// Baseline for benchmarks/peers.py: a code-mode runner in the style of the reference's pre-V8
// design — one long-lived Node.js process speaking JSON lines on stdin/stdout, one
// worker_threads Worker (a fresh V8 isolate) per exec, the script wrapped in an async function.
//
// host -> runner: {"type":"exec","id":N,"code":"..."}  {"type":"result","id":N,"call":C,"ok":true,"value":...}
// runner -> host: {"type":"call","id":N,"call":C,"name":"tool","args":...}
//                 {"type":"done","id":N,"items":["..."],"error":null|"..."}
"use strict";
const { Worker } = require("node:worker_threads");
const readline = require("node:readline");

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const pending = new Map();
let nextCall = 0;
globalThis.text = (v) => parentPort.postMessage({ type: "text", v: typeof v === "string" ? v : JSON.stringify(v) });
globalThis.tools = new Proxy({}, {
  get: (_, name) => (args) => new Promise((resolve, reject) => {
    const call = ++nextCall;
    pending.set(call, { resolve, reject });
    parentPort.postMessage({ type: "call", call, name: String(name), args: args ?? {} });
  }),
});
parentPort.on("message", (m) => {
  const p = pending.get(m.call);
  pending.delete(m.call);
  if (m.ok) p.resolve(m.value); else p.reject(m.value);
});
(async () => { await (0, eval)("(async () => {" + workerData.code + "\\n})")(); })().then(
  () => parentPort.postMessage({ type: "done", error: null }),
  (e) => parentPort.postMessage({ type: "done", error: String(e && e.stack || e) }),
);
`;

const cells = new Map();

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function startExec(id, code) {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { code } });
  const cell = { worker, items: [] };
  cells.set(id, cell);
  worker.on("message", (m) => {
    if (m.type === "text") cell.items.push(m.v);
    else if (m.type === "call") send({ type: "call", id, call: m.call, name: m.name, args: m.args });
    else if (m.type === "done") {
      cells.delete(id);
      send({ type: "done", id, items: cell.items, error: m.error });
      worker.terminate();
    }
  });
  worker.on("error", (e) => {
    cells.delete(id);
    send({ type: "done", id, items: cell.items, error: String(e && e.stack || e) });
  });
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const m = JSON.parse(line);
  if (m.type === "exec") startExec(m.id, m.code);
  else if (m.type === "result") {
    const cell = cells.get(m.id);
    if (cell) cell.worker.postMessage({ call: m.call, ok: m.ok, value: m.value });
  }
});
send({ type: "ready" });
