/**
 * Owns: what the configuration tests share — secret sources that hold nothing, and the
 * problems a refused document is refused for.
 */
import { expect } from "vitest";
import { validateConfig, type SecretSources } from "../../../src/config/load.js";
import { ConfigError } from "../../../src/errors.js";

/** Secret sources with no variable set and no file readable (every read: ENOENT). */
export const noSecrets: SecretSources = {
  env: {},
  readFile: () => {
    throw Object.assign(new Error("no"), { code: "ENOENT" });
  },
};

/**
 * The problems `document` is refused for (validated with `noSecrets` unless told); fails
 * the test when it is accepted.
 */
export function problemsOf(
  document: unknown,
  options: { readonly sources?: SecretSources; readonly offline?: boolean } = {},
): readonly string[] {
  try {
    validateConfig(document, {
      sources: options.sources ?? noSecrets,
      offline: options.offline ?? false,
    });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("expected the configuration to be refused");
}
