/**
 * NATS as a transport: a server connects out to a NATS broker and takes
 * sessions through it, a client opens a session to a server by name or to
 * any provider of a service. A session is a virtual {@linkcode Connection}
 * (a byte stream), so the server serves it exactly like a TCP connection:
 * the same handshake, secret proofs, tenants, limits, streaming, cancel
 * and deadlines. Only the bytes travel differently.
 *
 * **Subjects.** (`NAME` is a server's name, `SERVICE` a service's.)
 *
 * - `rpc.open.server.NAME`: opens a session with that server;
 * - `rpc.open.service.SERVICE`: opens a session with one provider of the
 *   service, in the queue group `rpc.service.SERVICE`, so the broker picks
 *   one of the providers subscribed;
 * - `rpc.discover`: every server answers with its {@linkcode Announcement};
 * - `rpc.heartbeat.NAME`: the server publishes its announcement every few
 *   seconds ({@linkcode HEARTBEAT_MS}).
 *
 * An open message carries a reply subject: the client's inbox for the
 * session. The server answers there with `accept` (its name and services)
 * whose own reply subject is the server's inbox for the session; from then
 * on each side publishes to the other's inbox. Every message starts with a
 * kind byte and a 32-bit sequence number: a gap (the broker dropped a
 * message) closes the session rather than corrupt the stream.
 *
 * **Size.** A write larger than the broker's `max_payload` is cut into
 * chunks that fit: the byte stream does not care where messages end, and
 * the frame limit (`maxFrameBytes`) holds as over TCP.
 *
 * **Flow control.** A side has at most {@linkcode NATS_WINDOW} bytes sent
 * and not yet read by its peer; the reader grants more as it reads
 * (`credit`). A slow reader slows its writer, as a socket would, and holds
 * no more than a window in memory.
 *
 * **Liveness.** A side that hears nothing from its peer for
 * {@linkcode PROBE_IDLE_MS} asks it (`ping`); without an answer within
 * {@linkcode PROBE_TIMEOUT_MS} the peer is taken to be gone (its process
 * died without closing: the broker does not tell) and the session fails
 * with `Unavailable`. A server frees a dead client's session the same way.
 *
 * **Broker lost.** Sessions open over a connection to the broker fail at
 * once (`Unavailable`) when it drops; the NATS client reconnects by itself
 * and resubscribes, so a server serves again once the broker is back.
 *
 * **Files.**
 *
 * - `mod.ts` (this one): the overview and the public API;
 * - `broker.ts`: {@linkcode Broker}, a connection to the broker shared by
 *   every session through it: opens, accepts, routing, probes, discovery;
 * - `connect.ts`: connecting to the broker (URL, credentials, reconnects);
 * - `broker_url.ts`: broker URLs taken apart and shown with the password
 *   hidden (loads no NATS client, for `rpc server --check`);
 * - `session.ts`: {@linkcode NatsSession}, one end of a session as a
 *   connection: flow control, sequence checks, liveness;
 * - `packet.ts`: the message format (kind byte, sequence number, body);
 * - `listener.ts`: {@linkcode BrokerListener}, a server's side: its
 *   subjects, heartbeat and answers to discovery;
 * - `subjects.ts`: subject names and the {@linkcode Announcement}.
 *
 * @module
 */

export { parseBrokerUrl, redactBrokerUrl } from "./broker_url.ts";
export { Broker, type BrokerTarget, type OpenOptions } from "./broker.ts";
export type { BrokerOptions } from "./connect.ts";
export { BrokerListener, type BrokerListenOptions } from "./listener.ts";
export { NATS_WINDOW, NatsSession, PROBE_IDLE_MS, PROBE_TIMEOUT_MS } from "./session.ts";
export {
  type Announcement,
  DISCOVER_SUBJECT,
  HEARTBEAT_MS,
  heartbeatSubject,
  readAnnouncement,
  serverSubject,
  serviceQueue,
  serviceSubject,
} from "./subjects.ts";
