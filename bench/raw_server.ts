/**
 * The baselines of `bench/compare.ts`: a Deno TCP server speaking u32
 * big-endian length-prefixed frames, in one of two modes.
 *
 * - `echo` (the floor): every frame is written back as it came, byte for
 *   byte, with no codec at all.
 * - `json` (the raw JSON line): every body is `{"id", "method", "params"}`,
 *   parsed with one `JSON.parse`; `echo` answers `{"id", "result"}` with its
 *   first parameter, serialized with one `JSON.stringify`.
 *
 * Replies to every frame of one read leave in one write, so a pipelining
 * client is answered in batches. Prints `listening on 127.0.0.1:PORT` on
 * stderr and serves until SIGTERM.
 *
 *     deno run --allow-net bench/raw_server.ts echo|json [PORT]
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Serves one connection until it closes. */
async function serve(conn: Deno.TcpConn, json: boolean): Promise<void> {
  conn.setNoDelay(true);
  const readBuffer = new Uint8Array(256 * 1024);
  let pending = new Uint8Array(0);
  let out = new Uint8Array(256 * 1024);
  try {
    for (;;) {
      const count = await conn.read(readBuffer);
      if (count === null) return;
      let data = readBuffer.subarray(0, count);
      if (pending.length > 0) {
        const joined = new Uint8Array(pending.length + count);
        joined.set(pending);
        joined.set(data, pending.length);
        data = joined;
      }
      let offset = 0;
      let outLength = 0;
      while (data.length - offset >= 4) {
        const length = new DataView(data.buffer, data.byteOffset + offset).getUint32(0);
        if (data.length - offset - 4 < length) break;
        // Room for the reply: the request's length bounds an echo's (plus a little for the id).
        const room = json ? length * 3 + 64 : length;
        if (outLength + 4 + room > out.length) {
          const bigger = new Uint8Array(Math.max(out.length * 2, outLength + 4 + room));
          bigger.set(out.subarray(0, outLength));
          out = bigger;
        }
        let replyLength: number;
        if (json) {
          const request = JSON.parse(
            decoder.decode(data.subarray(offset + 4, offset + 4 + length)),
          );
          const text = request.method === "echo"
            ? JSON.stringify({ id: request.id, result: request.params[0] })
            : JSON.stringify({ id: request.id, error: `no method ${request.method}` });
          replyLength = encoder.encodeInto(text, out.subarray(outLength + 4)).written;
        } else {
          out.set(data.subarray(offset + 4, offset + 4 + length), outLength + 4);
          replyLength = length;
        }
        new DataView(out.buffer).setUint32(outLength, replyLength);
        outLength += 4 + replyLength;
        offset += 4 + length;
      }
      pending = data.slice(offset);
      let written = 0;
      while (written < outLength) written += await conn.write(out.subarray(written, outLength));
    }
  } catch {
    // The client went away.
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

if (import.meta.main) {
  const mode = Deno.args[0];
  if (mode !== "echo" && mode !== "json") {
    console.error("usage: raw_server.ts echo|json [PORT]");
    Deno.exit(2);
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(Deno.args[1] ?? 0) });
  console.error(`listening on 127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  for await (const conn of listener) void serve(conn, mode === "json");
}
