/**
 * The client side of a deploy, over one open connection: ask the server for
 * its state, plan against it (plan.ts), and send one `install` with the
 * complete desired state plus only the sources the server lacks. Every
 * reply is validated (messages.ts) before it is used.
 *
 * @module
 */

import type { RequestOptions, RpcClient } from "../client/client.ts";
import {
  type InstallReport,
  parseInstallReport,
  parseStateReport,
  type StateReport,
} from "./messages.ts";
import { type Desired, type Plan, planInstall, planIsEmpty, sourcesToSend } from "./plan.ts";

/** Options of {@linkcode deploy}; `timeoutMs` and `signal` apply to each request. */
export interface DeployOptions extends RequestOptions {
  /** Plan only: send no install. */
  dryRun?: boolean;
  /** Told the plan as soon as it is made, before anything is sent. */
  onPlan?: (plan: Plan, current: StateReport) => void;
  /** Told just before the install is sent, with the number of sources it carries. */
  onInstall?: (sources: number) => void;
}

/** What {@linkcode deploy} did on one server. */
export interface DeployReport {
  /** What the server held before. */
  current: StateReport;
  /** What the desired state changes there. */
  plan: Plan;
  /** The server's report of the install; absent when nothing changed or on a dry run. */
  install?: InstallReport;
}

/**
 * Asks a server for its installed state (the public `state` admin op).
 *
 * @throws {RpcError} the server's refusal, `Timeout`, `Cancelled`, or
 * `Malformed Frame` when the reply is not a state report.
 */
export async function fetchState(
  client: RpcClient,
  options: RequestOptions = {},
): Promise<StateReport> {
  return parseStateReport(await client.admin({ op: "state" }, options));
}

/**
 * Brings the server behind `client` to the `desired` state. The install
 * names the generation it was planned against, so that the server refuses
 * it (`Conflict`) if another install committed in between. Installing needs
 * a client connected with the admin token.
 *
 * @throws {RpcError} the server's refusal (`Unauthorized`, `Conflict`,
 * `Execution Exception` for code that does not load), `Timeout`,
 * `Cancelled`, or `Malformed Frame` for a reply that is not a report.
 */
export async function deploy(
  client: RpcClient,
  desired: Desired,
  options: DeployOptions = {},
): Promise<DeployReport> {
  const request: RequestOptions = {
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const current = await fetchState(client, request);
  const plan = planInstall(current, desired.state);
  options.onPlan?.(plan, current);
  if (planIsEmpty(plan) || options.dryRun) return { current, plan };
  const sources = sourcesToSend(plan, desired.sources);
  options.onInstall?.(plan.missing.length);
  const reply = await client.admin({
    op: "install",
    generation: current.generation,
    state: desired.state,
    sources,
  }, request);
  return { current, plan, install: parseInstallReport(reply) };
}
