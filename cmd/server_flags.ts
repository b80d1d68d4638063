/**
 * The flags of `rpc server`: its parser and the options it yields. What the
 * flags mean once combined with the environment and init.yaml is resolved in
 * `server_settings.ts`; `server.ts` runs the server.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message, text } from "@optique/core/message";
import { optional, withDefault } from "@optique/core/modifiers";
import { command, constant, flag, option } from "@optique/core/primitives";
import { choice, integer, string } from "@optique/core/valueparser";
import { DEFAULT_LIMITS, type ServerLimits } from "../core/server/limits.ts";
import { LOG_LEVELS, type LogLevel } from "../core/log.ts";
import { DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_BYTES } from "../core/log_file.ts";
import { configSource, examples, serverNameValue } from "./common.ts";

/** How `--log-format` writes the log on stderr. */
export type LogFormat = "text" | "json";

/** The choices of `--log-format`. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/** The parser of `rpc server`. */
export const serverCommand = command(
  "server",
  object({
    command: constant("server" as const),
    config: optional(option("-c", "--config", configSource, {
      description:
        message`init.yaml: this server's address, port and known clients, and its procedures when their sources are here (default: $RPC_CONFIG).`,
    })),
    name: optional(option("-n", "--name", serverNameValue, {
      description: message`This server's name in init.yaml (default: $RPC_SERVER_NAME).`,
    })),
    host: optional(option("--host", string({ metavar: "ADDRESS" }), {
      description: message`Address to bind, overriding init.yaml (default 127.0.0.1).`,
    })),
    port: optional(option("-p", "--port", integer({ min: 0, max: 65535 }), {
      description: message`Port to bind, overriding init.yaml; 0 picks a free port.`,
    })),
    listen: optional(option("--listen", string({ metavar: "unix:PATH" }), {
      description:
        message`Listen on a unix domain socket instead of TCP (unix:/run/rpc/rpc.sock); a stale socket file is replaced. Who may connect is the socket file's mode (--socket-mode).`,
    })),
    broker: optional(option("--broker", string({ metavar: "URL" }), {
      description:
        message`Serve through this NATS broker, nats://[USER:PASSWORD@]HOST:PORT, taking sessions by this server's name and in the queue group of each service it serves; with it the server listens on no port unless --port, --listen or an ip and port in init.yaml say so (default: $RPC_BROKER, else init.yaml's network.broker).`,
    })),
    brokerCreds: optional(option("--broker-creds", string({ metavar: "FILE" }), {
      description:
        message`The broker's own credentials: a NATS .creds file or an nkey seed file (default: $RPC_BROKER_CREDS).`,
    })),
    socketMode: optional(option("--socket-mode", string({ metavar: "MODE" }), {
      description:
        message`Permission bits of the --listen socket file, in octal (default 600: only this user may connect; 660 lets the file's group).`,
    })),
    logFile: optional(option("--log-file", string({ metavar: "FILE" }), {
      description:
        message`Also append the log to FILE as JSON lines (rotated by size; reopened on SIGHUP).`,
    })),
    logMaxBytes: withDefault(
      option("--log-max-bytes", integer({ type: "number", min: 0, metavar: "BYTES" }), {
        description: [
          text(
            `Rotate --log-file and --audit-log before they grow past this size (default ${DEFAULT_LOG_MAX_BYTES}; 0 never).`,
          ),
        ],
      }),
      DEFAULT_LOG_MAX_BYTES,
    ),
    logKeep: withDefault(
      option("--log-keep", integer({ type: "number", min: 0, metavar: "N" }), {
        description: [
          text(
            `Rotated files kept: FILE.1 (newest) to FILE.N (default ${DEFAULT_LOG_KEEP}; 0 none).`,
          ),
        ],
      }),
      DEFAULT_LOG_KEEP,
    ),
    refusalSummary: withDefault(
      option("--refusal-summary", string({ metavar: "DURATION" }), {
        description:
          message`Log the first of repeated refusals of one peer for one reason, then one count per DURATION (default ${"10s"}; 0 logs each).`,
      }),
      "10s",
    ),
    logLevel: withDefault(
      option("--log-level", choice(LOG_LEVELS, { metavar: "LEVEL" }), {
        description:
          message`Least severe level logged (rpc admin SERVER log-level changes it live).`,
      }),
      "info" as LogLevel,
    ),
    logFormat: withDefault(
      option("--log-format", choice(LOG_FORMATS, { metavar: "FORMAT" }), {
        description:
          message`How the log on stderr is written: readable text, or the JSON lines of --log-file.`,
      }),
      "text" as LogFormat,
    ),
    check: withDefault(
      flag("--check", {
        description:
          message`Check flags, init.yaml and every procedure (loading each with the real runners), print what would be served, and exit 0 or 1 without binding a port.`,
      }),
      false,
    ),
    grace: withDefault(
      option("--grace", string({ metavar: "DURATION" }), {
        description:
          message`On SIGTERM or SIGINT, stop accepting and give calls in flight this long to finish (a second signal cuts it short).`,
      }),
      "10s",
    ),
    http: optional(option("--http", string({ metavar: "HOST:PORT" }), {
      description:
        message`Also serve rpc over HTTP on HOST:PORT (HTTPS with the TLS flags): JSON calls, an OpenAPI document, a browser console and Prometheus metrics, behind the same identity and limits. Off by default.`,
    })),
    pidfile: optional(option("--pidfile", string({ metavar: "FILE" }), {
      description: message`Write the process id to FILE at start; remove it at exit.`,
    })),
    maxFrameBytes: limitOption(
      "--max-frame-bytes",
      "BYTES",
      "Largest frame accepted",
      "maxFrameBytes",
    ),
    maxStringLength: limitOption(
      "--max-string",
      "CHARS",
      "Longest string in an argument",
      "maxStringLength",
    ),
    maxListLength: limitOption(
      "--max-list",
      "ITEMS",
      "Longest list in an argument",
      "maxListLength",
    ),
    maxDepth: limitOption(
      "--max-depth",
      "LEVELS",
      "Deepest list nesting in an argument",
      "maxDepth",
    ),
    maxIntegerDigits: limitOption(
      "--max-int-digits",
      "DIGITS",
      "Most digits of an integer in a request",
      "maxIntegerDigits",
    ),
    maxConnections: limitOption(
      "--max-connections",
      "N",
      "Connections open at once",
      "maxConnections",
    ),
    maxConnectionsPerIp: limitOption(
      "--max-connections-per-ip",
      "N",
      "Connections open at once from one IP",
      "maxConnectionsPerIp",
    ),
    adminReserve: optional(
      option("--admin-reserve", integer({ type: "number", min: 0, metavar: "N" }), {
        description: [
          text(
            `Connections kept beyond the connection limits for clients that prove the admin token (default ${DEFAULT_LIMITS.adminReserve}; 0 for none).`,
          ),
        ],
      }),
    ),
    handshakeTimeout: optional(option("--handshake-timeout", string({ metavar: "DURATION" }), {
      description:
        message`Close connections whose TLS handshake and first message take longer to arrive (default ${"10s"}; 0 for never).`,
    })),
    maxCallsPerConnection: limitOption(
      "--max-calls-per-connection",
      "N",
      "Calls in flight on one connection",
      "maxCallsPerConnection",
    ),
    maxUnsentBytes: limitOption(
      "--max-unsent-bytes",
      "BYTES",
      "Unsent reply bytes on one connection before it is paused",
      "maxUnsentBytes",
    ),
    maxUnsentTotal: limitOption(
      "--max-unsent-total",
      "BYTES",
      "Unsent reply bytes in all before connections with a backlog are paused",
      "maxUnsentTotal",
    ),
    idleTimeout: optional(option("--idle-timeout", string({ metavar: "DURATION" }), {
      description: message`Close connections idle this long (default ${"5m"}; 0 for never).`,
    })),
    frameTimeout: optional(option("--frame-timeout", string({ metavar: "DURATION" }), {
      description:
        message`Close connections whose frame takes longer to arrive (default ${"10s"}).`,
    })),
    clientRate: limitOption(
      "--rate",
      "CALLS",
      "Calls per second per client (token bucket)",
      "clientRate",
    ),
    clientBurst: limitOption(
      "--burst",
      "CALLS",
      "Burst size per client (default: the rate)",
      "clientBurst",
    ),
    globalRate: limitOption(
      "--global-rate",
      "CALLS",
      "Calls per second over all clients",
      "globalRate",
    ),
    globalBurst: limitOption(
      "--global-burst",
      "CALLS",
      "Burst size over all clients",
      "globalBurst",
    ),
    tlsCert: optional(option("--tls-cert", string({ metavar: "FILE" }), {
      description: message`Serve TLS with this PEM certificate chain (needs --tls-key).`,
    })),
    tlsKey: optional(option("--tls-key", string({ metavar: "FILE" }), {
      description: message`PEM private key of --tls-cert.`,
    })),
    tlsClientCa: optional(option("--tls-client-ca", string({ metavar: "FILE" }), {
      description:
        message`Require client certificates signed by this PEM CA; their CN names the client (mutual TLS).`,
    })),
    auditLog: optional(option("--audit-log", string({ metavar: "FILE" }), {
      description: message`Append one JSON line per call, refusal and install to FILE.`,
    })),
    sandboxMemory: withDefault(
      option("--sandbox-memory", integer({ min: 16 }), {
        description:
          message`Memory limit of each procedure sandbox, in MiB: what a TypeScript sandbox may use beyond what it starts with (JS heap, ArrayBuffers, WebAssembly), a Python interpreter's data and its /tmp.`,
      }),
      256,
    ),
    workers: optional(option("--workers", integer({ min: 1, max: 256 }), {
      description:
        message`Most sandbox processes per service and permission set (default: the number of cores); calls go to as few as keep up with them.`,
    })),
    stateDir: optional(option("--state-dir", string({ metavar: "DIR" }), {
      description:
        message`Where installed code is kept (default: $RPC_STATE_DIR, else ~/.local/state/rpc/NAME).`,
    })),
    adminTokenFile: optional(option("--admin-token-file", string({ metavar: "FILE" }), {
      description:
        message`File holding the admin secret that rpc init must present (default: $RPC_ADMIN_TOKEN).`,
    })),
    insecure: withDefault(
      flag("--insecure", {
        description: message`Accept installs from anyone, without an admin secret.`,
      }),
      false,
    ),
    callTimeout: withDefault(
      option("--call-timeout", string({ metavar: "DURATION" }), {
        description: message`Default time limit of one call (e.g. ${"30s"}).`,
      }),
      "60s",
    ),
    loadTimeout: withDefault(
      option("--load-timeout", string({ metavar: "DURATION" }), {
        description:
          message`Time limit of loading one procedure at install or start; past it the install fails naming the procedure (default ${"30s"}; 0 for none).`,
      }),
      "30s",
    ),
  }),
  {
    brief: message`Serve procedures to clients.`,
    description:
      message`Serves the procedures installed in its state directory, which survive restarts; rpc init replaces them while the server runs. With --config, address, port and known clients come from init.yaml, and the file's procedures for this server are installed at start when their sources are readable here. TypeScript procedures run in sandboxes with only the permissions init.yaml grants them (trusted: true runs one in the server itself); Python procedures in python3 interpreters confined with bubblewrap (trusted: true runs one unconfined). Logs every connection, client, unauthorized access, call and exception on stderr with a timestamp. On SIGINT or SIGTERM it refuses new connections at once, gives calls in flight --grace to finish, then exits 0. --check validates everything and loads every procedure without serving.`,
    footer: examples(
      "rpc server --config init.yaml --name s1",
      "RPC_ADMIN_TOKEN=secret rpc server --name s1 --port 8181",
      "rpc server --name s1 --tls-cert s1.pem --tls-key s1.key --tls-client-ca clients-ca.pem",
      "rpc server --config init.yaml --name s2 --port 0 --log-file s2.jsonl --audit-log audit.jsonl",
      "rpc server --config init.yaml --name s1 --http 127.0.0.1:8080",
      "rpc server --config docs/fleet.example.yaml --name vm1 --broker nats://127.0.0.1:4222",
    ),
  },
);

/** Options of `rpc server` (`runServer` in server.ts), as parsed. */
export interface ServerCommandOptions {
  config?: string;
  name?: string;
  host?: string;
  port?: number;
  listen?: string;
  broker?: string;
  brokerCreds?: string;
  socketMode?: string;
  logFile?: string;
  logMaxBytes: number;
  logKeep: number;
  refusalSummary: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  check: boolean;
  grace: string;
  http?: string;
  pidfile?: string;
  maxFrameBytes?: number;
  maxStringLength?: number;
  maxListLength?: number;
  maxDepth?: number;
  maxIntegerDigits?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  adminReserve?: number;
  handshakeTimeout?: string;
  maxCallsPerConnection?: number;
  maxUnsentBytes?: number;
  maxUnsentTotal?: number;
  idleTimeout?: string;
  frameTimeout?: string;
  clientRate?: number;
  clientBurst?: number;
  globalRate?: number;
  globalBurst?: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  auditLog?: string;
  sandboxMemory: number;
  workers?: number;
  callTimeout: string;
  loadTimeout: string;
  stateDir?: string;
  adminTokenFile?: string;
  insecure: boolean;
}

/** An optional numeric limit flag whose default is in {@linkcode DEFAULT_LIMITS}. */
function limitOption(
  name: `--${string}`,
  metavar: Uppercase<`${"B" | "C" | "D" | "I" | "L" | "N"}${string}`>,
  what: string,
  key: keyof ServerLimits,
) {
  return optional(option(name, integer({ type: "number", min: 0, metavar }), {
    description: [text(`${what} (default ${DEFAULT_LIMITS[key]}; 0 for no limit).`)],
  }));
}
