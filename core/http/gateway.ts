/**
 * The HTTP gateway: rpc over HTTP/1.1 for curl, other languages and
 * browsers, on a port of its own, served by the same process and registry.
 *
 * It has no rules of its own about who may call what. Each HTTP connection
 * gets a session on the server over an in-memory connection (see
 * `session.ts`) that the server counts, limits, identifies, rate-limits,
 * logs and audits exactly like a TCP connection, from the HTTP caller's
 * address and TLS client certificate; the gateway only translates:
 *
 * | HTTP                                  | protocol                            |
 * | ------------------------------------- | ----------------------------------- |
 * | `Authorization: Bearer NAME:SECRET`   | `HELLO` `client` and `secret`       |
 * | `POST /v1/{service}/{rpc}`            | `RPC-REQ`, answered `RPC-RES` as JSON |
 * | the same for an RPC that `yields`     | `RPC-PART`s and the result as Server-Sent Events |
 * | the caller going away                 | `RPC-CANCEL`                        |
 * | `GET /v1`, `GET /openapi.json`        | `LIST`                              |
 *
 * plus `GET /` (the browser console) and `GET /metrics` (Prometheus).
 *
 * @module
 */

import type { RpcClient } from "../client/client.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { formatAddress, type RpcServer } from "../server/server.ts";
import {
  type Address,
  type Connection,
  type Listener,
  type ListenEvents,
  listenTcp,
  listenTls,
  type TlsServerOptions,
} from "../transport/mod.ts";
import { stringifyJson } from "../types/types.ts";
import { CONSOLE_ASSETS } from "./assets.ts";
import type { GatewayMetrics } from "./metrics.ts";
import { openApiDocument } from "./openapi.ts";
import { allowedMethods, type CallBody, callPath, HttpError, readCallBody } from "./request.ts";
import { type Credential, GatewaySession, parseCredential } from "./session.ts";
import { errorResponse, HttpErrorKind, jsonResponse, statusOf } from "./status.ts";
import {
  HttpConnection,
  type HttpReply,
  type HttpRequest,
  type HttpResponse,
  type HttpStreamResponse,
} from "./wire.ts";

/** Options of {@linkcode HttpGateway}. */
export interface GatewayOptions {
  /** The server whose sessions serve the calls. */
  server: RpcServer;
  /** Address to bind. Default `127.0.0.1`. */
  hostname?: string;
  /** Port to bind; 0 picks a free one. Default 0. */
  port?: number;
  /** Serve HTTPS; with `clientCa`, every caller must present a client certificate. */
  tls?: TlsServerOptions;
  logger?: Logger;
  /** Serves `GET /metrics` when given, and counts HTTP requests. */
  metrics?: GatewayMetrics;
  /** Largest request line plus headers. Default 16 KiB. */
  maxHeaderBytes?: number;
}

/** The default limit of a request's line and headers, as Node's. */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

/** The content security policy of the console: nothing but this origin's own files. */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** One HTTP connection and the session behind it. */
interface Peer {
  http: HttpConnection;
  remote: Address;
  label: string;
  /** The accepted connection: its client certificate's name is known once its TLS handshake is done. */
  conn: Connection;
  session: GatewaySession;
}

/** Serves rpc over HTTP; see the module documentation. */
export class HttpGateway {
  #options: GatewayOptions;
  #server: RpcServer;
  #logger: Logger;
  #listener: Listener | undefined;
  #peers = new Set<Peer>();
  #acceptLoop: Promise<void> | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #maxHeaderBytes: number;

  constructor(options: GatewayOptions) {
    this.#options = options;
    this.#server = options.server;
    this.#logger = options.logger ?? silentLogger();
    this.#maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  }

  /** HTTP connections open now. */
  get connections(): number {
    return this.#peers.size;
  }

  /** Binds and starts accepting. Resolves to the bound address. */
  async start(): Promise<Address> {
    const address = {
      hostname: this.#options.hostname ?? "127.0.0.1",
      port: this.#options.port ?? 0,
    };
    const tls = this.#options.tls;
    const events: ListenEvents = {
      onRejected: (remote, reason) => {
        this.#server.stats.refused++;
        this.#logger.warn(
          "unauthorized",
          `HTTPS connection from ${formatAddress(remote)} refused: ${reason}`,
          { remote: formatAddress(remote), reason },
        );
      },
      onAcceptError: (error, failures, pauseMs) => {
        if ((failures & (failures - 1)) !== 0) return; // logged at 1, 2, 4, 8, ... failures
        this.#logger.error(
          "accept",
          `Cannot accept HTTP connections: ${error.message} (${failures} failures in a row); retrying in ${pauseMs} ms`,
          { error: error.message, failures, pauseMs },
        );
      },
    };
    const listener = tls ? await listenTls(address, tls, events) : listenTcp(address, events);
    this.#listener = listener;
    const scheme = tls ? "https" : "http";
    const bound = formatAddress(listener.address);
    this.#logger.info(
      "listen",
      `HTTP gateway listening on ${scheme}://${bound}${tls?.clientCa ? " (mutual TLS)" : ""}`,
      { address: bound, scheme },
    );
    this.#acceptLoop = this.#accept(listener);
    const sweeper = setInterval(() => this.#sweep(), 1000);
    Deno.unrefTimer(sweeper);
    this.#sweeper = sweeper;
    return listener.address;
  }

  async #accept(listener: Listener): Promise<void> {
    for (;;) {
      const conn = await listener.accept();
      if (!conn) return;
      this.#open(this.#options.metrics?.wrap(conn, "http") ?? conn);
    }
  }

  /** Drops requests that take longer than the frame limit to arrive (slow senders). */
  #sweep(): void {
    const { frameTimeoutMs } = this.#server.limits;
    if (frameTimeoutMs <= 0) return;
    const now = performance.now();
    for (const peer of this.#peers) {
      const since = peer.http.partialSince;
      if (since === undefined || now - since <= frameTimeoutMs) continue;
      const message =
        `Cannot read request: it took longer than ${frameTimeoutMs} ms to arrive (slow sender)`;
      this.#logRefusal(peer, HttpErrorKind.RequestTimeout, message);
      void peer.http.refuse(errorResponse(HttpErrorKind.RequestTimeout, message));
    }
  }

  #open(conn: Connection): void {
    const remote = conn.remote;
    const peer: Peer = {
      remote,
      label: formatAddress(remote),
      conn,
      http: undefined!,
      session: undefined!,
    };
    peer.http = new HttpConnection(conn, {
      maxHeaderBytes: this.#maxHeaderBytes,
      maxBodyBytes: this.#server.limits.maxFrameBytes,
      handle: (request) => this.#handle(peer, request),
      refuse: (refusal) => {
        this.#logRefusal(peer, refusal.kind, refusal.message);
        return errorResponse(refusal.kind, refusal.message);
      },
    });
    this.#peers.add(peer);
    // The session opens with the connection, so the server's connection limits apply from the start.
    if (!this.#openSession(peer)) {
      void peer.session.refusal().then(async (error) => {
        this.#logRefusal(peer, error.kind, error.message);
        await peer.http.refuse(errorResponse(error.kind, error.message));
        this.#peers.delete(peer);
      });
      return;
    }
    peer.http.serve().finally(() => {
      this.#peers.delete(peer);
      peer.session.close();
    });
  }

  /** Opens a new session for `peer`; false when the server refused it. */
  #openSession(peer: Peer): boolean {
    const session = new GatewaySession(this.#server, peer.remote, peer.conn);
    peer.session = session;
    if (!session.accepted) return false;
    // When the server ends the session (idle, `rpc admin disconnect`, shutdown), the connection goes too.
    session.closed.then(() => {
      if (peer.session === session) peer.http.closeWhenIdle();
    });
    return true;
  }

  #logRefusal(peer: Peer, kind: string, message: string): void {
    const status = statusOf(kind);
    this.#options.metrics?.httpRequest(status);
    const level = status === 401 || status === 403 ? "warn" : "info";
    this.#logger.log(
      level,
      status === 401 || status === 403 ? "unauthorized" : "http",
      `HTTP ${peer.label}: ${status} ${kind}: ${message}`,
      { remote: peer.label, status, kind, error: message },
    );
  }

  /** Answers one request. */
  async #handle(peer: Peer, request: HttpRequest): Promise<HttpReply> {
    const reply = await this.#route(peer, request);
    if (!("stream" in reply)) this.#options.metrics?.httpRequest(reply.status);
    return reply;
  }

  #fail(
    peer: Peer,
    request: HttpRequest,
    error: RpcError | HttpError,
    headers: Record<string, string> = {},
  ): HttpResponse {
    const status = statusOf(error.kind);
    // Calls and handshakes the server refused, it logged; the gateway's own refusals are logged here.
    if (error instanceof HttpError) {
      const level = status === 401 || status === 403 ? "warn" : "info";
      this.#logger.log(
        level,
        status === 401 || status === 403 ? "unauthorized" : "http",
        `HTTP ${peer.label} ${request.method} ${request.path}: ${status} ${error.kind}: ${error.message}`,
        {
          remote: peer.label,
          method: request.method,
          path: request.path,
          status,
          kind: error.kind,
          error: error.message,
        },
      );
    }
    return errorResponse(error.kind, error.message, headers);
  }

  async #route(peer: Peer, request: HttpRequest): Promise<HttpReply> {
    const { method, path } = request;
    const asset = method === "GET" ? CONSOLE_ASSETS.get(path) : undefined;
    if (asset) {
      return {
        status: 200,
        headers: {
          "content-type": asset.type,
          "cache-control": "no-cache",
          "x-content-type-options": "nosniff",
          "content-security-policy": CONSOLE_CSP,
          "x-frame-options": "DENY",
          "referrer-policy": "no-referrer",
        },
        body: asset.body,
      };
    }
    const allowed = allowedMethods(path);
    if (!allowed) {
      return this.#fail(
        peer,
        request,
        new HttpError(
          HttpErrorKind.NotFound,
          `No endpoint ${path}: see GET /v1, GET /openapi.json, POST /v1/{service}/{rpc}`,
        ),
      );
    }
    if (!allowed.includes(method)) {
      return this.#fail(
        peer,
        request,
        new HttpError(
          HttpErrorKind.MethodNotAllowed,
          `${path} accepts ${allowed.join(", ")}, not ${method}`,
        ),
        { allow: allowed.join(", ") },
      );
    }
    if (path === "/metrics") {
      const metrics = this.#options.metrics!;
      return {
        status: 200,
        headers: { "content-type": metrics.contentType, "cache-control": "no-store" },
        body: await metrics.text(),
      };
    }
    try {
      const client = await this.#client(peer, request);
      if (path === "/v1") return jsonResponse(200, { services: await client.list() });
      if (path === "/openapi.json") {
        return jsonResponse(
          200,
          openApiDocument(await client.list(), this.#server.name, !!this.#options.tls?.clientCa),
        );
      }
      const [service, rpc] = callPath(path)!;
      const body = readCallBody(request);
      if (this.#streams(service, rpc)) {
        return await this.#stream(client, request, service, rpc, body);
      }
      // A caller that goes away aborts the signal: the call is sent RPC-CANCEL.
      const values = await client.call(service, rpc, body.arguments, {
        ...(body.argumentTypes ? { argumentTypes: body.argumentTypes } : {}),
        ...(body.returnTypes ? { returnTypes: body.returnTypes } : {}),
        signal: request.signal,
      });
      return jsonResponse(200, { "return-values": values });
    } catch (error) {
      return this.#fail(peer, request, error instanceof HttpError ? error : RpcError.from(error));
    }
  }

  /** The session's client for this request's credential, opening a new session when it changed. */
  async #client(peer: Peer, request: HttpRequest): Promise<RpcClient> {
    let credential: Credential;
    try {
      credential = parseCredential(request.headers.get("authorization"));
    } catch (error) {
      throw new HttpError(ErrorKind.Unauthorized, (error as Error).message);
    }
    const current = peer.session.credential;
    if (peer.session.isClosed || (current !== undefined && current.key !== credential.key)) {
      peer.session.close();
      if (!this.#openSession(peer)) {
        peer.http.closeWhenIdle();
        throw await peer.session.refusal();
      }
    }
    try {
      return await peer.session.client(credential);
    } catch (error) {
      // A refused handshake closes the session; the next request opens another.
      throw RpcError.from(error);
    }
  }

  /** Whether `service.rpc` streams (any overload declares `yields`). */
  #streams(service: string, rpc: string): boolean {
    for (const spec of this.#server.registry.specs) {
      if (spec.name !== service) continue;
      return spec.procedures.some((procedure) =>
        procedure.rpc === rpc && procedure.signature.yields !== undefined
      );
    }
    return false;
  }

  /**
   * A streaming call as Server-Sent Events: the status is decided by the
   * first thing the call produces, so a call refused outright (a bad
   * argument, not a tenant) is an ordinary JSON error; once a part has come,
   * it is `200` and the failure comes as an `error` event.
   */
  async #stream(
    client: RpcClient,
    request: HttpRequest,
    service: string,
    rpc: string,
    body: CallBody,
  ): Promise<HttpReply> {
    const stream = client.stream(service, rpc, body.arguments, {
      ...(body.argumentTypes ? { argumentTypes: body.argumentTypes } : {}),
      ...(body.returnTypes ? { returnTypes: body.returnTypes } : {}),
      signal: request.signal,
    });
    const parts = stream[Symbol.asyncIterator]();
    const first = await parts.next(); // throws the call's failure when nothing came before it
    const metrics = this.#options.metrics;
    metrics?.httpRequest(200);
    const response: HttpStreamResponse = {
      status: 200,
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      },
      async stream(write) {
        try {
          let step = first;
          while (!step.done) {
            if (!(await write(event("part", { values: step.value })))) return;
            step = await parts.next();
          }
          await write(event("result", { "return-values": await stream.result }));
        } catch (error) {
          const rpcError = RpcError.from(error);
          await write(event("error", { kind: rpcError.kind, message: rpcError.message }));
        } finally {
          // Leaving early (the caller went away) cancels the call.
          await parts.return?.();
        }
      },
    };
    return response;
  }

  /** Stops accepting new connections; open ones go on. */
  stopAccepting(): void {
    this.#listener?.close();
    clearInterval(this.#sweeper);
  }

  /** Stops accepting and closes every connection. */
  async close(): Promise<void> {
    this.stopAccepting();
    for (const peer of this.#peers) {
      peer.http.close();
      peer.session.close();
    }
    await this.#acceptLoop;
  }
}

function event(name: string, value: unknown): string {
  return `event: ${name}\ndata: ${stringifyJson(value)}\n\n`;
}

export { HttpError, readCallBody } from "./request.ts";
export type { HttpResponse };
