/**
 * The environment a runner reads: a lookup function the caller injects (the
 * `rpc` command passes the process's), so core never reads `Deno.env` and the
 * runners are tested with the variables a test chooses.
 *
 * @module
 */

/** Reads one environment variable, `undefined` when it is not set. */
export type Environment = (name: string) => string | undefined;

/** No variables at all: the default of a runner given no `env`. */
export const NO_ENVIRONMENT: Environment = () => undefined;
