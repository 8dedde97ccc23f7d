/**
 * Single-flight: concurrent misses for one key share one call.
 *
 * Owns: the map of calls in flight. When a hundred requests arrive with the same new token,
 * Keystone is asked once and all hundred get its answer.
 */
export class SingleFlight<K, V> {
  private readonly inFlight = new Map<K, Promise<V>>();

  /** Runs `call` for `key` unless a call for it is already running; then shares that one. */
  run(key: K, call: () => Promise<V>): Promise<V> {
    const running = this.inFlight.get(key);
    if (running) return running;
    const started = call().finally(() => {
      this.inFlight.delete(key);
    });
    this.inFlight.set(key, started);
    return started;
  }

  /** Calls running now. */
  get size(): number {
    return this.inFlight.size;
  }
}
