/**
 * A binary min-heap of items under numeric keys.
 *
 * Owns: oldest-first order where something must be dropped by age without a scan of
 * everything held — the revocation list's events (pruning, the cap) and the in-process
 * cache's expiry times (its sweep): O(k log n) for the k items removed.
 * Keys live in a Float64Array beside the items (no boxed number per entry); a key is the
 * one given at `push` and never changes while the item is in the heap.
 */
export class MinHeap<T> {
  private keys = new Float64Array(64);
  private readonly items: T[] = [];

  /** Items held. */
  get size(): number {
    return this.items.length;
  }

  /** Adds `item` under `key` (O(log n)). */
  push(key: number, item: T): void {
    let i = this.items.length;
    if (i === this.keys.length) {
      const grown = new Float64Array(this.keys.length * 2);
      grown.set(this.keys);
      this.keys = grown;
    }
    this.items.push(item);
    // sift up
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const parentKey = this.keys[parent] ?? 0;
      if (parentKey <= key) break;
      this.keys[i] = parentKey;
      this.items[i] = this.items[parent] as T;
      i = parent;
    }
    this.keys[i] = key;
    this.items[i] = item;
  }

  /** The smallest key held; undefined when empty. */
  peekKey(): number | undefined {
    return this.items.length === 0 ? undefined : this.keys[0];
  }

  /** Removes and returns the item with the smallest key (O(log n)); undefined when empty. */
  pop(): T | undefined {
    const n = this.items.length;
    if (n === 0) return undefined;
    const top = this.items[0];
    const last = this.items.pop() as T;
    const lastKey = this.keys[n - 1] ?? 0;
    const size = n - 1;
    if (size > 0) {
      // sift `last` down from the root
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= size) break;
        const right = left + 1;
        let child = left;
        if (right < size && (this.keys[right] ?? 0) < (this.keys[left] ?? 0)) child = right;
        const childKey = this.keys[child] ?? 0;
        if (childKey >= lastKey) break;
        this.keys[i] = childKey;
        this.items[i] = this.items[child] as T;
        i = child;
      }
      this.keys[i] = lastKey;
      this.items[i] = last;
    }
    if (size < this.keys.length / 4 && this.keys.length > 64) {
      this.keys = this.keys.slice(0, this.keys.length / 2);
    }
    return top;
  }
}
