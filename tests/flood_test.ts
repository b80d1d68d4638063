/**
 * A peer that never stops writing is still answered: the server's replies go
 * out while it keeps reading, not only once the peer pauses or half-closes.
 *
 * The peer is a python3 process, so that its reading thread runs however
 * busy its writing is (a Deno peer writing in a tight loop would hold back
 * its own reads: a write that completes at once does not yield to the event
 * loop). It sends `HELLO`, then `LIST` and `add` calls in batches, without
 * pause, and stops only once it has read a `HELLO`, a `LIST-RES` and an
 * `RPC-RES`, or after {@linkcode LIMIT_BYTES} (then the replies were held
 * back). A reply read after the peer stops writing does not count.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startServer } from "./helpers.ts";

/** Bytes the peer writes before it gives up waiting for replies. */
const LIMIT_BYTES = 32 * 1024 * 1024;

const PEER = `
import json, socket, struct, sys, threading

port, limit = int(sys.argv[1]), int(sys.argv[2])
wanted = {"HELLO", "LIST-RES", "RPC-RES"}
seen = set()
done = threading.Event()

def frame(message):
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body

def read(sock):
    buffer = b""
    try:
        while not done.is_set():
            data = sock.recv(65536)
            if not data:
                break
            buffer += data
            while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack(">I", buffer[:4])[0]:
                length = struct.unpack(">I", buffer[:4])[0]
                seen.add(json.loads(buffer[4:4 + length])["type"])
                buffer = buffer[4 + length:]
                if wanted <= seen:
                    done.set()
    except OSError:
        pass
    done.set()

sock = socket.create_connection(("127.0.0.1", port))
sock.settimeout(120)
reader = threading.Thread(target=read, args=(sock,), daemon=True)
reader.start()
sock.sendall(frame({"type": "HELLO", "serial": 0, "value": {"versions": [1], "client": "c1"}}))
serial, written, error = 0, 0, None
try:
    while not done.is_set() and written < limit:
        batch = b""
        for _ in range(64):
            serial += 1
            if serial % 2:
                batch += frame({"type": "LIST", "serial": serial, "value": {}})
            else:
                batch += frame({"type": "RPC-REQ", "serial": serial,
                                "value": {"service": "service1", "rpc": "add", "arguments": [serial, 1]}})
        sock.sendall(batch)
        written += len(batch)
except OSError as e:
    error = str(e)
answered = sorted(seen)
print(json.dumps({"answered": answered, "written": written, "frames": serial, "error": error}))
sock.close()
`;

Deno.test("flood: a peer that never stops writing gets its replies while it writes", async () => {
  await using server = await startServer({ name: "s1" });
  const output = await new Deno.Command("python3", {
    args: ["-c", PEER, String(server.port), String(LIMIT_BYTES)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, `the peer exited with ${output.code}: ${stderr}`);
  const result = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    answered: string[];
    written: number;
    frames: number;
    error: string | null;
  };
  console.log(
    `the peer wrote ${result.frames} frames (${result.written} bytes) before it had its replies`,
  );
  assert.equal(result.error, null, "the peer's writes went through");
  assert.deepEqual(
    result.answered,
    ["HELLO", "LIST-RES", "RPC-RES"],
    `replies read while writing, after ${result.written} bytes`,
  );
  assert.ok(result.written < LIMIT_BYTES, "the replies came before the peer gave up");
  assert.ok(server.running(), "the server lives");
});
