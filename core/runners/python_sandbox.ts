/**
 * Confinement of Python interpreters with bubblewrap (`bwrap`).
 *
 * A confined interpreter sees a read-only root holding only what Python needs
 * to run (its executable, standard library, site-packages and the shared
 * libraries it links), a private `/tmp` of bounded size, a `/proc` and a
 * `/dev` of its own, and the paths, programs and network that the
 * procedure's `permissions` grant. It lives in new PID, IPC, UTS, cgroup and
 * (unless granted) network namespaces and in a session of its own, and dies
 * with the server. The procedure's source is not a file in the sandbox: the
 * runner sends it over the interpreter's stdin.
 *
 * Everything here only computes: what to bind and which arguments to pass.
 * The bridge in `python.ts` drops privileges and sets the memory limit inside.
 *
 * @module
 */

import { basename, dirname, isAbsolute, join, normalize } from "node:path";
import type { ProcedurePermissions } from "../server/registry.ts";
import type { Environment } from "./environment.ts";

/** What the interpreter needs to see, as it reported it (see {@linkcode probePython}). */
export interface PythonInstall {
  /** Absolute path the interpreter is started at, the same inside a sandbox. */
  executable: string;
  /** The file at `executable`, symlinks resolved. */
  binary: string;
  /** Directories and files it reads: standard library, site-packages, shared libraries. */
  readOnly: string[];
  /** Top-level library links of this machine (`/lib` → `usr/lib`), as `[path, target]`. */
  links: [string, string][];
}

/** What a procedure's `permissions` grant, resolved against this machine. */
export interface Grants {
  /** Absolute real paths bound read-only. */
  read: string[];
  /** Absolute real paths bound read-write. */
  write: string[];
  /** Whether the sandbox shares the server's network. */
  net: boolean;
  /** Environment variables passed on, with the server's values. */
  env: Record<string, string>;
  /** Absolute real paths of programs it may run. */
  run: string[];
}

/** Limits and identity of a confined interpreter. */
export interface SandboxLimits {
  /**
   * Size of the private `/tmp`, in bytes; `undefined` where bubblewrap cannot
   * size a tmpfs (before 0.7), and `/tmp` is then writable by root only.
   */
  tmpBytes: number | undefined;
  /** Whether the bridge starts as root and drops to an unprivileged user (needs two capabilities). */
  dropsPrivileges: boolean;
  /**
   * Whether bubblewrap can forbid new user namespaces inside (`--disable-userns`,
   * 0.8 and later). It can only where it makes one itself: a server not run by root.
   */
  disablesUserns?: boolean;
}

/** Mount points the sandbox provides itself; grants may not reach into them. */
const OWN_MOUNTS = ["/proc", "/dev"];

/** Files a program needs to resolve names and verify certificates, bound when `net` is granted. */
const NETWORK_FILES = [
  "/etc/resolv.conf",
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/host.conf",
  "/etc/gai.conf",
  "/etc/ssl",
  "/etc/ca-certificates",
  "/usr/share/ca-certificates",
];

/** Top-level library directories: replicated as links, or bound when they are real directories. */
const LIBRARY_ROOTS = ["/lib", "/lib32", "/lib64", "/libx32", "/usr/lib64", "/usr/lib32"];

/**
 * Asks the interpreter what it reads: it imports the common extension
 * modules, then reports its executable, `sys.path` and the directories of
 * every shared library mapped into it. Runs our own code only, unconfined.
 */
const PROBE = String.raw`
import json, os, sys
for name in ("ctypes", "decimal", "hashlib", "json", "math", "select", "socket", "sqlite3",
             "ssl", "zlib", "bz2", "lzma", "datetime", "array", "struct", "_posixsubprocess"):
    try:
        __import__(name)
    except Exception:
        pass
libraries = set()
try:
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6:
                path = fields[5].strip()
                if path.startswith("/") and ".so" in os.path.basename(path):
                    libraries.add(os.path.dirname(os.path.realpath(path)))
except OSError:
    pass
venv = os.path.join(sys.prefix, "pyvenv.cfg")
print(json.dumps({
    "executable": sys.executable,
    "binary": os.path.realpath(sys.executable),
    "paths": [os.path.realpath(p) for p in sys.path if p and os.path.exists(p)],
    "libraries": sorted(libraries),
    "venv": os.path.realpath(venv) if sys.prefix != sys.base_prefix and os.path.exists(venv) else None,
}))
`;

/**
 * Finds what a Python install needs inside a sandbox by running `python`
 * (resolved on `PATH`, e.g. a pyenv shim) once.
 *
 * @throws {Deno.errors.NotFound} when `python` is not on `PATH`.
 */
export async function probePython(python: string): Promise<PythonInstall> {
  const output = await new Deno.Command(python, {
    args: ["-I", "-c", PROBE],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!output.success) {
    const detail = decoder.decode(output.stderr).trim().split("\n").pop() ?? "";
    throw new Error(`${python} failed to describe itself (exit code ${output.code}): ${detail}`);
  }
  const found = JSON.parse(decoder.decode(output.stdout)) as {
    executable: string;
    binary: string;
    paths: string[];
    libraries: string[];
    venv: string | null;
  };
  if (!found.executable || !isAbsolute(found.executable)) {
    throw new Error(`${python} does not know the path of its own executable`);
  }
  // Start it at its own name, in a real directory: Python finds its prefix (and a
  // virtual environment's pyvenv.cfg) from there.
  const executable = join(
    await Deno.realPath(dirname(found.executable)),
    basename(found.executable),
  );
  const readOnly = [...found.paths, ...found.libraries];
  if (found.venv) readOnly.push(found.venv);
  const links: [string, string][] = [];
  for (const root of LIBRARY_ROOTS) {
    const info = await Deno.lstat(root).catch(() => undefined);
    if (info?.isSymlink) links.push([root, await Deno.readLink(root)]);
    else if (info?.isDirectory && root.endsWith("64")) readOnly.push(root);
  }
  if (await exists("/etc/ld.so.cache")) readOnly.push("/etc/ld.so.cache");
  return { executable, binary: found.binary, readOnly, links };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The first executable file named `name` in `PATH`'s directories, or `undefined`. */
export async function findOnPath(
  name: string,
  path: string | undefined,
): Promise<string | undefined> {
  for (const dir of (path ?? "").split(":")) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      const info = await Deno.stat(candidate);
      if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/**
 * Finds a program: a path with a slash must be an absolute executable file;
 * a bare name is looked up in `PATH`'s directories.
 */
export async function findProgram(
  program: string,
  path: string | undefined,
): Promise<string | undefined> {
  if (!program.includes("/")) return await findOnPath(program, path);
  if (!isAbsolute(program)) return undefined;
  return await findOnPath(basename(program), dirname(program));
}

/** Whether `path` is `root` or inside it. */
function within(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith("/") ? root : `${root}/`);
}

/**
 * Resolves a procedure's `permissions` to what bubblewrap can give it, or
 * refuses with a message that says what cannot be expressed. `label` names
 * the procedure in messages.
 */
export async function resolveGrants(
  permissions: ProcedurePermissions | undefined,
  label: string,
  env: Environment,
): Promise<Grants> {
  const refuse = (why: string) => new Error(`Cannot confine ${label}: ${why}`);
  const paths = async (kind: "read" | "write"): Promise<string[]> => {
    const out: string[] = [];
    for (const given of permissions?.[kind] ?? []) {
      if (!isAbsolute(given)) {
        throw refuse(`${kind} path ${given} is not absolute; write it from /`);
      }
      let real: string;
      try {
        real = await Deno.realPath(normalize(given));
      } catch {
        throw refuse(
          `${kind} path ${given} does not exist on this server; bubblewrap can only bind what exists`,
        );
      }
      if (real === "/") {
        throw refuse(
          `${kind} grants /, the whole file system; grant narrower paths, or mark the procedure trusted: true to run it unconfined`,
        );
      }
      const own = OWN_MOUNTS.find((root) => within(real, root));
      if (own) throw refuse(`${kind} path ${given} is inside ${own}, which the sandbox provides`);
      out.push(real);
    }
    return out;
  };
  const net = permissions?.net ?? [];
  const hosts = net.filter((entry) => entry !== "*");
  if (hosts.length > 0) {
    throw refuse(
      `net grants ${
        hosts.join(", ")
      }, but bubblewrap gives a Python procedure the whole network or none; write net: ["*"] for the whole network`,
    );
  }
  const run: string[] = [];
  for (const program of permissions?.run ?? []) {
    const found = await findProgram(program, env("PATH"));
    if (!found) throw refuse(`run grants ${program}, which is not a program on this server`);
    run.push(await Deno.realPath(found));
  }
  const granted: Record<string, string> = {};
  for (const name of permissions?.env ?? []) {
    const value = env(name);
    if (value !== undefined) granted[name] = value;
  }
  return {
    read: await paths("read"),
    write: await paths("write"),
    net: net.length > 0,
    env: granted,
    run,
  };
}

/** What this bubblewrap can do beyond the options every version since 0.5 has. */
export interface BwrapFeatures {
  /** `--size` for a tmpfs (0.7). */
  sizesTmpfs: boolean;
  /** `--disable-userns` (0.8). */
  disablesUserns: boolean;
}

/** Reads the options of a bubblewrap from its `--help`; none of the newer ones when that fails. */
export async function bwrapFeatures(bwrap: string): Promise<BwrapFeatures> {
  let help = "";
  try {
    const output = await new Deno.Command(bwrap, {
      args: ["--help"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    help = decoder.decode(output.stdout) + decoder.decode(output.stderr);
  } catch {
    // Treated as the oldest bubblewrap.
  }
  return {
    sizesTmpfs: /^\s*--size\b/m.test(help),
    disablesUserns: /^\s*--disable-userns\b/m.test(help),
  };
}

/** `/a/b/c` → `["/a", "/a/b"]`. */
function ancestors(path: string): string[] {
  const parts = path.split("/").filter(Boolean);
  return parts.slice(0, -1).map((_, i) => "/" + parts.slice(0, i + 1).join("/"));
}

function depth(path: string): number {
  return path.split("/").filter(Boolean).length;
}

/**
 * The environment of an interpreter: nothing of the server's but the granted
 * variables, `HOME` (its private `/tmp` when confined) and, where it may run
 * programs, a `PATH` of their directories. An unconfined (trusted)
 * interpreter keeps the server's `PATH`.
 */
export function interpreterEnv(
  grants: Grants,
  confined: boolean,
  serverEnv: Environment,
): Record<string, string> {
  const env: Record<string, string> = { ...grants.env };
  env.HOME ??= "/tmp";
  if (!confined) {
    const path = serverEnv("PATH");
    if (path !== undefined && grants.env.PATH === undefined) env.PATH = path;
  } else if (grants.run.length > 0 && grants.env.PATH === undefined) {
    env.PATH = [...new Set(grants.run.map(dirname))].join(":");
  }
  return env;
}

/**
 * The bubblewrap arguments that confine an interpreter, up to and including
 * the executable; the interpreter's own arguments follow.
 */
export function bwrapArguments(
  install: PythonInstall,
  grants: Grants,
  limits: SandboxLimits,
): string[] {
  const args = [
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    ...(grants.net ? [] : ["--unshare-net"]),
    "--new-session",
    "--die-with-parent",
    // Started as root, the bridge needs these two to become nobody; it loses them then.
    ...(limits.dropsPrivileges
      ? ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
      : limits.disablesUserns
      ? ["--unshare-user", "--disable-userns"]
      : []),
    // Without a size, a writable tmpfs would be memory without a limit.
    ...(limits.tmpBytes === undefined
      ? ["--perms", "0755"]
      : ["--perms", "1777", "--size", String(limits.tmpBytes)]),
    "--tmpfs",
    "/tmp",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
  ];
  // What is bound where: grants win over the interpreter's own read-only paths.
  const binds = new Map<string, { source: string; writable: boolean }>();
  const system = [...new Set(install.readOnly)].filter((path) => path !== "/");
  for (const path of system) {
    // A directory inside another bound one comes with it.
    if (system.some((other) => other !== path && within(path, other))) continue;
    binds.set(path, { source: path, writable: false });
  }
  binds.set(install.executable, { source: install.binary, writable: false });
  if (grants.net) {
    for (const path of NETWORK_FILES) binds.set(path, { source: path, writable: false });
  }
  for (const path of grants.run) binds.set(path, { source: path, writable: false });
  for (const path of grants.read) binds.set(path, { source: path, writable: false });
  for (const path of grants.write) binds.set(path, { source: path, writable: true });
  const dests = [...binds.keys()].sort((a, b) => depth(a) - depth(b) || a.localeCompare(b));
  // bwrap would create missing parents readable by root only; the interpreter may not be root.
  const parents = new Set<string>();
  for (const dest of dests) {
    for (const parent of ancestors(dest)) {
      if (parent !== "/tmp" && !binds.has(parent)) parents.add(parent);
    }
  }
  for (const parent of [...parents].sort((a, b) => depth(a) - depth(b) || a.localeCompare(b))) {
    args.push("--perms", "0755", "--dir", parent);
  }
  for (const dest of dests) {
    const { source, writable } = binds.get(dest)!;
    const optional = NETWORK_FILES.includes(dest);
    args.push(
      writable ? "--bind" : optional ? "--ro-bind-try" : "--ro-bind",
      source,
      dest,
    );
  }
  for (const [path, target] of install.links) {
    if (!binds.has(path) && !parents.has(path)) args.push("--symlink", target, path);
  }
  // What bubblewrap made belongs to the interpreter's user in a user namespace (a server
  // not run by root): read-only, it cannot be filled. Binds and /tmp are mounts of their own.
  args.push("--remount-ro", "/dev", "--remount-ro", "/");
  args.push("--chdir", "/tmp", install.executable);
  return args;
}

/** The message refusing to run a procedure confined where bubblewrap is not installed. */
export function bwrapMissing(label: string, bwrap: string): string {
  return `Cannot run ${label} confined: ${bwrap} (bubblewrap) is not on PATH; install it (apt-get install bubblewrap), or mark the procedure trusted: true to run it unconfined`;
}
