/**
 * `rpc server --broker`: the server connects out to a NATS broker and
 * takes sessions through it (see `core/transport/nats/`), each served by
 * the server exactly like a TCP connection. When the broker cannot be
 * reached at start, it tries again every second until it can; when the
 * connection drops, the NATS client reconnects by itself and the server
 * serves again, with what it has installed.
 *
 * @module
 */

import type { Logger } from "../core/log.ts";
import type { RpcServer } from "../core/server/server.ts";
import type { Broker, BrokerListener } from "../core/transport/nats/mod.ts";
import { VERSION } from "../core/version.ts";

/** Options of {@linkcode serveThroughBroker}. */
export interface ServeThroughBrokerOptions {
  server: RpcServer;
  /** `nats://[user:password@]host:port`. */
  url: string;
  /** A NATS `.creds` or nkey seed file. */
  creds?: string;
  logger: Logger;
  /** How often to announce the server, ms. */
  heartbeatMs?: number;
}

/** Sessions through a broker, until {@linkcode BrokerServing.stopAccepting} and {@linkcode BrokerServing.close}. */
export interface BrokerServing {
  /** Takes no new sessions (the server drains those it has). */
  stopAccepting(): void;
  /** Closes the connection to the broker. */
  close(): Promise<void>;
}

/** Serves `server` through the broker; resolves once the first connect is tried. */
export async function serveThroughBroker(
  options: ServeThroughBrokerOptions,
): Promise<BrokerServing> {
  const nats = await import("../core/transport/nats/mod.ts");
  const { server, logger } = options;
  const url = nats.redactBrokerUrl(options.url);
  let stopped = false;
  let broker: Broker | undefined;
  let listener: BrokerListener | undefined;
  const ready = Promise.withResolvers<void>();

  const serve = (connected: Broker) => {
    broker = connected;
    listener = connected.listen({
      name: server.name,
      services: () => server.registry.specs.map((spec) => spec.name),
      version: VERSION,
      ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
    });
    logger.info(
      "listen",
      `server ${server.name} serving through broker ${url} (subjects ${
        nats.serverSubject(server.name)
      } and ${nats.serviceSubject("SERVICE")} of each service it serves)`,
      { broker: url, version: VERSION },
    );
    (async () => {
      for (;;) {
        const session = await listener!.accept();
        if (!session) return;
        server.serveConnection(session);
      }
    })();
  };

  (async () => {
    for (let failures = 0; !stopped; failures++) {
      try {
        const connected = await nats.Broker.connect({
          url: options.url,
          ...(options.creds ? { creds: options.creds } : {}),
          name: `rpc server ${server.name}`,
          onStatus: (event, detail) => {
            if (event === "disconnected") {
              logger.warn("broker", `${detail}: sessions through it are closed; reconnecting`, {
                broker: url,
              });
            } else logger.info("broker", detail, { broker: url });
          },
        });
        if (stopped) {
          await connected.close();
          return;
        }
        serve(connected);
        ready.resolve();
        return;
      } catch (error) {
        // Logged at failures 0, 1, 3, 7, ...: a broker down for long does not flood the log.
        if (((failures + 1) & failures) === 0) {
          logger.error(
            "broker",
            `${(error as Error).message}; trying again every second`,
            { broker: url, failures: failures + 1 },
          );
        }
        ready.resolve();
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  })();
  await ready.promise;
  return {
    stopAccepting() {
      stopped = true;
      listener?.close();
    },
    async close() {
      stopped = true;
      listener?.close();
      await broker?.close();
    },
  };
}
