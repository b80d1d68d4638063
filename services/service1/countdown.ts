/**
 * A streaming procedure: yields n, n-1, ..., 1, one every 200 ms, then
 * returns "liftoff". `rpc call` prints each number as it arrives.
 */
export async function* countdown(n: number): AsyncGenerator<number, string> {
  for (let i = n; i > 0; i--) {
    yield i;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return "liftoff";
}
