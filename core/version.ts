/** The version of this build of rpc. */
export const VERSION = "0.1.0";
