/**
 * How `rpc server --check` and `rpc init --check` print what they loaded:
 * each service with its procedures, one line per procedure with its status,
 * SHA-256, signature and language, and one `error:` line per failure.
 *
 * @module
 */

import type { ProcedureCheck, StateCheck } from "../core/deploy/check.ts";
import { describeProcedure } from "../core/deploy/plan.ts";
import { oneLine } from "./common.ts";

/** The listing of a check: services, each followed by its procedures. */
export function checkLines(check: StateCheck, indent = "  "): string[] {
  const lines: string[] = [];
  for (const service of check.manifest.services) {
    const tenants = service.tenants
      ? `tenants ${service.tenants.join(", ") || "none"}`
      : "any client";
    lines.push(`${indent}${service.name} (${tenants})`);
    for (const procedure of check.procedures) {
      if (procedure.record.service !== service.name) continue;
      const { record } = procedure;
      lines.push(
        `${indent}  ${procedure.ok ? "ok  " : "FAIL"}  ${record.hash}  ${
          describeProcedure(record)
        }  [${record.language}]`,
      );
      if (!procedure.ok) lines.push(`${indent}        ${oneLine(procedure.error ?? "")}`);
    }
  }
  return lines;
}

/**
 * One line per failed procedure: `file:line:column: rpc NAME (src): why`
 * when it came from init.yaml, else `service.rpc(types): why`.
 */
export function failureLines(check: StateCheck, configFile?: string): string[] {
  return check.procedures.filter((procedure) => !procedure.ok).map((procedure) =>
    failureLine(procedure, configFile)
  );
}

function failureLine(procedure: ProcedureCheck, configFile: string | undefined): string {
  const { record, entry } = procedure;
  const what = `${record.service}.${record.rpc}(${record.args.join(", ")})`;
  const why = oneLine(procedure.error ?? "");
  if (!entry || configFile === undefined) return `${what}: ${why}`;
  const { line, column } = entry.sourcePosition;
  return `${configFile}:${line}:${column}: ${what} (src ${entry.source}): ${why}`;
}
