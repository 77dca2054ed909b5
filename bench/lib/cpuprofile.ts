import { readFileSync } from 'node:fs';

/** The parts of a V8 .cpuprofile (Chrome DevTools format) this summary reads. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  /** The slice of the profile summarised, in ms. */
  windowMs: number;
  samples: number;
  /** Self time by where the code lives: a leafbridge file, an npm package, node internals, GC, idle. */
  byArea: { area: string; ms: number; pct: number }[];
  /** Functions by self time. */
  topFunctions: { fn: string; where: string; ms: number; pct: number }[];
}

const SPECIAL = new Set(['(garbage collector)', '(idle)', '(program)', '(root)']);

/**
 * Self time per function and per area of a --cpu-prof profile, optionally only over [fromUs, toUs]: V8 stamps
 * samples with CLOCK_MONOTONIC microseconds, the clock of `process.hrtime` in any process on this machine.
 */
export function summarizeProfile(
  file: string,
  window?: { fromUs: number; toUs: number },
  top = 20,
): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byFn = new Map<string, { fn: string; where: string; us: number }>();
  const byArea = new Map<string, number>();
  let t = profile.startTime;
  let total = 0;
  let samples = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (window && (t < window.fromUs || t > window.toUs)) continue;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const frame = frames.get(profile.samples[i] as number);
    if (!frame) continue;
    samples++;
    total += dt;
    const area = areaOf(frame.url, frame.functionName);
    byArea.set(area, (byArea.get(area) ?? 0) + dt);
    const fn = frame.functionName || '(anonymous)';
    const where = frame.url
      ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}`
      : SPECIAL.has(fn)
        ? ''
        : '(native)';
    const key = `${fn}@${where}`;
    const entry = byFn.get(key) ?? { fn, where, us: 0 };
    entry.us += dt;
    byFn.set(key, entry);
  }
  const pct = (us: number) => (total > 0 ? Math.round((1000 * us) / total) / 10 : 0);
  const ms = (us: number) => Math.round(us / 100) / 10;
  return {
    file,
    windowMs: window ? ms(window.toUs - window.fromUs) : ms(profile.endTime - profile.startTime),
    samples,
    byArea: [...byArea]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([area, us]) => ({ area, ms: ms(us), pct: pct(us) })),
    topFunctions: [...byFn.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((e) => ({ fn: e.fn, where: e.where, ms: ms(e.us), pct: pct(e.us) })),
  };
}

function areaOf(url: string, functionName: string): string {
  if (SPECIAL.has(functionName) && !url) return functionName;
  if (!url) return '(native / V8 builtins)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    const pkg = parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
    return `npm:${pkg}`;
  }
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/');
    return `node:${parts[0] === 'internal' ? `internal/${parts[1] ?? ''}` : parts[0]}`.replace(/\.js$/, '');
  }
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return `leafbridge:${url.slice(dist + '/dist/'.length)}`;
  return url;
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '');
}

/** The summary as text lines for the console. */
export function formatProfile(title: string, s: ProfileSummary, rows = 12): string {
  const lines = [`${title}: ${s.samples} samples over ${s.windowMs} ms (${s.file})`, '  self time by area:'];
  for (const a of s.byArea.slice(0, 10))
    lines.push(`    ${pad(`${a.pct}%`, 7)}${pad(`${a.ms} ms`, 11)}${a.area}`);
  lines.push('  top functions by self time:');
  for (const f of s.topFunctions.slice(0, rows))
    lines.push(`    ${pad(`${f.pct}%`, 7)}${pad(`${f.ms} ms`, 11)}${f.fn}  ${f.where}`);
  return lines.join('\n');
}

function pad(s: string, n: number): string {
  return s.padEnd(n);
}
