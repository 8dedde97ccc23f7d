/**
 * The benchmarks' view of a process tree, from /proc: each process's parent and CPU time,
 * a process and its descendants, and their CPU ticks together (what bench:proxy and
 * bench:workers charge to the process they measure).
 */
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ on Linux). */
export const CLK_TCK = 100;

/** One read of /proc: each process's parent and CPU ticks (utime + stime). */
export function processTable(): Map<number, { readonly parent: number; readonly ticks: number }> {
  const table = new Map<number, { readonly parent: number; readonly ticks: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      table.set(Number(entry), {
        parent: Number(fields[1]),
        ticks: Number(fields[11]) + Number(fields[12]),
      });
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** `pid` and all its descendants, in `table` (default: /proc now). */
export function processTree(pid: number, table = processTable()): number[] {
  return [...table.keys()].filter((p) => {
    for (let q: number | undefined = p; q !== undefined && q > 1; q = table.get(q)?.parent) {
      if (q === pid) return true;
    }
    return false;
  });
}

/** utime + stime, in clock ticks, of `pid` and all its descendants. */
export function cpuTicks(pid: number): number {
  const table = processTable();
  return processTree(pid, table).reduce((sum, p) => sum + (table.get(p)?.ticks ?? 0), 0);
}
