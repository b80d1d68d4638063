/**
 * A server's content-addressed code store. Sources are kept as immutable
 * files named by their SHA-256; `manifest.json` says which of them serve
 * which service. An install writes new sources first and then replaces the
 * manifest with one atomic rename, so a server killed at any moment restarts
 * with the complete old state or the complete new one.
 *
 * Layout of a state directory:
 *
 * ```text
 * manifest.json        the installed state (see Manifest)
 * blobs/<sha256>.ts    one file per distinct source text (.ts, .js or .py)
 * ```
 *
 * A directory that cannot be read or written (a file where it should be, no
 * permission, a damaged manifest) fails with `Store Error`, naming the path
 * and the platform's error code, never as an internal error.
 *
 * @module
 */

import { join } from "node:path";
import { codeOf, ErrorKind, RpcError } from "../errors.ts";
import { sha256Hex } from "../hash.ts";
import type {
  Language,
  ProcedurePermissions,
  ProcedureSpec,
  ServiceSpec,
} from "../server/registry.ts";
import { parseSignature } from "../types/types.ts";

/** One procedure as the manifest and the install protocol describe it. */
export interface ProcedureRecord {
  service: string;
  rpc: string;
  args: string[];
  returns: string[];
  /** The types of each partial result, for a streaming procedure. */
  yields?: string[];
  language: Language;
  /** SHA-256 of the source text. */
  hash: string;
  /** Extension of the source file, e.g. `.ts`; decides how it is loaded. */
  extension: string;
  doc?: string;
  timeoutMs?: number;
  trusted?: boolean;
  permissions?: ProcedurePermissions;
}

/** One service in the manifest. Absent `tenants` means open to every client. */
export interface ServiceRecord {
  name: string;
  tenants?: string[];
}

/** A client the server should know, with the IP it must connect from. */
export interface ClientRecord {
  name: string;
  ip?: string;
  /** SHA-256 (hex) of the client's secret; the secret itself never reaches a server's disk. */
  secretHash?: string;
}

/** The whole installed state of one server. */
export interface Manifest {
  format: 1;
  /** Counts installs; 0 is the empty state. */
  generation: number;
  installedAt: string;
  services: ServiceRecord[];
  procedures: ProcedureRecord[];
  clients: ClientRecord[];
}

/** The state of a server that has never had anything installed. */
export function emptyManifest(): Manifest {
  return {
    format: 1,
    generation: 0,
    installedAt: new Date(0).toISOString(),
    services: [],
    procedures: [],
    clients: [],
  };
}

/** A SHA-256 in lower-case hex: how sources are named. */
export const SHA256_HEX = /^[0-9a-f]{64}$/;
/** The extensions a stored source may have. */
export const SOURCE_EXTENSION = /^\.(ts|mts|js|mjs|py)$/;

/**
 * A `Store Error` for `what` failing on `path`, keeping the platform's error
 * code. An error that already has a kind is returned as it is.
 */
export function storeError(what: string, path: string, error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new RpcError(ErrorKind.Store, `Cannot ${what} ${path}: ${reason}`, {
    cause: error,
    ...codeOf(error),
  });
}

/** The store of one state directory. */
export class CodeStore {
  readonly dir: string;
  readonly blobDir: string;

  constructor(dir: string) {
    this.dir = dir;
    this.blobDir = join(dir, "blobs");
  }

  /** Path of the blob holding source `hash` with `extension`. */
  blobPath(hash: string, extension: string): string {
    if (!SHA256_HEX.test(hash) || !SOURCE_EXTENSION.test(extension)) {
      throw new RpcError(ErrorKind.Store, `Invalid blob name ${hash}${extension} in ${this.dir}`);
    }
    return join(this.blobDir, `${hash}${extension}`);
  }

  /** Reads the installed manifest; an empty one when nothing was installed. */
  async readManifest(): Promise<Manifest> {
    const path = join(this.dir, "manifest.json");
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return emptyManifest();
      throw storeError("read", path, error);
    }
    let manifest: Manifest;
    try {
      manifest = JSON.parse(text) as Manifest;
    } catch (error) {
      throw storeError("parse", path, error);
    }
    if (manifest?.format !== 1) {
      throw new RpcError(
        ErrorKind.Store,
        `Cannot read ${path}: unknown manifest format ${manifest?.format}`,
      );
    }
    return manifest;
  }

  /** Whether the blob for `hash` is present. */
  async has(hash: string, extension: string): Promise<boolean> {
    try {
      return (await Deno.stat(this.blobPath(hash, extension))).isFile;
    } catch {
      return false;
    }
  }

  /**
   * Stores a source text and returns its hash. The text is written to a
   * temporary file, synced, then renamed into place, so a blob is either
   * absent or complete.
   */
  async putBlob(text: string, extension: string): Promise<string> {
    const hash = sha256Hex(text);
    const path = this.blobPath(hash, extension);
    if (await this.has(hash, extension)) return hash;
    try {
      await Deno.mkdir(this.blobDir, { recursive: true });
      await writeFileAtomic(path, text);
    } catch (error) {
      throw storeError("write", path, error);
    }
    return hash;
  }

  /** Replaces the manifest atomically (write, sync, rename, sync the directory). */
  async writeManifest(manifest: Manifest): Promise<void> {
    const path = join(this.dir, "manifest.json");
    try {
      await Deno.mkdir(this.dir, { recursive: true });
      await writeFileAtomic(path, JSON.stringify(manifest, null, 2) + "\n");
    } catch (error) {
      throw storeError("write", path, error);
    }
  }

  /** Deletes blobs that no procedure in `keep` refers to. */
  async collectGarbage(keep: readonly Manifest[]): Promise<number> {
    const live = new Set(
      keep.flatMap((manifest) => manifest.procedures.map((p) => `${p.hash}${p.extension}`)),
    );
    let removed = 0;
    try {
      for await (const entry of Deno.readDir(this.blobDir)) {
        if (!entry.isFile) continue;
        if (live.has(entry.name)) continue;
        await Deno.remove(join(this.blobDir, entry.name)).catch(() => {});
        removed++;
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return removed;
  }

  /** The services of a manifest, with each procedure's blob path, for the registry. */
  serviceSpecs(manifest: Manifest): ServiceSpec[] {
    return manifest.services.map((service) => ({
      name: service.name,
      ...(service.tenants ? { tenants: service.tenants } : {}),
      procedures: manifest.procedures
        .filter((procedure) => procedure.service === service.name)
        .map((procedure): ProcedureSpec => ({
          service: procedure.service,
          rpc: procedure.rpc,
          signature: parseSignature(procedure.args, procedure.returns, procedure.yields),
          language: procedure.language,
          path: this.blobPath(procedure.hash, procedure.extension),
          hash: procedure.hash,
          ...(procedure.doc ? { doc: procedure.doc } : {}),
          ...(procedure.timeoutMs ? { timeoutMs: procedure.timeoutMs } : {}),
          ...(procedure.trusted ? { trusted: true } : {}),
          ...(procedure.permissions ? { permissions: procedure.permissions } : {}),
        })),
    }));
  }
}

let counter = 0;

/** Writes a file so that it is either absent, the old content, or the new content. */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const temporary = `${path}.tmp-${Deno.pid}-${counter++}`;
  const file = await Deno.open(temporary, { write: true, create: true, truncate: true });
  try {
    const data = new TextEncoder().encode(text);
    let offset = 0;
    while (offset < data.length) offset += await file.write(data.subarray(offset));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(temporary, path);
  await syncDirectory(path);
}

async function syncDirectory(path: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  const directory = path.slice(0, path.lastIndexOf("/")) || "/";
  try {
    const handle = await Deno.open(directory, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  } catch {
    // Some file systems cannot sync a directory; the rename is still atomic.
  }
}
