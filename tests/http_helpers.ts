/**
 * What the HTTP gateway's process tests share: an init.yaml with procedures
 * made for them, a real `rpc server --http` started from it, and a raw HTTP
 * connection for what `fetch` will not send (half a request, huge headers).
 *
 * @module
 */

import { join } from "node:path";
import { type ServerProcess, startServer, waitFor, withTimeout } from "./helpers.ts";

/** Client secrets of the fixture. */
export const SECRETS = { alice: "alice-secret", bob: "bob-secret" } as const;

/** Procedures of the fixture, all trusted (they run in the server, so tests stay quick). */
const FILES: Record<string, string> = {
  "big.ts": `export function big(n: number | bigint): number | bigint {
  return typeof n === "bigint" ? n + 1n : n + 1;
}
`,
  "add.ts": `export function add(a: number, b: number): number {
  return a + b;
}
`,
  "fail.ts": `export function fail(message: string): string {
  throw new Error(message);
}
`,
  "countdown.ts": `export async function* countdown(n: number): AsyncGenerator<number, string> {
  for (let i = n; i > 0; i--) {
    yield i;
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  return "liftoff";
}
`,
  "slow.ts": `export async function slow(seconds: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return "done";
}
`,
  "echo.ts": `export function echo(text: string): string {
  return text;
}
`,
  "scale.ts": `export function scale(factor: number, values: number[]): number[] {
  return values.map((value) => value * factor);
}
`,
};

/**
 * The fixture: `math` for alice only (a secret), `vault` for bob only, `open`
 * for anyone; `far` may only connect from 127.0.0.9.
 */
function initYaml(dir: string): string {
  const rpc = (name: string, body: string) =>
    `  - ${name}:\n${body}      src: ${join(dir, `${name}.ts`)}\n      trusted: true\n`;
  return `network:
  servers:
    - h1: { ip: 127.0.0.1, port: 8181 }
  clients:
    - alice: { secret: ${SECRETS.alice} }
    - bob: { secret: ${SECRETS.bob} }
    - far: { ip: 127.0.0.9 }
    - carol: {}
service:
  - math:
      providers: [h1]
      tenants: [alice, carol]
      rpcs: [big, add, fail, countdown, slow, scale]
  - vault:
      providers: [h1]
      tenants: [bob]
      rpcs: [echo]
  - open:
      providers: [h1]
      rpcs: [echo]
rpc:
${rpc("big", "      args: [int]\n      returns: [int]\n      doc: n + 1, exactly.\n")}${
    rpc("add", "      args: [int, int]\n      returns: [int]\n")
  }${rpc("add", "      args: [float, float]\n      returns: [float]\n")}${
    rpc("fail", "      args: [str]\n      returns: [str]\n")
  }${
    rpc(
      "countdown",
      "      args: [int]\n      yields: [int]\n      returns: [str]\n      doc: Count down.\n",
    )
  }${rpc("slow", "      args: [float]\n      returns: [str]\n      timeout: 1\n")}${
    rpc("echo", "      args: [str]\n      returns: [str]\n")
  }${rpc("scale", '      args: [float, "List[float]"]\n      returns: ["List[float]"]\n')}`;
}

/** A running `rpc server --http` and where its gateway listens. */
export interface HttpServer extends AsyncDisposable {
  server: ServerProcess;
  /** `http://127.0.0.1:PORT` (or `https://`). */
  url: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

const GATEWAY = /HTTP gateway listening on (https?):\/\/([^\s:]+):(\d+)/;

/** Starts `rpc server --http 127.0.0.1:0` from the fixture with `extraArgs`. */
export async function startHttpServer(extraArgs: string[] = []): Promise<HttpServer> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-http-" });
  for (const [name, text] of Object.entries(FILES)) {
    await Deno.writeTextFile(join(dir, name), text);
  }
  const config = join(dir, "init.yaml");
  await Deno.writeTextFile(config, initYaml(dir));
  let server: ServerProcess;
  try {
    server = await startServer({
      config,
      name: "h1",
      extraArgs: ["--http", "127.0.0.1:0", ...extraArgs],
    });
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  try {
    const match = await waitFor(
      () => GATEWAY.exec(server.stderrText()),
      "the HTTP gateway's listening line",
      20_000,
    );
    const port = Number(match[3]);
    const stop = async () => {
      await server.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    };
    return {
      server,
      url: `${match[1]}://127.0.0.1:${port}`,
      port,
      dir,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
}

/** `Authorization` header of a fixture client. */
export function bearer(client: keyof typeof SECRETS): Record<string, string> {
  return { authorization: `Bearer ${client}:${SECRETS[client]}` };
}

/** A parsed JSON reply: status, headers, and the body as text and as JSON. */
export interface JsonReply {
  status: number;
  headers: Headers;
  text: string;
  // deno-lint-ignore no-explicit-any
  json: any;
}

/** `POST`s a JSON body (a string is sent as is) and reads the reply. */
export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<JsonReply> {
  const response = await withTimeout(
    fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    }),
    20_000,
    `POST ${url}`,
  );
  return await reply(response);
}

/** `GET`s a URL and reads the reply. */
export async function get(url: string, headers: Record<string, string> = {}): Promise<JsonReply> {
  return await reply(await withTimeout(fetch(url, { headers }), 20_000, `GET ${url}`));
}

async function reply(response: Response): Promise<JsonReply> {
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** A plain TCP connection to the gateway, to send exactly the bytes a test wants. */
export class RawHttp implements AsyncDisposable {
  #received = "";
  #closed = false;

  private constructor(readonly conn: Deno.TcpConn) {}

  static async open(port: number): Promise<RawHttp> {
    return new RawHttp(
      await withTimeout(Deno.connect({ hostname: "127.0.0.1", port }), 5_000, "connect"),
    );
  }

  async send(text: string | Uint8Array): Promise<void> {
    const data = typeof text === "string" ? new TextEncoder().encode(text) : text;
    let offset = 0;
    while (offset < data.length) offset += await this.conn.write(data.subarray(offset));
  }

  /** Reads until the server closes the connection (or `ms` pass); returns everything read. */
  async readToEnd(ms = 20_000): Promise<string> {
    const deadline = Date.now() + ms;
    const buffer = new Uint8Array(64 * 1024);
    const decoder = new TextDecoder();
    while (!this.#closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`The server did not close the connection within ${ms} ms`);
      let count: number | null;
      try {
        count = await withTimeout(this.conn.read(buffer), left, "read from the gateway");
      } catch (error) {
        if (error instanceof Deno.errors.ConnectionReset) count = null;
        else throw error;
      }
      if (count === null) this.#closed = true;
      else this.#received += decoder.decode(buffer.subarray(0, count), { stream: true });
    }
    return this.#received;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** The status code and JSON body of a raw HTTP response text. */
export function parseRawResponse(text: string): { status: number; json: unknown; head: string } {
  const end = text.indexOf("\r\n\r\n");
  const head = end < 0 ? text : text.slice(0, end);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? NaN);
  let json: unknown;
  try {
    json = JSON.parse(text.slice(end + 4));
  } catch {
    json = undefined;
  }
  return { status, json, head };
}
