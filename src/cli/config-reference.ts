/**
 * `keystone-edge config-reference`: the configuration reference, generated from the schema.
 *
 * Owns: walking the zod schema of config/schema.ts into one row per option — dotted path,
 * type, default, description — and printing it as Markdown, the options block of
 * docs/configuration.md (`--write FILE` replaces that block in place, between
 * {@link BEGIN_MARKER} and {@link END_MARKER}). Nothing here lists options: a new option
 * appears by being added to the schema, and the unit test refuses a document whose block
 * differs from what this prints.
 *
 * What each column comes from:
 * - option: the object keys, dotted; objects become sections, a discriminated union (the
 *   service user) becomes a section whose variant-only options say which variant;
 * - type: the zod type — enum and literal values, string lengths and patterns, integer
 *   ranges, lists with their sizes, unions, `null` — sharpened by the `format` and `unit`
 *   metadata, and the secret note for {@link SECRET_PATHS} (`<name>_file`, `<name>_env`);
 * - default: the zod default, else "required", else the `absent` metadata (what leaving
 *   the option out means);
 * - description: the `description` metadata (`.describe()` or `.meta()`).
 *
 * An option without a description, or optional without a default and without `absent`,
 * is an error: the reference cannot be written without saying what it means. Tables are
 * aligned as prettier aligns them, so the written file passes `prettier --check`.
 *
 * Size: walking the schema and writing the reference (Markdown and comments) is one
 * generator.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { z } from "zod";
import { configSchema, SECRET_PATHS } from "../config/schema.js";
import { EdgeError, ExitStatus, exitStatusFor, UsageError } from "../errors.js";
import { parseCommandArgs, type Command } from "./command.js";

/** Opens the generated block in a Markdown file. */
export const BEGIN_MARKER = "<!-- BEGIN GENERATED: keystone-edge config-reference -->";
/** Closes it. */
export const END_MARKER = "<!-- END GENERATED -->";

/** What an option is when the file leaves it out. */
export type OptionDefault =
  /** The schema's default, as the loaded configuration holds it. */
  | { readonly kind: "value"; readonly value: unknown }
  /** No default: the file must give it. */
  | { readonly kind: "required" }
  /** Optional without a default: what its absence means, in Markdown. */
  | { readonly kind: "absent"; readonly meaning: string };

/** One option of the reference. */
export interface OptionRow {
  /** Dotted path, as configuration errors name it: `keystone.timeout_ms`. */
  readonly path: string;
  /** The type, in Markdown. */
  readonly type: string;
  readonly default: OptionDefault;
  /** What it means, in Markdown. */
  readonly description: string;
  /** Whether it may also come from `<name>_file` or `<name>_env`. */
  readonly secret: boolean;
  /** Set when only some variants of a discriminated union have it: `type` ∈ `values`. */
  readonly when?: { readonly key: string; readonly values: readonly string[] };
  /**
   * The dotted path of the optional section the option is in, when there is one: it
   * applies (and its default is filled in) only when that section is given.
   */
  readonly within?: string;
}

/** The options directly under one object (the root's path is ""). */
export interface OptionSection {
  readonly path: string;
  readonly description: string | undefined;
  /** For a section that may be left out as a whole: what leaving it out means. */
  readonly absent?: string;
  readonly rows: OptionRow[];
}

type Schema = z.core.$ZodType;

/** The documentation metadata an option may carry (see config/schema.ts). */
interface Doc {
  readonly description?: string;
  readonly absent?: string;
  readonly format?: string;
  readonly unit?: string;
}

const DOC_KEYS = ["description", "absent", "format", "unit"] as const;

function docOf(schemas: readonly Schema[], where: string): Doc {
  const doc: Record<string, string> = {};
  // Innermost first, so that metadata on an outer wrapper wins.
  for (const schema of [...schemas].reverse()) {
    const meta = z.globalRegistry.get(schema);
    if (meta === undefined) continue;
    for (const key of DOC_KEYS) {
      const value = meta[key];
      if (value === undefined) continue;
      if (typeof value !== "string") throw new Error(`${where}: metadata "${key}" is not a string`);
      doc[key] = value;
    }
  }
  return doc;
}

/** A schema without its wrappers (optional, default, nullable, pipes), and what they said. */
interface Unwrapped {
  readonly core: Schema;
  readonly optional: boolean;
  readonly nullable: boolean;
  readonly defaultValue: { readonly value: unknown } | undefined;
  readonly doc: Doc;
}

function unwrap(schema: Schema, where: string): Unwrapped {
  const layers: Schema[] = [];
  let s = schema;
  let optional = false;
  let nullable = false;
  let defaultValue: { value: unknown } | undefined;
  for (;;) {
    layers.push(s);
    const def = s._zod.def;
    if (def.type === "optional") {
      optional = true;
      s = (s as z.core.$ZodOptional)._zod.def.innerType;
    } else if (def.type === "default" || def.type === "prefault") {
      defaultValue ??= { value: (s as z.core.$ZodDefault)._zod.def.defaultValue };
      s = (s as z.core.$ZodDefault)._zod.def.innerType;
    } else if (def.type === "nullable") {
      nullable = true;
      s = (s as z.core.$ZodNullable)._zod.def.innerType;
    } else if (def.type === "readonly") {
      s = (s as z.core.$ZodReadonly)._zod.def.innerType;
    } else if (def.type === "pipe") {
      // The file holds the input side; a transform after it derives, it does not document.
      s = (s as z.core.$ZodPipe)._zod.def.in;
    } else break;
  }
  return { core: s, optional, nullable, defaultValue, doc: docOf(layers, where) };
}

function isObject(schema: Schema): schema is z.core.$ZodObject {
  return schema._zod.def.type === "object";
}

/** The variants of a discriminated union of objects, or undefined for anything else. */
function discriminatedVariants(
  schema: Schema,
): { readonly key: string; readonly variants: readonly z.core.$ZodObject[] } | undefined {
  if (schema._zod.def.type !== "union") return undefined;
  const def = (schema as z.core.$ZodDiscriminatedUnion)._zod.def;
  if (typeof def.discriminator !== "string") return undefined;
  const variants = def.options.map((o) => unwrap(o, def.discriminator).core);
  if (!variants.every(isObject)) return undefined;
  return { key: def.discriminator, variants };
}

/** The literal values a variant gives its discriminator. */
function literalValues(schema: Schema): readonly string[] {
  const core = unwrap(schema, "discriminator").core;
  if (core._zod.def.type === "literal") {
    return (core as z.core.$ZodLiteral)._zod.def.values.map(String);
  }
  if (core._zod.def.type === "enum") {
    return Object.values((core as z.core.$ZodEnum)._zod.def.entries).map(String);
  }
  throw new Error(
    `config-reference: a discriminator that is not a literal (${core._zod.def.type})`,
  );
}

function code(text: string): string {
  return text.includes("`") ? `\`\` ${text} \`\`` : `\`${text}\``;
}

/** A value as YAML's flow style (JSON) would write it, without quotes around a bare string. */
function inlineValue(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(inlineValue).join(", ")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).map(
      ([k, v]) => `${JSON.stringify(k)}: ${inlineValue(v)}`,
    );
    return `{${entries.join(", ")}}`;
  }
  return value === undefined ? "undefined" : JSON.stringify(value);
}

/** A default value as the reference shows it. */
export function renderValue(value: unknown): string {
  return typeof value === "string" && value.length > 0 ? code(value) : code(inlineValue(value));
}

/** The default column of a row. */
export function renderDefault(d: OptionDefault): string {
  switch (d.kind) {
    case "value":
      return renderValue(d.value);
    case "required":
      return "required";
    case "absent":
      return d.meaning;
  }
}

interface CheckDef {
  readonly check?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly value?: unknown;
  readonly inclusive?: boolean;
  readonly format?: string;
  readonly pattern?: RegExp;
}

function checksOf(schema: Schema): readonly CheckDef[] {
  return (schema._zod.def.checks ?? []).map((c) => c._zod.def as CheckDef);
}

/** `min`–`max` with words for the open ends; undefined when neither is set. */
function range(min: number | undefined, max: number | undefined): string | undefined {
  if (min !== undefined && max !== undefined) return min === max ? `${min}` : `${min}–${max}`;
  if (min !== undefined) return `≥ ${min}`;
  if (max !== undefined) return `≤ ${max}`;
  return undefined;
}

function sizeBounds(schema: Schema): { min?: number; max?: number } {
  const bounds: { min?: number; max?: number } = {};
  for (const c of checksOf(schema)) {
    if (c.check === "min_length" && c.minimum !== undefined) bounds.min = c.minimum;
    if (c.check === "max_length" && c.maximum !== undefined) bounds.max = c.maximum;
    if (c.check === "length_equals" && typeof c.value === "number") {
      bounds.min = c.value;
      bounds.max = c.value;
    }
  }
  return bounds;
}

function stringType(schema: Schema, doc: Doc, plural: boolean): string {
  const s = plural ? "s" : "";
  if (doc.format !== undefined) {
    return /^[a-z ]+$/.test(doc.format) ? `${doc.format}${s}` : code(doc.format);
  }
  // A string format (z.url()) keeps its format and options on the def itself.
  const def = schema._zod.def as { readonly format?: string; readonly protocol?: RegExp };
  if (def.format === "url") {
    const protocol = def.protocol === undefined ? "" : String(def.protocol);
    return `${protocol === "/^https?$/" ? "http(s) " : ""}URL${s}`;
  }
  const { min, max } = sizeBounds(schema);
  const patterns = checksOf(schema)
    .filter((c) => c.check === "string_format" && c.pattern !== undefined)
    .map((c) => code((c.pattern as RegExp).source));
  let text = min === 1 && max === undefined ? `non-empty string${s}` : `string${s}`;
  if (patterns.length > 0) text += ` matching ${patterns.join(" and ")}`;
  if (min !== undefined && !(min === 1 && max === undefined)) {
    text += `, ${range(min, max) ?? ""} characters`;
  } else if (max !== undefined) text += `, ${range(undefined, max) ?? ""} characters`;
  return text;
}

function numberType(schema: Schema, doc: Doc, name: string, plural: boolean): string {
  let integer = false;
  let min: number | undefined;
  let max: number | undefined;
  let exclusive = false;
  for (const c of checksOf(schema)) {
    if (c.check === "number_format" && /int/.test(c.format ?? "")) integer = true;
    if (c.check === "greater_than" && typeof c.value === "number") {
      min = c.value;
      exclusive ||= c.inclusive === false;
    }
    if (c.check === "less_than" && typeof c.value === "number") {
      max = c.value;
      exclusive ||= c.inclusive === false;
    }
  }
  if (exclusive) throw new Error(`config-reference: ${name}: exclusive bounds are not rendered`);
  const unit = doc.unit ?? (name.endsWith("_ms") ? "ms" : undefined);
  const bounds = range(min, max);
  const text = `${integer ? "integer" : "number"}${plural ? "s" : ""}`;
  if (bounds === undefined) return unit === undefined ? text : `${text} (${unit})`;
  return `${text}, ${bounds}${unit === undefined ? "" : ` ${unit}`}`;
}

/** The type of a value schema (no wrappers), in Markdown. */
function typeOf(schema: Schema, doc: Doc, name: string, plural = false): string {
  const def = schema._zod.def;
  switch (def.type) {
    case "string":
      return stringType(schema, doc, plural);
    case "number":
      return numberType(schema, doc, name, plural);
    case "boolean":
      return plural ? "booleans" : "boolean";
    case "null":
      return code("null");
    case "literal":
    case "enum":
      return literalValues(schema).map(code).join(" | ");
    case "array": {
      const element = unwrap((schema as z.core.$ZodArray)._zod.def.element, name);
      const { min, max } = sizeBounds(schema);
      const size = range(min, max);
      const items = typeOf(element.core, element.doc, name, true);
      const unit = `item${max === 1 || (max === undefined && min === 1) ? "" : "s"}`;
      const sized =
        size === undefined
          ? ""
          : max === undefined
            ? `, at least ${min ?? 0} ${unit}`
            : min === undefined
              ? `, at most ${max} ${unit}`
              : `, ${size} ${unit}`;
      return `list of ${items}${sized}`;
    }
    case "union":
      return (schema as z.core.$ZodUnion)._zod.def.options
        .map((o) => {
          const u = unwrap(o, name);
          return typeOf(u.core, u.doc, name, plural);
        })
        .join(" or ");
    case "object": {
      const keys = Object.keys((schema as z.core.$ZodObject)._zod.def.shape);
      return `${code(`{${keys.join(", ")}}`)} object${plural ? "s" : ""}`;
    }
    default:
      throw new Error(`config-reference: ${name}: no way to describe a zod "${def.type}"`);
  }
}

const secretNames = new Set(SECRET_PATHS.map((p) => p.join(".")));

function leafRow(path: readonly string[], u: Unwrapped, when: OptionRow["when"]): OptionRow {
  const dotted = path.join(".");
  const name = path[path.length - 1] ?? dotted;
  const description = u.doc.description;
  if (description === undefined || description.trim() === "") {
    throw new Error(
      `config-reference: ${dotted} has no description: give it one in src/config/schema.ts (.describe() or .meta({ description }))`,
    );
  }
  let type = typeOf(u.core, u.doc, name);
  if (u.nullable) type += ` or ${code("null")}`;
  const secret = secretNames.has(dotted);
  if (secret) type += `; secret: or ${code(`${name}_file`)} / ${code(`${name}_env`)}`;
  let d: OptionDefault;
  if (u.defaultValue !== undefined) d = { kind: "value", value: u.defaultValue.value };
  else if (!u.optional) d = { kind: "required" };
  else if (u.doc.absent !== undefined) d = { kind: "absent", meaning: u.doc.absent };
  else {
    throw new Error(
      `config-reference: ${dotted} is optional without a default: say what leaving it out means in src/config/schema.ts (.meta({ absent }))`,
    );
  }
  return { path: dotted, type, default: d, description, secret, ...(when ? { when } : {}) };
}

/** Walks the schema: one section per object that holds options, one row per option. */
export function configReference(schema: Schema = configSchema): OptionSection[] {
  const sections = new Map<string, OptionSection>();
  const section = (
    path: readonly string[],
    description: string | undefined,
    absent?: string,
  ): OptionSection => {
    const key = path.join(".");
    let s = sections.get(key);
    if (s === undefined) {
      s = { path: key, description, ...(absent === undefined ? {} : { absent }), rows: [] };
      sections.set(key, s);
    }
    return s;
  };

  const walkObject = (
    object: z.core.$ZodObject,
    path: readonly string[],
    description: string | undefined,
    when: OptionRow["when"],
    skip?: string,
    within?: { readonly path: string; readonly absent: string },
  ): void => {
    const own = section(
      path,
      description,
      within?.path === path.join(".") ? within.absent : undefined,
    );
    for (const [key, child] of Object.entries(object._zod.def.shape)) {
      if (key === skip) continue;
      const childPath = [...path, key];
      const u = unwrap(child, childPath.join("."));
      const variants = discriminatedVariants(u.core);
      if (isObject(u.core)) {
        let inner = within;
        if (u.optional && u.defaultValue === undefined) {
          if (u.doc.absent === undefined) {
            throw new Error(
              `config-reference: section ${childPath.join(".")} is optional: say what leaving it out means in src/config/schema.ts (.meta({ absent }))`,
            );
          }
          inner = { path: childPath.join("."), absent: u.doc.absent };
        }
        walkObject(u.core, childPath, u.doc.description, when, undefined, inner);
      } else if (variants !== undefined) {
        walkUnion(variants, childPath, u, when);
      } else {
        const leaf = leafRow(childPath, u, when);
        const row = within === undefined ? leaf : { ...leaf, within: within.path };
        const existing = own.rows.findIndex((r) => r.path === row.path);
        if (existing < 0) own.rows.push(row);
        else own.rows[existing] = mergeVariants(own.rows[existing] as OptionRow, row);
      }
    }
  };

  const walkUnion = (
    union: { readonly key: string; readonly variants: readonly z.core.$ZodObject[] },
    path: readonly string[],
    u: Unwrapped,
    when: OptionRow["when"],
  ): void => {
    const own = section(path, u.doc.description);
    const discriminatorPath = [...path, union.key];
    const values: string[] = [];
    let description: string | undefined;
    for (const variant of union.variants) {
      const d = variant._zod.def.shape[union.key];
      if (d === undefined) throw new Error(`config-reference: ${path.join(".")}: no discriminator`);
      values.push(...literalValues(d));
      description ??= unwrap(d, discriminatorPath.join(".")).doc.description;
    }
    if (description === undefined) {
      throw new Error(
        `config-reference: ${discriminatorPath.join(".")} has no description: describe the first variant's`,
      );
    }
    if (u.optional || u.defaultValue !== undefined) {
      throw new Error(`config-reference: ${path.join(".")}: an optional union is not rendered`);
    }
    own.rows.push({
      path: discriminatorPath.join("."),
      type: values.map(code).join(" | "),
      default: { kind: "required" },
      description,
      secret: false,
      ...(when ? { when } : {}),
    });
    for (const variant of union.variants) {
      const d = variant._zod.def.shape[union.key] as Schema;
      walkObject(variant, path, undefined, { key: union.key, values: literalValues(d) }, union.key);
    }
  };

  walkObject(unwrap(schema, "(top level)").core as z.core.$ZodObject, [], undefined, undefined);
  return [...sections.values()].filter((s) => s.rows.length > 0);
}

function mergeVariants(a: OptionRow, b: OptionRow): OptionRow {
  if (a.when === undefined || b.when === undefined) return a;
  return { ...a, when: { key: a.when.key, values: [...a.when.values, ...b.when.values] } };
}

/** Display width as prettier measures it: wide East Asian characters count 2. */
function width(text: string): number {
  let w = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || (cp >= 0x300 && cp < 0x370)) continue;
    const wide =
      (cp >= 0x1100 && cp <= 0x115f) ||
      (cp >= 0x2e80 && cp <= 0xa4cf) ||
      (cp >= 0xac00 && cp <= 0xd7a3) ||
      (cp >= 0xf900 && cp <= 0xfaff) ||
      (cp >= 0xfe30 && cp <= 0xfe4f) ||
      (cp >= 0xff00 && cp <= 0xff60) ||
      (cp >= 0xffe0 && cp <= 0xffe6) ||
      (cp >= 0x1f300 && cp <= 0x1faff) ||
      (cp >= 0x20000 && cp <= 0x3fffd);
    w += wide ? 2 : 1;
  }
  return w;
}

/** A Markdown table aligned as prettier aligns it. */
function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const cell = (text: string): string => text.replace(/\r?\n/g, " ").replace(/\|/g, "\\|");
  const all = [header, ...rows].map((r) => r.map(cell));
  const widths = header.map((_, i) => Math.max(3, ...all.map((r) => width(r[i] ?? ""))));
  const line = (r: readonly string[]): string =>
    `| ${r.map((c, i) => c + " ".repeat((widths[i] ?? 0) - width(c))).join(" | ")} |`;
  const [head, ...body] = all;
  return [
    line(head ?? []),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...body.map(line),
  ].join("\n");
}

function describeRow(row: OptionRow): string {
  if (row.when === undefined) return row.description;
  const values = row.when.values.map((v) => code(`${row.when?.key ?? ""}: ${v}`)).join(" or ");
  return `(with ${values}) ${row.description}`;
}

/** The reference as Markdown: one `###` section and table per object, no trailing newline. */
export function renderConfigReference(sections = configReference()): string {
  const header = ["option", "type", "default", "description"];
  return sections
    .map((s) => {
      const title = s.path === "" ? "### Top level" : `### ${code(s.path)}`;
      const rows = s.rows.map((r) => [
        code(r.path),
        r.type,
        renderDefault(r.default),
        describeRow(r),
      ]);
      const intro = [
        ...(s.description ? [s.description] : []),
        ...(s.absent === undefined
          ? []
          : [`The whole section is optional; left out: ${s.absent}.`]),
      ];
      return [title, ...intro, table(header, rows)].join("\n\n");
    })
    .join("\n\n");
}

/**
 * `document` with the text between {@link BEGIN_MARKER} and {@link END_MARKER} replaced by
 * `block` (a blank line on each side).
 * @throws UsageError when the markers are missing, repeated or out of order.
 */
export function replaceGeneratedBlock(document: string, block: string): string {
  const begin = document.indexOf(BEGIN_MARKER);
  const end = document.indexOf(END_MARKER);
  if (
    begin < 0 ||
    end < begin ||
    document.indexOf(BEGIN_MARKER, begin + 1) >= 0 ||
    document.indexOf(END_MARKER, end + 1) >= 0
  ) {
    throw new UsageError(`expected one "${BEGIN_MARKER}" followed by one "${END_MARKER}"`);
  }
  return document.slice(0, begin + BEGIN_MARKER.length) + `\n\n${block}\n\n` + document.slice(end);
}

/** The text between the markers, without the blank lines around it. */
export function extractGeneratedBlock(document: string): string {
  const begin = document.indexOf(BEGIN_MARKER);
  const end = document.indexOf(END_MARKER);
  if (begin < 0 || end < begin) {
    throw new UsageError(`expected "${BEGIN_MARKER}" followed by "${END_MARKER}"`);
  }
  return document.slice(begin + BEGIN_MARKER.length, end).trim();
}

const help = `Usage: keystone-edge config-reference [--write FILE]

Prints the configuration reference as Markdown, generated from the configuration schema
(src/config/schema.ts): for every option its dotted path, type, default and meaning.

Options:
  --write FILE  replace the block between
                ${BEGIN_MARKER}
                and ${END_MARKER} in FILE instead of printing
                (docs/configuration.md: node dist/src/cli/main.js config-reference
                --write docs/configuration.md)
  -h, --help    show this help

Exit status: 0 done; 2 FILE cannot be read or written, or lacks the markers.
`;

export const configReferenceCommand: Command = {
  path: ["config-reference"],
  summary: "print the configuration reference (Markdown) generated from the schema",
  help,
  run(args, io) {
    try {
      const parsed = parseCommandArgs(args, { write: { type: "string" } }, false);
      if (parsed.kind === "help") {
        io.stdout(help);
        return Promise.resolve(ExitStatus.ok);
      }
      const block = renderConfigReference();
      const file = parsed.values.write;
      if (file === undefined) {
        io.stdout(`${block}\n`);
        return Promise.resolve(ExitStatus.ok);
      }
      if (typeof file !== "string" || file.length === 0) {
        throw new UsageError("--write needs a FILE");
      }
      let document: string;
      try {
        document = readFileSync(file, "utf8");
      } catch (error) {
        throw new UsageError(
          `${file}: cannot read (${String((error as { code?: unknown }).code)})`,
        );
      }
      const updated = replaceGeneratedBlock(document, block);
      if (updated === document) {
        io.stdout(`${file}: the configuration reference is up to date\n`);
      } else {
        try {
          writeFileSync(file, updated);
        } catch (error) {
          throw new UsageError(
            `${file}: cannot write (${String((error as { code?: unknown }).code)})`,
          );
        }
        io.stdout(`${file}: the configuration reference was rewritten\n`);
      }
      return Promise.resolve(ExitStatus.ok);
    } catch (error) {
      if (error instanceof EdgeError) {
        io.stderr(`keystone-edge config-reference: ${error.message}\n`);
        return Promise.resolve(exitStatusFor(error));
      }
      throw error;
    }
  },
};
