/**
 * The main module of a sandbox process (see `sandbox_process.ts`, which
 * starts it): from source as `deno run … sandbox_entry.ts`, compiled as the
 * binary's hidden subcommand {@linkcode SANDBOX_COMMAND}.
 *
 * It reads `{"port", "token"}` from stdin (then at its end, for good),
 * connects to the server on `127.0.0.1:port`, proves itself with the token,
 * receives its configuration (the procedures' Deno permissions), and starts
 * the procedure host (`sandbox_host.ts`) in a Web Worker holding exactly
 * those permissions. From then on it only relays: each frame from the server
 * goes to the worker as one message, its text, and each message from the
 * worker (text) goes to the server as one frame. Text rather than bytes,
 * because a string is copied on the V8 heap, where a fresh ArrayBuffer per
 * message costs new pages each time. The connection lives in this isolate,
 * whose resources a procedure in the worker cannot reach.
 *
 * The process ends when the connection ends (the server stopped, or was
 * killed) and when the worker ends.
 *
 * @module
 */

import { FrameDecoder } from "../wire/frame.ts";
import { SANDBOX_HOST_SOURCE } from "./sandbox_host.ts";
import { FrameWriter, READ_BUFFER_BYTES } from "./sandbox_wire.ts";

/** The hidden subcommand a compiled `rpc` binary runs a sandbox with. */
export const SANDBOX_COMMAND = "__sandbox";

/** What the server sends first, once the token is accepted. */
export interface SandboxConfig {
  /** The procedures' permissions; the worker gets exactly these. */
  permissions: Deno.PermissionOptionsObject;
  /** Names the worker in diagnostics, e.g. `service1`. */
  name: string;
}

/** Bytes of the token the server hands a sandbox: 32 random bytes as hex. */
export const TOKEN_LENGTH = 64;

/** Largest frame the server sends a sandbox (a batch of calls). */
const MAX_FRAME_BYTES = 1024 * 1024 * 1024;

/** Runs a sandbox process until its connection or its worker ends; returns the exit code. */
export async function runSandboxProcess(): Promise<number> {
  const { port, token } = JSON.parse(await new Response(Deno.stdin.readable).text()) as {
    port: number;
    token: string;
  };
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  let worker: Worker | undefined;
  const done = Promise.withResolvers<number>();
  const writer = new FrameWriter(conn, () => done.resolve(0));
  writer.sendRaw(new TextEncoder().encode(token));
  const text = new TextDecoder();
  const decoder = new FrameDecoder(MAX_FRAME_BYTES, (body) => {
    if (worker) {
      worker.postMessage(text.decode(body));
      return;
    }
    const config = JSON.parse(new TextDecoder().decode(body)) as SandboxConfig;
    const url = URL.createObjectURL(
      new Blob([SANDBOX_HOST_SOURCE], { type: "application/javascript" }),
    );
    worker = new Worker(url, {
      type: "module",
      name: config.name,
      // deno-lint-ignore no-explicit-any
      deno: { permissions: config.permissions } as any,
    });
    worker.onmessage = (event: MessageEvent<unknown>) => {
      // The host posts only text; anything else is not a batch of replies.
      if (typeof event.data === "string") writer.sendText(event.data);
    };
    worker.onerror = (event) => {
      // The host keeps procedures' errors to itself; one that reaches here ended it.
      event.preventDefault();
      console.error(`sandbox ${config.name}: the host failed: ${event.message}`);
      done.resolve(70);
    };
  });
  void (async () => {
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    try {
      for (;;) {
        const count = await conn.read(buffer);
        if (count === null) break;
        decoder.push(buffer.subarray(0, count));
      }
    } catch {
      // The server is gone; so is the reason to run.
    }
    done.resolve(0);
  })();
  return await done.promise;
}

if (import.meta.main) Deno.exit(await runSandboxProcess());
