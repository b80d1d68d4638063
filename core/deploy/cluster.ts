/**
 * Reads init.yaml into a checked cluster model. Every problem is reported
 * with file:line:column, all at once.
 *
 * The course's format: `network` (`servers` and `clients` as lists of
 * single-key maps with `ip` and `port`), `service` (each with `providers`,
 * `tenants`, `rpcs`), and `rpc` (each with `args`, `returns`, `src`). Maps
 * are accepted wherever the course writes lists of single-key maps, and `rpc`
 * may also map a service name to that service's RPC list, where one name may
 * appear with several signatures (overloads).
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type YAMLMap } from "yaml";
import { codeOf, ConfigError, type ConfigProblem, ErrorKind, RpcError } from "../errors.ts";
import { nameProblem } from "../wire/names.ts";
import { type Language, languageOf, type ProcedurePermissions } from "../server/registry.ts";
import {
  argumentKey,
  formatTypes,
  parseType,
  type RpcType,
  type Signature,
} from "../types/types.ts";

/** A position in the file. */
export interface Position {
  line: number;
  column: number;
}

/** A server of `network.servers`. */
export interface ServerEntry {
  name: string;
  /** Its ip or host name; `""` for a server reached only through the broker (no ip in the file). */
  host: string;
  /** Its port; 0 for a server reached only through the broker. */
  port: number;
  position: Position;
}

/** A client of `network.clients`. */
export interface ClientEntry {
  name: string;
  ip?: string;
  port?: number;
  /** The client's secret, written in the file (prefer `secret-file`). */
  secret?: string;
  /** A file holding the client's secret, absolute. */
  secretFile?: string;
  position: Position;
}

/** One signature of one RPC, with its source. */
export interface RpcEntry {
  name: string;
  signature: Signature;
  /** `src` as written. */
  source: string;
  /** `src` made absolute against the file's directory. */
  path: string;
  language: Language;
  doc?: string;
  timeoutMs?: number;
  idempotent: boolean;
  /** Runs in the server's own isolate, unsandboxed. */
  trusted?: boolean;
  /** What a sandboxed procedure may touch. */
  permissions?: ProcedurePermissions;
  position: Position;
  sourcePosition: Position;
}

/** A service with its RPCs resolved to their overloads. */
export interface ServiceEntry {
  name: string;
  providers: string[];
  /** Absent when the file gives no `tenants`: any client may call. */
  tenants?: string[];
  rpcs: RpcEntry[];
  position: Position;
}

/** A checked init.yaml. */
export interface Cluster {
  file: string;
  servers: Map<string, ServerEntry>;
  clients: Map<string, ClientEntry>;
  services: Map<string, ServiceEntry>;
  /**
   * `network.broker`: the NATS broker the fleet meets at
   * (`nats://host:port`), if any. Servers may then omit `ip` and `port`.
   */
  broker?: string;
}

const RPC_FIELDS = new Set([
  "args",
  "returns",
  "yields",
  "src",
  "doc",
  "timeout",
  "idempotent",
  "trusted",
  "permissions",
]);
const PERMISSION_LISTS = ["read", "write", "net", "env", "run"] as const;
const TOP_LEVEL = new Set(["network", "service", "services", "rpc"]);

/** Reads and checks an init.yaml file. */
export async function loadCluster(path: string): Promise<Cluster> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError([{
      file: path,
      line: 1,
      column: 1,
      message: `Cannot read file: ${(error as Error).message}`,
    }]);
  }
  return parseCluster(text, path);
}

/**
 * Parses and checks init.yaml text. `file` names it in problems and is the
 * base for relative `src` paths.
 *
 * @throws {ConfigError} listing every problem found.
 */
export function parseCluster(text: string, file: string): Cluster {
  return new ClusterParser(text, file).parse();
}

interface Named {
  name: string;
  value: unknown;
  position: Position;
}

interface RawRpc {
  entry: RpcEntry;
  service?: string;
}

class ClusterParser {
  #lines = new LineCounter();
  #problems: ConfigProblem[] = [];
  /** RPCs that are declared but were rejected for a problem already reported. */
  #rejected: { name: string; service?: string }[] = [];
  #base: string;

  constructor(readonly text: string, readonly file: string) {
    this.#base = dirname(resolve(file));
  }

  parse(): Cluster {
    const doc = parseDocument(this.text, {
      lineCounter: this.#lines,
      prettyErrors: false,
      uniqueKeys: true,
    });
    for (const error of doc.errors) {
      const { line, col } = this.#lines.linePos(error.pos[0]);
      let message = error.message.split("\n")[0];
      if (/\[[^\]]*List\[/.test(this.text.split("\n")[line - 1] ?? "")) {
        message +=
          ` (hint: inside [...] quote list types, as in [int, "List[int]"], or write one type per line)`;
      }
      this.#problems.push({ file: this.file, line, column: col, message });
    }
    if (this.#problems.length > 0) throw new ConfigError(this.#problems);
    const cluster: Cluster = {
      file: this.file,
      servers: new Map(),
      clients: new Map(),
      services: new Map(),
    };
    const root = doc.contents;
    if (!isMap(root)) {
      this.#problem(root, "init.yaml must be a map with network, service and rpc sections");
      throw new ConfigError(this.#problems);
    }
    for (const pair of root.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : "";
      if (!TOP_LEVEL.has(key)) {
        this.#problem(
          pair.key as Node,
          `unknown section "${key}" (expected network, service or rpc)`,
        );
      }
    }
    const network = root.get("network", true) as Node | undefined;
    if (network === undefined) {
      this.#problem(root, "missing section network");
    } else if (!isMap(network)) {
      this.#problem(network, "network must be a map with servers and clients");
    } else {
      const broker = network.get("broker");
      if (broker !== undefined) {
        if (
          typeof broker !== "string" ||
          !/^(nats|tls):\/\/[^\s,]+(,(nats|tls):\/\/[^\s,]+)*$/.test(broker)
        ) {
          this.#problem(
            network.get("broker", true) as Node,
            "network.broker must be a URL like nats://host:4222",
          );
        } else if (/\/\/[^/@]*:[^/@]*@/.test(broker)) {
          this.#problem(
            network.get("broker", true) as Node,
            "network.broker must not hold a password: give it with --broker-creds or RPC_BROKER",
          );
        } else cluster.broker = broker;
      }
      this.#servers(network, cluster);
      this.#clients(network, cluster);
    }
    const rpcs = this.#rpcs(root.get("rpc", true) as Node | undefined);
    const servicesNode = (root.get("service", true) ?? root.get("services", true)) as
      | Node
      | undefined;
    if (servicesNode === undefined) {
      this.#problem(root, "missing section service");
    } else {
      for (const item of this.#entries(servicesNode, "service")) this.#service(item, cluster, rpcs);
    }
    for (const { entry, service } of rpcs) {
      if (service !== undefined && !cluster.services.has(service)) {
        this.#at(entry.position, `rpc ${entry.name} is declared for unknown service "${service}"`);
      }
    }
    if (this.#problems.length > 0) throw new ConfigError(this.#problems);
    return cluster;
  }

  #position(node: unknown): Position {
    const range = (node as Node | undefined)?.range;
    if (!range) return { line: 1, column: 1 };
    const { line, col } = this.#lines.linePos(range[0]);
    return { line, column: col };
  }

  #problem(node: unknown, message: string): void {
    this.#at(this.#position(node), message);
  }

  #at(position: Position, message: string): void {
    this.#problems.push({ file: this.file, line: position.line, column: position.column, message });
  }

  /** Items of a map, or of a list of single-key maps, as (name, value). */
  #entries(node: Node, what: string): Named[] {
    const out: Named[] = [];
    const fromMap = (map: YAMLMap) => {
      for (const pair of map.items) {
        const name = isScalar(pair.key) ? String(pair.key.value) : undefined;
        if (!name) {
          this.#problem(pair.key, `${what} name must be a plain string`);
          continue;
        }
        // Clients, services and RPCs are named on the wire, where names are bounded.
        const problem = what === "server" ? undefined : nameProblem(name);
        if (problem) this.#problem(pair.key, `${what} ${problem}`);
        out.push({ name, value: pair.value, position: this.#position(pair.key) });
      }
    };
    if (isMap(node)) {
      fromMap(node);
    } else if (isSeq(node)) {
      for (const item of node.items) {
        if (isMap(item) && item.items.length === 1) fromMap(item);
        else this.#problem(item, `each ${what} must be a single-key map like "- name: {...}"`);
      }
    } else if (!(isScalar(node) && node.value === null)) {
      this.#problem(node, `${what} section must be a list or a map`);
    }
    return out;
  }

  #names(node: unknown, field: string): string[] | undefined {
    if (node === undefined || (isScalar(node) && node.value === null)) return undefined;
    if (!isSeq(node)) {
      this.#problem(node, `${field} must be a list of names`);
      return undefined;
    }
    const names: string[] = [];
    for (const item of node.items) {
      if (isScalar(item) && (typeof item.value === "string" || typeof item.value === "number")) {
        names.push(String(item.value));
      } else {
        this.#problem(item, `${field} must hold names`);
      }
    }
    return names;
  }

  #servers(network: YAMLMap, cluster: Cluster): void {
    const node = network.get("servers", true) as Node | undefined;
    if (node === undefined) return this.#problem(network, "network needs servers");
    for (const { name, value, position } of this.#entries(node, "server")) {
      if (cluster.servers.has(name)) {
        this.#at(position, `server ${name} is declared twice`);
        continue;
      }
      const bare = value === null || value === undefined ||
        (isScalar(value) && (value.value === null || value.value === undefined));
      if (cluster.broker !== undefined && (bare || (isMap(value) && value.items.length === 0))) {
        // Reached by name through the broker: no address of its own.
        cluster.servers.set(name, { name, host: "", port: 0, position });
        continue;
      }
      if (!isMap(value)) {
        this.#at(position, `server ${name} needs ip and port (or a network.broker to reach it by)`);
        continue;
      }
      const host = value.get("ip") ?? value.get("host");
      const port = value.get("port");
      if (typeof host !== "string" || host === "") {
        this.#at(position, `server ${name} needs an ip`);
        continue;
      }
      if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
        this.#problem(
          value.get("port", true) ?? value,
          `server ${name} needs a port from 1 to 65535`,
        );
        continue;
      }
      cluster.servers.set(name, { name, host, port, position });
    }
  }

  #clients(network: YAMLMap, cluster: Cluster): void {
    const node = network.get("clients", true) as Node | undefined;
    if (node === undefined) return;
    for (const { name, value, position } of this.#entries(node, "client")) {
      if (cluster.clients.has(name)) {
        this.#at(position, `client ${name} is declared twice`);
        continue;
      }
      const entry: ClientEntry = { name, position };
      if (isMap(value)) {
        const ip = value.get("ip");
        const port = value.get("port");
        if (ip !== undefined && typeof ip !== "string") {
          this.#problem(value.get("ip", true), `client ${name}: ip must be a string`);
        } else if (ip) entry.ip = ip;
        if (typeof port === "number") entry.port = port;
        const secret = value.get("secret");
        const secretFile = value.get("secret-file") ?? value.get("secret_file");
        if (secret !== undefined && (typeof secret !== "string" || secret === "")) {
          this.#problem(
            value.get("secret", true),
            `client ${name}: secret must be a non-empty string`,
          );
        } else if (secret) entry.secret = secret;
        if (secretFile !== undefined && (typeof secretFile !== "string" || secretFile === "")) {
          this.#problem(
            value.get("secret-file", true),
            `client ${name}: secret-file must be a path`,
          );
        } else if (secretFile) entry.secretFile = resolve(this.#base, secretFile);
        if (entry.secret && entry.secretFile) {
          this.#at(position, `client ${name}: give secret or secret-file, not both`);
        }
      } else if (!(isScalar(value) && value.value === null) && value !== null) {
        this.#at(position, `client ${name} must be a map with ip and port`);
      }
      cluster.clients.set(name, entry);
    }
  }

  #rpcs(node: Node | undefined): RawRpc[] {
    const out: RawRpc[] = [];
    if (node === undefined) return out;
    if (isMap(node)) {
      for (const { name, value, position } of this.#entries(node, "rpc")) {
        if (isSeq(value)) {
          for (const item of this.#entries(value as Node, "rpc")) {
            const entry = this.#rpc(item);
            if (entry) out.push({ entry, service: name });
            else this.#rejected.push({ name: item.name, service: name });
          }
        } else {
          const entry = this.#rpc({ name, value, position });
          if (entry) out.push({ entry });
          else this.#rejected.push({ name });
        }
      }
    } else {
      for (const item of this.#entries(node, "rpc")) {
        const entry = this.#rpc(item);
        if (entry) out.push({ entry });
        else this.#rejected.push({ name: item.name });
      }
    }
    return out;
  }

  #rpc({ name, value, position }: Named): RpcEntry | undefined {
    if (!isMap(value)) {
      this.#at(position, `rpc ${name} needs args, returns and src`);
      return undefined;
    }
    let ok = true;
    for (const pair of value.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : "";
      if (!RPC_FIELDS.has(key)) {
        this.#problem(
          pair.key,
          `rpc ${name}: unknown field "${key}" (expected ${[...RPC_FIELDS].join(", ")})`,
        );
        ok = false;
      }
    }
    const args = this.#types(value.get("args", true), `rpc ${name}: args`);
    const returns = this.#types(value.get("returns", true), `rpc ${name}: returns`);
    const yieldsNode = value.get("yields", true);
    const yields = yieldsNode === undefined
      ? undefined
      : this.#types(yieldsNode, `rpc ${name}: yields`);
    if (yields !== undefined && yields.length === 0) {
      this.#problem(yieldsNode, `rpc ${name}: yields must name the type of each partial result`);
      ok = false;
    }
    const srcNode = value.get("src", true) as Node | undefined;
    const source = isScalar(srcNode) ? srcNode.value : undefined;
    if (typeof source !== "string" || source === "") {
      this.#at(
        srcNode ? this.#position(srcNode) : position,
        `rpc ${name} needs src, the path of its source file`,
      );
      return undefined;
    }
    const language = languageOf(source);
    if (!language) {
      this.#problem(srcNode, `rpc ${name}: src must be a .ts, .js or .py file`);
      ok = false;
    }
    const doc = value.get("doc");
    const timeout = value.get("timeout");
    if (timeout !== undefined && (typeof timeout !== "number" || !(timeout > 0))) {
      this.#problem(
        value.get("timeout", true),
        `rpc ${name}: timeout must be a positive number of seconds`,
      );
      ok = false;
    }
    const idempotent = value.get("idempotent");
    if (idempotent !== undefined && typeof idempotent !== "boolean") {
      this.#problem(value.get("idempotent", true), `rpc ${name}: idempotent must be true or false`);
      ok = false;
    }
    const trusted = value.get("trusted");
    if (trusted !== undefined && typeof trusted !== "boolean") {
      this.#problem(value.get("trusted", true), `rpc ${name}: trusted must be true or false`);
      ok = false;
    }
    const permissions = this.#permissions(value.get("permissions", true), name);
    if (permissions === null) ok = false;
    if (!args || !returns || !ok || !language || (yieldsNode !== undefined && !yields)) {
      return undefined;
    }
    return {
      name,
      signature: { args, returns, ...(yields ? { yields } : {}) },
      source,
      path: resolve(this.#base, source),
      language,
      ...(typeof doc === "string" ? { doc } : {}),
      ...(typeof timeout === "number" ? { timeoutMs: Math.round(timeout * 1000) } : {}),
      idempotent: idempotent === true,
      ...(trusted === true ? { trusted: true } : {}),
      ...(permissions ? { permissions } : {}),
      position,
      sourcePosition: this.#position(srcNode),
    };
  }

  /** Reads `permissions`; `null` after reporting a problem. */
  #permissions(node: unknown, name: string): ProcedurePermissions | undefined | null {
    if (node === undefined || (isScalar(node) && node.value === null)) return undefined;
    if (!isMap(node)) {
      this.#problem(
        node,
        `rpc ${name}: permissions must be a map like {read: [/data], net: [api.example.com]}`,
      );
      return null;
    }
    const out: ProcedurePermissions = {};
    let ok = true;
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : "";
      const item = pair.value as Node | null;
      if (key === "sys") {
        if (isScalar(item) && typeof item.value === "boolean") out.sys = item.value;
        else {
          this.#problem(item ?? pair.key, `rpc ${name}: permissions.sys must be true or false`);
          ok = false;
        }
        continue;
      }
      if (!(PERMISSION_LISTS as readonly string[]).includes(key)) {
        this.#problem(
          pair.key,
          `rpc ${name}: unknown permission "${key}" (expected ${
            PERMISSION_LISTS.join(", ")
          } or sys)`,
        );
        ok = false;
        continue;
      }
      const names = this.#names(item ?? undefined, `rpc ${name}: permissions.${key}`);
      if (names) out[key as typeof PERMISSION_LISTS[number]] = names;
      else ok = false;
    }
    return ok ? out : null;
  }

  #types(node: unknown, field: string): RpcType[] | undefined {
    if (node === undefined || (isScalar(node) && node.value === null)) return [];
    if (!isSeq(node)) {
      this.#problem(node, `${field} must be a list of types`);
      return undefined;
    }
    const types: RpcType[] = [];
    let ok = true;
    for (const item of node.items) {
      try {
        if (!isScalar(item) || typeof item.value !== "string") {
          throw new SyntaxError("expected a type name");
        }
        types.push(parseType(item.value));
      } catch (error) {
        this.#problem(item, `${field}: ${(error as Error).message}`);
        ok = false;
      }
    }
    return ok ? types : undefined;
  }

  #service({ name, value, position }: Named, cluster: Cluster, rpcs: RawRpc[]): void {
    if (cluster.services.has(name)) {
      this.#at(position, `service ${name} is declared twice`);
      return;
    }
    if (!isMap(value)) {
      this.#at(position, `service ${name} needs providers, tenants and rpcs`);
      return;
    }
    const providers = this.#names(value.get("providers", true), `service ${name}: providers`) ?? [];
    const tenants = this.#names(value.get("tenants", true), `service ${name}: tenants`);
    const providersNode = value.get("providers", true) as Node | undefined;
    if (providers.length === 0) {
      this.#problem(providersNode ?? value, `service ${name} needs at least one provider`);
    }
    this.#checkRefs(providersNode, providers, cluster.servers, "server", name);
    this.#checkRefs(
      value.get("tenants", true) as Node | undefined,
      tenants ?? [],
      cluster.clients,
      "client",
      name,
    );
    const rpcsNode = value.get("rpcs", true) as Node | undefined;
    const listed = this.#names(rpcsNode, `service ${name}: rpcs`);
    const scoped = rpcs.filter((rpc) => rpc.service === name);
    const names = listed ?? [...new Set(scoped.map((rpc) => rpc.entry.name))];
    const entries: RpcEntry[] = [];
    const seen = new Map<string, RpcEntry>();
    names.forEach((rpcName, index) => {
      const overloads = rpcs.filter((rpc) =>
        rpc.entry.name === rpcName && (rpc.service === name || rpc.service === undefined)
      );
      const rejected = this.#rejected.some((rpc) =>
        rpc.name === rpcName && (rpc.service === name || rpc.service === undefined)
      );
      if (overloads.length === 0 && !rejected) {
        const node = isSeq(rpcsNode) ? rpcsNode.items[index] : rpcsNode ?? value;
        this.#problem(
          node,
          `service ${name} lists rpc ${rpcName}, which the rpc section does not declare`,
        );
      }
      for (const { entry } of overloads) {
        const key = `${rpcName}(${argumentKey(entry.signature.args)})`;
        const earlier = seen.get(key);
        if (earlier) {
          this.#at(
            entry.position,
            `rpc ${rpcName} of service ${name} has two overloads taking (${
              formatTypes(entry.signature.args)
            }); the other is at line ${earlier.position.line}`,
          );
          continue;
        }
        seen.set(key, entry);
        entries.push(entry);
      }
    });
    if (listed) {
      for (const { entry } of scoped) {
        if (!listed.includes(entry.name)) {
          this.#at(
            entry.position,
            `rpc ${entry.name} is declared for service ${name} but not listed in its rpcs`,
          );
        }
      }
    }
    cluster.services.set(name, {
      name,
      providers,
      ...(tenants ? { tenants } : {}),
      rpcs: entries,
      position,
    });
  }

  #checkRefs(
    node: Node | undefined,
    names: string[],
    known: Map<string, unknown>,
    kind: string,
    service: string,
  ) {
    names.forEach((name, index) => {
      if (known.has(name)) return;
      const item = isSeq(node) ? node.items[index] : node;
      this.#problem(item, `service ${service}: unknown ${kind} "${name}"`);
    });
  }
}

/**
 * Checks that every `src` of the services a set of servers provides can be
 * read. Returns the problems, with the position of each `src`.
 */
export async function checkSources(
  cluster: Cluster,
  servers?: readonly string[],
): Promise<ConfigProblem[]> {
  const problems: ConfigProblem[] = [];
  const checked = new Set<string>();
  for (const service of cluster.services.values()) {
    if (servers && !service.providers.some((provider) => servers.includes(provider))) continue;
    for (const rpc of service.rpcs) {
      if (checked.has(rpc.path)) continue;
      checked.add(rpc.path);
      try {
        const info = await Deno.stat(rpc.path);
        if (!info.isFile) throw new Error("not a file");
        (await Deno.open(rpc.path)).close();
      } catch (error) {
        const reason = error instanceof Deno.errors.NotFound
          ? "no such file"
          : (error as Error).message;
        problems.push({
          file: cluster.file,
          line: rpc.sourcePosition.line,
          column: rpc.sourcePosition.column,
          message: `rpc ${rpc.name}: cannot read src ${rpc.source}: ${reason}`,
        });
      }
    }
  }
  return problems;
}

/** The services a server provides, by the cluster's `providers`. */
export function servicesOf(cluster: Cluster, server: string): ServiceEntry[] {
  return [...cluster.services.values()].filter((service) => service.providers.includes(server));
}

/**
 * The secret of a client: its `secret`, or the trimmed content of its
 * `secret-file`. `undefined` when it has none.
 *
 * @throws {RpcError} `Config Error` when the secret file cannot be read or is empty.
 */
export async function clientSecret(entry: ClientEntry): Promise<string | undefined> {
  if (entry.secret) return entry.secret;
  if (!entry.secretFile) return undefined;
  let secret: string;
  try {
    secret = (await Deno.readTextFile(entry.secretFile)).trim();
  } catch (error) {
    throw new RpcError(
      ErrorKind.Config,
      `Cannot read secret file ${entry.secretFile} of client ${entry.name}: ${
        (error as Error).message
      }`,
      { cause: error, ...codeOf(error) },
    );
  }
  if (!secret) {
    throw new RpcError(
      ErrorKind.Config,
      `Secret file ${entry.secretFile} of client ${entry.name} is empty`,
    );
  }
  return secret;
}
