/**
 * What a server serves: services, their tenants, and each RPC's overloads.
 * A registry is immutable once built; a server swaps in a new one to install
 * code, so calls in flight keep the registry (and code) they started with.
 *
 * @module
 */

import { ErrorKind, ErrorReason, RpcError } from "../errors.ts";
import type { CallRequest, ServiceDescription } from "../wire/message.ts";
import {
  argumentKey,
  checkValues,
  formatType,
  formatTypes,
  type Signature,
} from "../types/types.ts";
import { chooseOverload, validSignatures, VALUES } from "../types/overload.ts";

/** Languages procedures may be written in. */
export type Language = "typescript" | "python";

/** Picks the language of a source file from its extension. */
export function languageOf(path: string): Language | undefined {
  if (/\.(ts|mts|js|mjs)$/.test(path)) return "typescript";
  if (/\.py$/.test(path)) return "python";
  return undefined;
}

/** Everything needed to load one overload of one RPC. */
export interface ProcedureSpec {
  service: string;
  rpc: string;
  signature: Signature;
  language: Language;
  /** Absolute path of the source file. */
  path: string;
  /** SHA-256 of the source text, hex. */
  hash: string;
  doc?: string;
  /** Per-call time limit in milliseconds; the server default when absent. */
  timeoutMs?: number;
  /** Run in the server's own isolate, without a sandbox: fastest, for code you trust. */
  trusted?: boolean;
  /** What a sandboxed procedure may touch besides its own source. */
  permissions?: ProcedurePermissions;
}

/** Deno permissions a sandboxed procedure may be granted (init.yaml's `permissions`). */
export interface ProcedurePermissions {
  read?: string[];
  write?: string[];
  net?: string[];
  env?: string[];
  run?: string[];
  sys?: boolean;
}

/** A service as a server holds it. `tenants` absent means any client may call it. */
export interface ServiceSpec {
  name: string;
  tenants?: string[];
  procedures: ProcedureSpec[];
}

/** A loaded procedure, ready to run. */
export interface Procedure {
  readonly spec: ProcedureSpec;
  /** Runs the procedure; resolves to what it returned (not yet checked). */
  invoke(args: unknown[], signal: AbortSignal, onPart?: (value: unknown) => void): Promise<unknown>;
  /**
   * Set by a runner that calls procedures in the server's own thread: calls
   * the procedure at once and returns what it returned when that is a plain
   * value (no promise, no stream), so the call needs no time limit, abort
   * signal or promise; otherwise returns a {@linkcode Pending} that goes on
   * as {@linkcode invoke} would have. Throws what `invoke` would reject with.
   */
  attempt?(args: unknown[]): unknown;
  /**
   * Set by a runner whose {@linkcode invoke} rejects with the signal's
   * reason as soon as the signal is aborted (a sandbox's), so the server need
   * not race the call against its abort.
   */
  readonly settlesOnAbort?: boolean;
}

/**
 * What {@linkcode Procedure.attempt} returns for a procedure that did not
 * finish at once: `settle` waits for its result under `signal`, driving a
 * stream through `onPart`, and settles like {@linkcode Procedure.invoke}.
 */
export class Pending {
  constructor(
    readonly settle: (signal: AbortSignal, onPart?: (value: unknown) => void) => Promise<unknown>,
  ) {}
}

/** Loads procedures of one language. */
export interface Runner {
  load(spec: ProcedureSpec): Promise<Procedure>;
  /** Stops whatever the runner started (interpreters, workers). */
  close(): Promise<void>;
}

/** How long loading one procedure may take by default, in ms (the server's load limit). */
export const DEFAULT_LOAD_TIMEOUT_MS = 30_000;

/** Options of {@linkcode Registry.load}. */
export interface RegistryLoadOptions {
  /**
   * How long one procedure's load may take, in ms, before the whole load
   * fails naming it. Default {@linkcode DEFAULT_LOAD_TIMEOUT_MS}; 0 for no limit.
   */
  loadTimeoutMs?: number;
}

/**
 * Loads one procedure with `runner`, giving up after `timeoutMs` (0: never).
 * A module whose top-level `await` never settles would otherwise hold the
 * install that loads it, and every install queued behind it, forever. The
 * runner's load goes on in the background when it is given up; whatever it
 * settles to later is dropped.
 *
 * @throws {RpcError} `Execution Exception` with reason `load timeout`,
 * naming the procedure and the limit; or the runner's own error.
 */
export async function loadProcedure(
  runner: Runner,
  spec: ProcedureSpec,
  timeoutMs: number,
): Promise<Procedure> {
  const loading = runner.load(spec);
  if (timeoutMs <= 0) return await loading;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const overdue = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new RpcError(
            ErrorKind.ExecutionException,
            `${spec.service}.${spec.rpc}(${
              formatTypes(spec.signature.args)
            }) did not finish loading within ${timeoutMs} ms (the server's load limit): does its module wait at top level for something that never comes?`,
            { reason: ErrorReason.LoadTimeout },
          ),
        ),
      timeoutMs,
    );
  });
  // Given up on, the load may still fail later: that must not be an unhandled rejection.
  loading.catch(() => {});
  try {
    return await Promise.race([loading, overdue]);
  } finally {
    clearTimeout(timer);
  }
}

/** One overload within a registry. */
export interface Overload {
  readonly procedure: Procedure;
  readonly signature: Signature;
  readonly key: string;
}

interface ServiceEntry {
  name: string;
  tenants: ReadonlySet<string> | undefined;
  rpcs: Map<string, Overload[]>;
}

/** A resolved call: which overload runs and its checked arguments. */
export interface ResolvedCall {
  overload: Overload;
  args: unknown[];
}

/** The services one server provides. */
export class Registry {
  #services: Map<string, ServiceEntry>;
  /** Each RPC's overloads' signatures, in the same order, for `chooseOverload`. */
  #signatures = new Map<readonly Overload[], readonly Signature[]>();
  readonly specs: readonly ServiceSpec[];

  private constructor(specs: readonly ServiceSpec[], services: Map<string, ServiceEntry>) {
    this.specs = specs;
    this.#services = services;
    for (const service of services.values()) {
      for (const overloads of service.rpcs.values()) {
        this.#signatures.set(overloads, overloads.map((overload) => overload.signature));
      }
    }
  }

  /** An empty registry. */
  static empty(): Registry {
    return new Registry([], new Map());
  }

  /**
   * Loads every procedure of every service with the runner for its language.
   * Fails as a whole if any procedure fails to load, or takes longer than
   * `loadTimeoutMs` to.
   */
  static async load(
    specs: readonly ServiceSpec[],
    runners: Partial<Record<Language, Runner>>,
    options: RegistryLoadOptions = {},
  ): Promise<Registry> {
    const loadTimeoutMs = options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS;
    const services = new Map<string, ServiceEntry>();
    for (const spec of specs) {
      const rpcs = new Map<string, Overload[]>();
      for (const procedureSpec of spec.procedures) {
        const runner = runners[procedureSpec.language];
        if (!runner) {
          throw new Error(
            `No runner for ${procedureSpec.language} procedures (${procedureSpec.path})`,
          );
        }
        const procedure = await loadProcedure(runner, procedureSpec, loadTimeoutMs);
        const overloads = rpcs.get(procedureSpec.rpc) ?? [];
        const key = argumentKey(procedureSpec.signature.args);
        if (overloads.some((overload) => overload.key === key)) {
          throw new Error(
            `Two overloads of ${spec.name}.${procedureSpec.rpc} take (${
              formatTypes(procedureSpec.signature.args)
            })`,
          );
        }
        overloads.push({ procedure, signature: procedureSpec.signature, key });
        rpcs.set(procedureSpec.rpc, overloads);
      }
      services.set(spec.name, {
        name: spec.name,
        tenants: spec.tenants ? new Set(spec.tenants) : undefined,
        rpcs,
      });
    }
    return new Registry(specs, services);
  }

  /** Whether `client` may call `service` (which must exist). */
  #admits(service: ServiceEntry, client: string | undefined): boolean {
    return !service.tenants || (client !== undefined && service.tenants.has(client));
  }

  /**
   * Checks what {@linkcode resolve} checks first, without looking at the
   * arguments: the service exists, `client` is one of its tenants, and it has
   * the RPC. A server does this before reading large integers exactly.
   *
   * @throws {RpcError} `Service Not Found`, `Client Not Registered` or `RPC Not Found`.
   */
  checkTarget(client: string | undefined, request: CallRequest): void {
    this.target(client, request);
  }

  /**
   * The overloads of the RPC a request names, once the service is found and
   * `client` is checked as one of its tenants (the server's authorize stage).
   *
   * @throws {RpcError} `Service Not Found`, `Client Not Registered` or `RPC Not Found`.
   */
  target(client: string | undefined, request: CallRequest): Overload[] {
    const service = this.#services.get(request.service);
    if (!service) {
      throw new RpcError(
        ErrorKind.ServiceNotFound,
        `This server does not provide service ${request.service}`,
      );
    }
    if (!this.#admits(service, client)) {
      throw new RpcError(
        ErrorKind.ClientNotRegistered,
        `Client ${
          client ?? "(anonymous)"
        } is not registered for service ${service.name} and may not use it`,
      );
    }
    const overloads = service.rpcs.get(request.rpc);
    if (!overloads) {
      throw new RpcError(
        ErrorKind.RpcNotFound,
        `Service ${service.name} has no RPC ${request.rpc}`,
      );
    }
    return overloads;
  }

  /**
   * Finds the overload a request names and checks its arguments. The checks
   * run in this order: service, tenant, RPC, overload, argument values.
   *
   * @throws {RpcError} with the course's kinds.
   */
  resolve(client: string | undefined, request: CallRequest): ResolvedCall {
    return this.resolveAmong(request, this.target(client, request));
  }

  /**
   * Chooses among the `overloads` that {@linkcode target} gave for `request`
   * (that very list: its signatures are looked up by it) and checks the
   * arguments against the chosen one (the server's resolve stage).
   *
   * @throws {RpcError} `Invalid Arguments`.
   */
  resolveAmong(request: CallRequest, overloads: Overload[]): ResolvedCall {
    const signatures = this.#signatures.get(overloads)!;
    const overload = overloads[
      chooseOverload(signatures, request.arguments, VALUES, {
        service: request.service,
        rpc: request.rpc,
        argumentTypes: request["argument-types"],
        returnTypes: request["return-types"],
      })
    ];
    try {
      return {
        overload,
        args: checkValues(overload.signature.args, request.arguments, "argument"),
      };
    } catch (error) {
      if (error instanceof RpcError) {
        throw new RpcError(
          error.kind,
          `${error.message}. ${validSignatures(request.rpc, signatures)}`,
        );
      }
      throw error;
    }
  }

  /** The services `client` may call, for introspection. */
  describe(client: string | undefined): ServiceDescription[] {
    const out: ServiceDescription[] = [];
    for (const service of this.#services.values()) {
      if (!this.#admits(service, client)) continue;
      const rpcs = [];
      for (const [name, overloads] of service.rpcs) {
        for (const { signature, procedure } of overloads) {
          rpcs.push({
            name,
            args: signature.args.map(formatType),
            returns: signature.returns.map(formatType),
            ...(signature.yields ? { yields: signature.yields.map(formatType) } : {}),
            ...(procedure.spec.doc ? { doc: procedure.spec.doc } : {}),
          });
        }
      }
      out.push({ name: service.name, rpcs });
    }
    return out;
  }

  /** Every loaded procedure. */
  *procedures(): Iterable<Procedure> {
    for (const service of this.#services.values()) {
      for (const overloads of service.rpcs.values()) {
        for (const overload of overloads) yield overload.procedure;
      }
    }
  }
}

/**
 * Turns what a procedure returned into the list of return values its
 * signature declares: nothing for no return types, the value itself for one,
 * and a list (or tuple) of that length for several. Then checks each value.
 *
 * @throws {RpcError} `Execution Exception` naming the mismatch.
 */
export function returnValues(spec: ProcedureSpec, result: unknown): unknown[] {
  const types = spec.signature.returns;
  let values: unknown[];
  if (types.length === 0) {
    values = [];
  } else if (types.length === 1) {
    values = [result];
  } else if (Array.isArray(result) && result.length === types.length) {
    values = result;
  } else {
    throw new RpcError(
      ErrorKind.ExecutionException,
      `${spec.rpc} must return a list of ${types.length} values (${formatTypes(types)})`,
    );
  }
  try {
    return checkValues(types, values, "return value");
  } catch (error) {
    if (error instanceof RpcError) {
      throw new RpcError(
        ErrorKind.ExecutionException,
        `${spec.rpc} returned a value that does not match its signature: ${error.message}`,
      );
    }
    throw error;
  }
}

/**
 * Turns one value a streaming procedure yielded into the list of values its
 * `yields` declares (the value itself for one type, a list for several),
 * and checks them.
 *
 * @throws {RpcError} `Execution Exception` naming the mismatch.
 */
export function partValues(spec: ProcedureSpec, value: unknown): unknown[] {
  const types = spec.signature.yields ?? [];
  const values = types.length === 1 ? [value] : value;
  if (!Array.isArray(values) || values.length !== types.length) {
    throw new RpcError(
      ErrorKind.ExecutionException,
      `${spec.rpc} must yield ${
        types.length === 1 ? "a value" : `lists of ${types.length} values`
      } (${formatTypes(types)})`,
    );
  }
  try {
    return checkValues(types, values, "yielded value");
  } catch (error) {
    if (error instanceof RpcError) {
      throw new RpcError(
        ErrorKind.ExecutionException,
        `${spec.rpc} yielded a value that does not match its signature: ${error.message}`,
      );
    }
    throw error;
  }
}

/** Whether a value is an async iterator, as an async generator function returns. */
export function isAsyncIterator(value: unknown): value is AsyncIterator<unknown, unknown> {
  return typeof value === "object" && value !== null &&
    typeof (value as AsyncIterator<unknown>).next === "function" &&
    Symbol.asyncIterator in value;
}

/**
 * Drives what a procedure returned: a plain value is the result; an async
 * iterator (an async generator) is run to its end, each yielded value going
 * to `onPart` and its return value being the result. When `signal` aborts,
 * the generator is stopped with `return()`.
 */
export async function settleResult(
  result: unknown,
  signal: AbortSignal,
  onPart: ((value: unknown) => void) | undefined,
): Promise<unknown> {
  if (!isAsyncIterator(result)) return await result;
  if (!onPart) {
    await result.return?.();
    throw new RpcError(
      ErrorKind.ExecutionException,
      "The procedure streams results, but its signature declares no yields",
    );
  }
  const stop = () => void result.return?.(undefined)?.catch(() => {});
  signal.addEventListener("abort", stop, { once: true });
  try {
    for (;;) {
      const step = await result.next();
      if (step.done) return step.value;
      if (signal.aborted) return undefined;
      onPart(step.value);
    }
  } catch (error) {
    stop();
    throw error;
  } finally {
    signal.removeEventListener("abort", stop);
  }
}
