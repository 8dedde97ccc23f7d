/**
 * Owns: an in-process keystone-edge for integration tests — a configuration document
 * validated as `serve` validates it, the production cache tiers, the service token
 * obtained before the first request — and its URL.
 */
import { createCacheFactory } from "../../src/edge/cache-factory.js";
import { validateConfig } from "../../src/config/load.js";
import { startEdge, type RunningEdge } from "../../src/edge/running-edge.js";
import type { Logger } from "../../src/log.js";

/** Starts an edge from `document` (see edge-config.ts); resolves once it holds a service token. */
export async function startTestEdge(
  document: Record<string, unknown>,
  options: { readonly logger?: Logger } = {},
): Promise<{ edge: RunningEdge; url: string }> {
  const edge = await startEdge(validateConfig(document), {
    cache: createCacheFactory(),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  await edge.serviceToken.ensure();
  return { edge, url: `http://127.0.0.1:${String(edge.address.port)}` };
}
