// @ts-check
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

/**
 * The layers of src/, lowest first (docs/architecture.md, "Layers"). A folder may import
 * only from folders on lower layers, never from its own layer's other folders nor from a
 * higher one; `(base)` is the files directly in src/ (units, errors, log, breaker,
 * min-heap), which every folder may use and which import no folder.
 */
export const LAYERS = [
  ["(base)"],
  ["fernet", "tracing", "audit"],
  ["token"],
  ["config", "revocation", "contract"],
  ["cache", "keystone"],
  ["protocol"],
  ["validation"],
  ["proxy", "drill"],
  ["identity", "admin"],
  ["edge"],
  ["supervisor"],
  ["cli"],
];

/** One `no-restricted-imports` block per folder of src/: the imports its layer forbids. */
export function layerRules() {
  const folders = LAYERS.flat().filter((f) => f !== "(base)");
  const levelOf = new Map(LAYERS.flatMap((layer, level) => layer.map((f) => [f, level])));
  const blocks = folders.map((folder) => {
    const level = levelOf.get(folder) ?? 0;
    const forbidden = folders.filter(
      (other) => other !== folder && (levelOf.get(other) ?? 0) >= level,
    );
    return {
      files: [`src/${folder}/**/*.ts`],
      rules: {
        "no-restricted-imports": [
          "error",
          {
            patterns: forbidden.map((other) => ({
              regex: `^(\\.\\./)+${other}/`,
              message: `layers: ${folder}/ (layer ${String(level)}) may not import ${other}/ (layer ${String(levelOf.get(other))}); see docs/architecture.md, "Layers"`,
            })),
          },
        ],
      },
    };
  });
  blocks.push({
    files: ["src/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "^\\./[^/]+/",
              message: `layers: the base files of src/ import no folder; see docs/architecture.md, "Layers"`,
            },
          ],
        },
      ],
    },
  });
  return blocks;
}

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" },
      ],
      // `return this.fail(...)` and `return this.advance(n)` in void functions are idioms.
      "@typescript-eslint/no-confusing-void-expression": [
        "error",
        { ignoreArrowShorthand: true, ignoreVoidReturningFunctions: true },
      ],
    },
  },
  ...layerRules(),
  {
    files: ["**/*.js", "**/*.mjs"],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: globals.node },
  },
);
