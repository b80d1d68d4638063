/**
 * The supervisor of one sandbox slot: a Web Worker created with the Deno
 * permissions of its procedures. It starts the procedure host (see
 * `sandbox_host.ts`) as a `node:worker_threads` worker with a heap limit,
 * which inherits these permissions and talks to the server directly over a
 * transferred port. The supervisor stays idle and responsive, so it can
 * terminate a host that loops forever or ran out of memory and start a new
 * one.
 *
 * Messages in: `{op: "start", port, source, memoryMb}` (replacing any running
 * host) and `{op: "stop"}`. Out: `{op: "exit", code}` when the host ends.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { Worker } from "node:worker_threads";

interface Start {
  op: "start";
  port: MessagePort;
  source: string;
  memoryMb: number;
}

let host: Worker | undefined;

function stop(): void {
  const old = host;
  host = undefined;
  if (old) {
    old.removeAllListeners("exit");
    void old.terminate();
  }
}

self.onmessage = (event: MessageEvent<Start | { op: "stop" }>) => {
  const message = event.data;
  stop();
  if (message.op !== "start") return;
  const started = new Worker(message.source, {
    eval: true,
    resourceLimits: { maxOldGenerationSizeMb: message.memoryMb },
    workerData: { port: message.port },
    transferList: [message.port as never],
  });
  started.on("exit", (code: number) => {
    if (host === started) {
      host = undefined;
      self.postMessage({ op: "exit", code });
    }
  });
  started.on("error", () => {
    // An uncaught error ends the host; "exit" follows and reports it.
  });
  host = started;
};
