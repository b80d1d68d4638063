/**
 * The transports the conformance suite runs over, one line each in
 * {@linkcode TRANSPORTS}. Each serves an in-process {@linkcode RpcServer}
 * with `serve(listener)` over real sockets (TCP, TLS with certificates made
 * by openssl, a unix socket in a temporary directory, sessions through a
 * real nats-server on loopback) or in memory, and
 * opens clients to it the way an embedding would.
 */

import { join } from "node:path";
import type { RpcClient } from "../../core/client/client.ts";
import { connect, connectOver } from "../../core/client/connect.ts";
import {
  type Listener,
  listenTcp,
  listenTls,
  listenUnix,
  MemoryListener,
} from "../../core/transport/mod.ts";
import { Broker } from "../../core/transport/nats/mod.ts";
import { TestPki } from "../pki.ts";
import { startNats } from "../nats_helpers.ts";

/** A listener, and how a client reaches it. */
export interface Served {
  listener: Listener;
  connect(): Promise<RpcClient>;
  /** Removes what the transport made (certificates, the socket's directory). */
  cleanup(): Promise<void>;
}

/** One transport of the suite. */
export interface TransportCase {
  name: string;
  /** Whether the concurrency test runs the full count here (see the suite's doc). */
  fullConcurrency: boolean;
  listen(): Promise<Served>;
}

const loopback = { hostname: "127.0.0.1", port: 0 };
const nothing = () => Promise.resolve();
const clientOptions = { connectTimeoutMs: 30_000 };

function memory(): Promise<Served> {
  const listener = new MemoryListener("conformance");
  return Promise.resolve({
    listener,
    connect: () => connectOver(listener.connect(), clientOptions),
    cleanup: nothing,
  });
}

function tcp(): Promise<Served> {
  const listener = listenTcp(loopback);
  const { port } = listener.address;
  return Promise.resolve({
    listener,
    connect: () => connect({ hostname: "127.0.0.1", port }, clientOptions),
    cleanup: nothing,
  });
}

async function tls(): Promise<Served> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-conformance-tls-" });
  const pki = await TestPki.create(dir);
  const listener = await listenTls(loopback, {
    cert: await pki.read("server.pem"),
    key: await pki.read("server.key"),
  });
  const { port } = listener.address;
  const ca = await pki.read("ca.pem");
  return {
    listener,
    connect: () => connect({ hostname: "127.0.0.1", port }, { ...clientOptions, tls: { ca } }),
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
}

async function unix(): Promise<Served> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-conformance-unix-" });
  const path = join(dir, "rpc.sock");
  const listener = await listenUnix(path);
  return {
    listener,
    connect: () => connect(`unix:${path}`, clientOptions),
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
}

/** Sessions through a nats-server of its own: the server and every client each connect to it. */
async function nats(): Promise<Served> {
  const broker = await startNats();
  const serving = await Broker.connect({ url: broker.url });
  const listener = serving.listen({
    name: "conformance",
    services: () => ["conf"],
    version: "test",
  });
  const clients: Broker[] = [];
  return {
    listener,
    async connect() {
      const through = await Broker.connect({ url: broker.url });
      clients.push(through);
      return connectOver(await through.open({ server: "conformance" }), clientOptions);
    },
    async cleanup() {
      await Promise.all(clients.map((client) => client.close()));
      await serving.close();
      await broker.stop();
    },
  };
}

/** Every transport; a new one is one line here. */
export const TRANSPORTS: readonly TransportCase[] = [
  { name: "memory", fullConcurrency: true, listen: memory },
  { name: "tcp", fullConcurrency: true, listen: tcp },
  { name: "tls", fullConcurrency: false, listen: tls },
  { name: "unix", fullConcurrency: false, listen: unix },
  { name: "nats", fullConcurrency: false, listen: nats },
];
