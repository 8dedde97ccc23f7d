/**
 * The identity headers of validated tokens, built once and kept as long as their answers.
 *
 * Owns: the map from a validated answer to its {@link PreparedToken} (the frozen header
 * lists keystonemiddleware would set), and sharing those lists between the answers of one
 * context. Most cached tokens are new tokens of a known user and scope answered from the
 * context cache (validation/context.ts); their headers are their context's, so the lists
 * are built once per context and each token keeps only a small object of its own — about
 * 2.8 KB less per cached token (the header strings and pairs), and ≈5.6 KB less again with
 * an 8-service catalog (bench:cache-memory, docs/benchmarks.md).
 */
import { PreparedToken } from "../contract/inject.js";
import type { KeystoneToken } from "../token/body.js";
import { contextOf } from "./context.js";

/** Prepared headers per answer (weak: an entry lives as long as its answer is held). */
export class PreparedTokens {
  private readonly byAnswer = new WeakMap<KeystoneToken, PreparedToken>();

  /** @param includeServiceCatalog auth_token's `include_service_catalog`. */
  constructor(private readonly includeServiceCatalog: boolean) {}

  /** The prepared headers of `answer`, built on first use (shared with its context's). */
  of(answer: KeystoneToken): PreparedToken {
    const known = this.byAnswer.get(answer);
    if (known !== undefined) return known;
    const context = contextOf(answer);
    const shared = context === undefined ? undefined : this.of(context);
    const prepared = new PreparedToken(answer, this.includeServiceCatalog, shared);
    this.byAnswer.set(answer, prepared);
    return prepared;
  }
}
