/** What the dashboard shows of one device's telemetry: its last message and its rate. */
export interface TelemetryView {
  device: string;
  /** The stream of the last message (`devices/{id}/telemetry/{stream}`). */
  stream: string;
  /** The last payload as text, cut to PREVIEW_CHARS (binary payloads as `<N bytes>`). Untrusted. */
  value: string;
  bytes: number;
  /** When the last message arrived (epoch ms). */
  at: number;
  /** Messages seen since the dashboard started watching. */
  count: number;
  /** Messages per second over the last RATE_WINDOW ticks. */
  rate: number;
}

export const PREVIEW_CHARS = 160;
const RATE_WINDOW = 5;

interface Entry extends TelemetryView {
  /** Messages per tick, newest last. */
  window: number[];
  thisTick: number;
  changed: boolean;
  /** The last payload, turned into `value` once per tick rather than once per message. */
  pending?: Buffer | undefined;
}

/**
 * Last value and rate per device, kept only while someone watches (the feed drops the whole object when
 * the last page closes). Bounded: devices beyond `maxDevices` are not tracked.
 */
export class TelemetryStats {
  private readonly entries = new Map<string, Entry>();
  constructor(
    private readonly maxDevices: number,
    private readonly tickSeconds: number,
  ) {}

  record(device: string, stream: string, payload: Buffer, now: number): void {
    let entry = this.entries.get(device);
    if (!entry) {
      if (this.entries.size >= this.maxDevices) return;
      entry = {
        device,
        stream,
        value: '',
        bytes: 0,
        at: now,
        count: 0,
        rate: 0,
        window: [],
        thisTick: 0,
        changed: true,
      };
      this.entries.set(device, entry);
    }
    entry.stream = stream;
    entry.bytes = payload.length;
    entry.at = now;
    entry.count++;
    entry.thisTick++;
    entry.changed = true;
    entry.pending = payload;
  }

  /** Closes a tick: updates the rates and returns the views that changed since the last tick. */
  tick(): TelemetryView[] {
    const changed: TelemetryView[] = [];
    for (const entry of this.entries.values()) {
      entry.window.push(entry.thisTick);
      if (entry.window.length > RATE_WINDOW) entry.window.shift();
      entry.thisTick = 0;
      const sum = entry.window.reduce((a, b) => a + b, 0);
      const rate = round(sum / (entry.window.length * this.tickSeconds));
      if (rate !== entry.rate) entry.changed = true;
      entry.rate = rate;
      if (entry.pending) {
        entry.value = preview(entry.pending);
        entry.pending = undefined;
      }
      if (!entry.changed) continue;
      entry.changed = false;
      changed.push(view(entry));
    }
    return changed;
  }

  all(): TelemetryView[] {
    return [...this.entries.values()].map(view);
  }
}

function view(e: Entry): TelemetryView {
  return {
    device: e.device,
    stream: e.stream,
    value: e.value,
    bytes: e.bytes,
    at: e.at,
    count: e.count,
    rate: e.rate,
  };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

/**
 * A payload as a short line of text: UTF-8 cut to PREVIEW_CHARS with control characters shown as `·`;
 * a payload that is mostly not text (invalid UTF-8, control bytes) as `<N bytes>`.
 */
export function preview(payload: Buffer): string {
  const head = payload.subarray(0, PREVIEW_CHARS * 4);
  let text = head.toString('utf8');
  if (head.length < payload.length) text = text.replace(/\uFFFD+$/, ''); // a character cut in two
  let odd = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0) ?? 0;
    if (c === 0xfffd || c < 0x09 || (c > 0x0d && c < 0x20) || c === 0x7f) odd++;
  }
  if (text.length > 0 && odd / text.length > 0.1) return `<${payload.length} bytes>`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  const clean = text.replace(/[\u0000-\u001f\u007f]/g, '·');
  const chars = [...clean];
  const cut = chars.length > PREVIEW_CHARS || head.length < payload.length;
  return cut ? `${chars.slice(0, PREVIEW_CHARS).join('')}…` : clean;
}
