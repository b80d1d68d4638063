/**
 * Prometheus metrics of one server, served by the gateway at `GET /metrics`.
 *
 * The exposition format is written by `prom-client`. Its own counters and
 * histograms cost about half a microsecond per call (they hash their label
 * values on every update), about 7% of what a server spends on a call, so
 * the hot path here keeps plain per-RPC counters and bucket arrays instead,
 * and hands them to `prom-client` only when Prometheus scrapes. Everything
 * else (connections, calls in flight, installed procedures, runners) is read
 * from its owner at scrape time.
 *
 * @module
 */

import client from "prom-client";
import { MemoryConnection } from "../transport/memory.ts";
import type { Registry as RpcRegistry } from "../server/registry.ts";
import type { RpcServer, ServerObserver } from "../server/server.ts";
import type { Connection } from "../transport/mod.ts";
import { formatTypes } from "../types/types.ts";
import { VERSION } from "../version.ts";

/** Upper bounds of the call latency buckets, in seconds. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

/** How many processes of one kind a runner keeps, and how many it had to replace. */
export interface RunnerStats {
  alive: number;
  restarted: number;
}

/** Options of {@linkcode ServerMetrics}. */
export interface MetricsOptions {
  server: RpcServer;
  /** The installed generation (0 before the first install). */
  generation?: () => number;
  /** Sandbox workers, when TypeScript procedures run in sandboxes. */
  sandbox?: () => RunnerStats;
  /** Python interpreters. */
  python?: () => RunnerStats;
  /** HTTP connections open now. */
  httpConnections?: () => number;
}

/** What the gateway needs of the metrics. */
export interface GatewayMetrics {
  readonly contentType: string;
  /** The exposition text. */
  text(): Promise<string>;
  /** Counts the bytes of an accepted HTTP connection. */
  wrap(conn: Connection, transport: "tcp" | "http"): Connection;
  /** Counts one HTTP response by status. */
  httpRequest(status: number): void;
}

const UNKNOWN = "(unknown)";

/** The counters of one RPC. */
class RpcStats {
  outcomes = new Map<string, number>();
  /** Calls per latency bucket (not cumulative); the last is +Inf. */
  buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  record(outcome: string, seconds: number): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]) bucket++;
    this.buckets[bucket]++;
    this.sum += seconds;
    this.count++;
  }
}

/** Bytes in and out of one transport. */
interface ByteCounts {
  received: number;
  sent: number;
}

/** A connection that counts what passes through it. */
class CountingConnection implements Connection {
  constructor(readonly inner: Connection, readonly counts: ByteCounts) {}
  get remote() {
    return this.inner.remote;
  }
  get peerName() {
    return this.inner.peerName;
  }
  get handshaking() {
    return this.inner.handshaking;
  }
  get writesAreMessages() {
    return this.inner.writesAreMessages;
  }
  read(buffer: Uint8Array): Promise<number | null> {
    return this.inner.read(buffer).then((count) => {
      if (count !== null) this.counts.received += count;
      return count;
    });
  }
  write(data: Uint8Array): Promise<number> {
    return this.inner.write(data).then((count) => {
      this.counts.sent += count;
      return count;
    });
  }
  close(): void {
    this.inner.close();
  }
  closeWrite(): Promise<void> {
    return this.inner.closeWrite();
  }
}

/**
 * The metrics of one server: its observer (set it as `server.observer`)
 * and the gateway's view of them.
 */
export class ServerMetrics implements ServerObserver, GatewayMetrics {
  readonly contentType: string = client.Registry.PROMETHEUS_CONTENT_TYPE;
  readonly registry: client.Registry = new client.Registry();
  #options: MetricsOptions;
  #calls = new Map<string, Map<string, RpcStats>>();
  #known: { registry: RpcRegistry; names: Map<string, Set<string>> } | undefined;
  #bytes: Record<"tcp" | "http", ByteCounts> = {
    tcp: { received: 0, sent: 0 },
    http: { received: 0, sent: 0 },
  };
  #httpResponses = new Map<number, number>();
  #httpConnections = 0;

  constructor(options: MetricsOptions) {
    this.#options = options;
    this.#define();
  }

  // --- the hot path -------------------------------------------------------

  accepted(conn: Connection): Connection {
    // Sessions of the gateway are counted as HTTP traffic, on their HTTP connection.
    return conn instanceof MemoryConnection ? conn : new CountingConnection(conn, this.#bytes.tcp);
  }

  called(service: string, rpc: string, outcome: string, ms: number): void {
    let stats = this.#calls.get(service)?.get(rpc);
    if (!stats) stats = this.#statsFor(service, rpc);
    stats.record(outcome, ms / 1000);
  }

  /** The counters of a new (service, rpc); names no RPC serves are pooled, so a caller cannot add series. */
  #statsFor(service: string, rpc: string): RpcStats {
    const registry = this.#options.server.registry;
    if (this.#known?.registry !== registry) {
      const names = new Map<string, Set<string>>();
      for (const spec of registry.specs) {
        names.set(spec.name, new Set(spec.procedures.map((procedure) => procedure.rpc)));
      }
      this.#known = { registry, names };
    }
    const served = this.#known.names.get(service)?.has(rpc);
    const [s, r] = served ? [service, rpc] : [UNKNOWN, UNKNOWN];
    let byRpc = this.#calls.get(s);
    if (!byRpc) this.#calls.set(s, byRpc = new Map());
    let stats = byRpc.get(r);
    if (!stats) byRpc.set(r, stats = new RpcStats());
    return stats;
  }

  wrap(conn: Connection, transport: "tcp" | "http"): Connection {
    if (transport === "http") this.#httpConnections++;
    return new CountingConnection(conn, this.#bytes[transport]);
  }

  httpRequest(status: number): void {
    this.#httpResponses.set(status, (this.#httpResponses.get(status) ?? 0) + 1);
  }

  // --- at scrape time -----------------------------------------------------

  text(): Promise<string> {
    return this.registry.metrics();
  }

  #define(): void {
    const registers = [this.registry];
    // deno-lint-ignore no-this-alias
    const self = this;
    const options = this.#options;
    const server = options.server;
    new client.Counter({
      name: "rpc_calls_total",
      help: "Calls answered, by service, RPC and outcome (ok, or the exception kind).",
      labelNames: ["service", "rpc", "outcome"],
      registers,
      collect() {
        this.reset();
        for (const [service, byRpc] of self.#calls) {
          for (const [rpc, stats] of byRpc) {
            for (const [outcome, count] of stats.outcomes) {
              this.inc({ service, rpc, outcome }, count);
            }
          }
        }
      },
    });
    this.registry.registerMetric(this.#latencyHistogram() as never);
    const gauge = (name: string, help: string, value: () => number) =>
      new client.Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value());
        },
      });
    const counter = (name: string, help: string, value: () => number, labels = {}) =>
      new client.Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(labels, value());
        },
      });
    gauge(
      "rpc_connections_open",
      "Protocol connections open now: TCP and TLS, and the sessions of HTTP connections.",
      () => server.health().connections,
    );
    counter(
      "rpc_connections_accepted_total",
      "Protocol connections accepted since start (TCP, TLS and HTTP sessions).",
      () => server.stats.connections,
    );
    counter(
      "rpc_connections_refused_total",
      "Connections refused since start: over a connection limit, a failed TLS client check, or a refused identity.",
      () => server.stats.refused,
    );
    gauge("rpc_calls_in_flight", "Calls running now.", () => server.inflight);
    for (const [direction, help] of [["received", "read from"], ["sent", "written to"]] as const) {
      new client.Counter({
        name: `rpc_${direction}_bytes_total`,
        help:
          `Bytes ${help} clients, by transport (tcp: the framed protocol on TCP or TLS; http: the HTTP gateway).`,
        labelNames: ["transport"],
        registers,
        collect() {
          this.reset();
          for (const transport of ["tcp", "http"] as const) {
            this.inc({ transport }, self.#bytes[transport][direction]);
          }
        },
      });
    }
    gauge(
      "rpc_http_connections_open",
      "HTTP connections open now.",
      () => options.httpConnections?.() ?? 0,
    );
    counter(
      "rpc_http_connections_accepted_total",
      "HTTP connections accepted since start.",
      () => self.#httpConnections,
    );
    new client.Counter({
      name: "rpc_http_responses_total",
      help: "HTTP responses sent, by status code.",
      labelNames: ["status"],
      registers,
      collect() {
        this.reset();
        for (const [status, count] of self.#httpResponses) this.inc({ status }, count);
      },
    });
    gauge(
      "rpc_installed_generation",
      "Generation of the installed procedures: 1 for the first install, one more per install.",
      () => options.generation?.() ?? 0,
    );
    new client.Gauge({
      name: "rpc_procedure_info",
      help: "One series per installed procedure (value 1), naming its SHA-256.",
      labelNames: ["service", "rpc", "signature", "language", "sha256"],
      registers,
      collect() {
        this.reset();
        for (const spec of server.registry.specs) {
          for (const procedure of spec.procedures) {
            this.set({
              service: spec.name,
              rpc: procedure.rpc,
              signature: `(${formatTypes(procedure.signature.args)})`,
              language: procedure.language,
              sha256: procedure.hash,
            }, 1);
          }
        }
      },
    });
    new client.Gauge({
      name: "rpc_build_info",
      help: "The rpc version serving (value 1).",
      labelNames: ["version"],
      registers,
      collect() {
        this.set({ version: VERSION }, 1);
      },
    });
    const runners = [
      ["sandbox", "sandbox_workers", "Sandbox workers running TypeScript procedures"],
      ["python", "python_interpreters", "Python interpreters"],
    ] as const;
    for (const [key, name, what] of runners) {
      gauge(`rpc_${name}_alive`, `${what} alive now.`, () => options[key]?.().alive ?? 0);
      counter(
        `rpc_${name}_restarted_total`,
        `${what} that stopped while the server ran (crashed, killed for a time limit or a cancel, out of memory) and were replaced.`,
        () => options[key]?.().restarted ?? 0,
      );
    }
  }

  /**
   * `rpc_call_duration_seconds`, from the per-RPC bucket arrays. A histogram
   * of `prom-client` cannot take counts from elsewhere, so this is a metric
   * of its own that the registry formats like one: the same `get()` shape.
   */
  #latencyHistogram() {
    const name = "rpc_call_duration_seconds";
    const help = "Time from a call's arrival to its answer, by service and RPC.";
    return {
      name,
      help,
      type: "histogram",
      aggregator: "sum",
      get: () => {
        const values: {
          metricName: string;
          labels: Record<string, string | number>;
          value: number;
        }[] = [];
        for (const [service, byRpc] of this.#calls) {
          for (const [rpc, stats] of byRpc) {
            let cumulative = 0;
            for (let i = 0; i <= LATENCY_BUCKETS.length; i++) {
              cumulative += stats.buckets[i];
              values.push({
                metricName: `${name}_bucket`,
                labels: {
                  le: i < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[i] : "+Inf",
                  service,
                  rpc,
                },
                value: cumulative,
              });
            }
            values.push({ metricName: `${name}_sum`, labels: { service, rpc }, value: stats.sum });
            values.push({
              metricName: `${name}_count`,
              labels: { service, rpc },
              value: stats.count,
            });
          }
        }
        return { name, help, type: "histogram", values, aggregator: "sum" };
      },
    };
  }
}
