/**
 * The client side: everything that opens connections to servers and calls.
 *
 * - `client.ts`: one connection to one server, calls overlapping on it ({@linkcode RpcClient});
 * - `requests.ts`: the requests in flight on one connection, matched to replies by serial, their
 *   time limits sharing one deadline per batch;
 * - `connect.ts`: dialing a server and the handshake over any connection ({@linkcode connect},
 *   {@linkcode connectOver});
 * - `failover.ts`: calls addressed to a service, moving between its providers;
 * - `balance.ts`: which provider takes each call (`first`, `round-robin`, `p2c`);
 * - `fanout.ts`: one request to every provider at once, one answer per server;
 * - `course_client.ts`: a client of the course's one-shot form;
 * - `bench.ts`: the load generator behind `rpc bench`;
 * - `local.ts`: the loopback address map `rpc up` gives a whole cluster file;
 * - `replies.ts`: the health reply and the service list, validated, never cast.
 *
 * @module
 */

export * from "./client.ts";
export * from "./connect.ts";
export * from "./failover.ts";
export * from "./balance.ts";
export * from "./fanout.ts";
export * from "./course_client.ts";
export * from "./bench.ts";
export * from "./local.ts";
export * from "./replies.ts";
