/**
 * `npm run bench:tokens`: cold decode throughput of the token engine, against floors
 * measured in the same run.
 *
 * Cases (one core, no cache): a project token signed by the primary key of a 3-key ring;
 * the same signed by the key tried last (the staged key 0); a forged token (every key
 * tried); and two floors over the same bytes: a bare HMAC-SHA256, and a bare HMAC +
 * AES-128-CBC decrypt without msgpack. Prints ops/s, ratios and the targets.
 */
import { createDecipheriv, createHmac } from "node:crypto";
import { arch, cpus, platform, release, totalmem } from "node:os";
import {
  generateFernetKeyText,
  parseFernetKey,
  sealEnvelope,
  type FernetKey,
} from "../src/fernet/envelope.js";
import { KeyRing, staticKeyRing } from "../src/fernet/key-ring.js";
import { TokenDecoder } from "../src/token/decoder.js";
import type { EpochMicros } from "../src/units.js";

const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

function key(): FernetKey {
  const k = parseFernetKey(generateFernetKeyText());
  if (typeof k === "string") throw new Error(k);
  return k;
}

/** ops/s of `fn` over one round of ROUND_MS. */
function round(fn: () => unknown): number {
  let ops = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(ROUND_MS) * 1_000_000n;
  let now = start;
  while (now < end) {
    for (let i = 0; i < 1_000; i++) fn();
    ops += 1_000;
    now = process.hrtime.bigint();
  }
  return ops / (Number(now - start) / 1e9);
}

/**
 * Median ops/s of each case. Rounds are interleaved (every case once per round, in turn),
 * so drift in the machine's speed over the run hits every case alike, floors included.
 */
function measureAll<K extends string>(cases: Record<K, () => unknown>): Record<K, number> {
  const names = Object.keys(cases) as K[];
  for (const name of names) for (let i = 0; i < 20_000; i++) cases[name]();
  const rates = new Map<K, number[]>(names.map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of names) rates.get(name)?.push(round(cases[name]));
  }
  const median = (xs: number[]): number => {
    const sorted = [...xs].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] ?? 0;
  };
  return Object.fromEntries(names.map((n) => [n, median(rates.get(n) ?? [])])) as Record<K, number>;
}

const ring = KeyRing.from([0, 1, 2].map((index) => ({ index, key: key() })));
const decoder = new TokenDecoder({ keys: staticKeyRing(ring) });
const payload = {
  kind: "project",
  version: 2,
  userId: "3ec3164f750146be97f21559ee4d9c51",
  methods: ["password"],
  auditIds: ["GGgSgA3DRS-CUo4CYEd1cA"],
  projectId: "9438ea8b15eb47a2a2a29269380c8c38",
  expiresAtMicros: ((Date.now() + 3_600_000) * 1000) as EpochMicros,
} as const;
const primaryToken = decoder.mint(payload);
const lastKeyToken = decoder.mint(payload, { keyIndex: 0 });
const forgedToken = sealEnvelope(Buffer.from([0x90]), key());

for (const [name, token, expected] of [
  ["primary", primaryToken, "valid"],
  ["last key", lastKeyToken, "valid"],
  ["forged", forgedToken, "invalid"],
] as const) {
  const status = decoder.decode(token).status;
  if (status !== expected) throw new Error(`${name} token decodes as ${status}, not ${expected}`);
}

// Floors over the primary token's own bytes.
const bytes = Buffer.from(primaryToken, "base64url");
const signed = bytes.subarray(0, bytes.length - 32);
const primaryKey = ring.primary.key;
const hmacFloor = (): Buffer => createHmac("sha256", primaryKey.signing).update(signed).digest();
const cryptoFloor = (): Buffer => {
  const mac = createHmac("sha256", primaryKey.signing).update(signed).digest();
  const d = createDecipheriv("aes-128-cbc", primaryKey.encryption, bytes.subarray(9, 25));
  const out = d.update(bytes.subarray(25, bytes.length - 32));
  d.final();
  return mac.length > 0 ? out : mac;
};

const results = measureAll({
  hmacFloor,
  cryptoFloor,
  primary: () => decoder.decode(primaryToken),
  lastKey: () => decoder.decode(lastKeyToken),
  forged: () => decoder.decode(forgedToken),
});

const cpu = cpus()[0]?.model ?? "unknown CPU";
const fmt = (n: number): string => Math.round(n).toLocaleString("en-US").padStart(9);
const ratio = (n: number): string => (n / results.hmacFloor).toFixed(2);
console.log(`keystone-edge token engine benchmark`);
console.log(
  `machine: ${cpu}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, ${platform()} ${release()} ${arch()}`,
);
console.log(
  `node ${process.version}, ${ROUNDS} interleaved rounds of ${ROUND_MS} ms per case, median, one core`,
);
console.log(`token: ${primaryToken.length} characters, project scope, 3-key ring`);
console.log("");
console.log(`case                               ops/s   ×HMAC floor   target`);
const rows: [string, number, string, boolean | undefined][] = [
  ["floor: bare HMAC-SHA256", results.hmacFloor, "", undefined],
  ["floor: bare HMAC + AES-CBC", results.cryptoFloor, "", undefined],
  [
    "decode, primary key",
    results.primary,
    "≥ 70k/s, ≥ 0.35×",
    results.primary >= 70_000 && results.primary / results.hmacFloor >= 0.35,
  ],
  ["decode, last key of 3", results.lastKey, "≥ 45k/s", results.lastKey >= 45_000],
  ["reject forged (3 keys)", results.forged, "≥ 60k/s", results.forged >= 60_000],
];
for (const [name, ops, target, met] of rows) {
  const verdict = met === undefined ? "" : met ? "  met" : "  MISSED";
  console.log(
    `${name.padEnd(30)} ${fmt(ops)}   ${ratio(ops).padStart(6)}×      ${target}${verdict}`,
  );
}
console.log("");
console.log(`decode vs bare crypto floor: ${(results.primary / results.cryptoFloor).toFixed(2)}×`);
