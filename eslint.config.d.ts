// Types of eslint.config.js for the tests that read its layer table.
import type { Linter } from "eslint";

/** The layers of src/, lowest first (see eslint.config.js). */
export declare const LAYERS: string[][];
export declare function layerRules(): Linter.Config[];
declare const config: Linter.Config[];
export default config;
