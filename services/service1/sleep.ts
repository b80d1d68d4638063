/** Waits `seconds`, then says so: a slow call to overlap with fast ones. */
export async function sleep(seconds: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return `slept ${seconds}s`;
}
