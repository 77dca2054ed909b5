/**
 * The device's state and how a desired twin changes it: a simulated thermostat with three settings. A desired
 * twin is checked key by key: valid settings are applied, invalid or unknown ones are refused and reported as
 * such, so the cloud sees what the device made of its request.
 */

export const Modes = ['heat', 'eco', 'off'] as const;
export type Mode = (typeof Modes)[number];

export interface ThermostatSettings {
  /** Target temperature, °C. */
  setpoint: number;
  mode: Mode;
  /** How often telemetry is sent. */
  telemetryIntervalMs: number;
}

export const defaultSettings: ThermostatSettings = { setpoint: 21, mode: 'heat', telemetryIntervalMs: 2_000 };

type Check = (value: unknown) => string | undefined;

const checks: Record<keyof ThermostatSettings, Check> = {
  setpoint: (v) => (typeof v === 'number' && v >= 5 && v <= 35 ? undefined : 'must be a number from 5 to 35'),
  mode: (v) => ((Modes as readonly unknown[]).includes(v) ? undefined : `must be one of ${Modes.join(', ')}`),
  telemetryIntervalMs: (v) =>
    Number.isInteger(v) && (v as number) >= 100 && (v as number) <= 3_600_000
      ? undefined
      : 'must be an integer from 100 to 3600000',
};

export interface Applied {
  settings: ThermostatSettings;
  /** `key: why` for every desired key that was not applied. */
  refused: string[];
}

/** The settings after a desired twin (without `$version`): each valid key taken, the others refused. */
export function applyDesired(current: ThermostatSettings, desired: Record<string, unknown>): Applied {
  const settings = { ...current };
  const refused: string[] = [];
  for (const [key, value] of Object.entries(desired)) {
    const check = checks[key as keyof ThermostatSettings];
    const problem = check ? check(value) : 'unknown setting';
    if (problem) refused.push(`${key}: ${problem}`);
    else (settings as Record<string, unknown>)[key] = value;
  }
  return { settings, refused };
}

/** Parses a desired twin payload: a JSON object with an integer `$version`. */
export function parseDesired(
  payload: Buffer,
): { version: number; desired: Record<string, unknown> } | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return undefined;
  const { $version, ...desired } = doc as Record<string, unknown>;
  if (!Number.isInteger($version)) return undefined;
  return { version: $version as number, desired };
}

/** The room: the temperature drifts a fifth of the way to where the mode pulls it, plus a little noise. */
export function nextTemperature(now: number, settings: ThermostatSettings): number {
  const target =
    settings.mode === 'off' ? 15 : settings.mode === 'eco' ? settings.setpoint - 3 : settings.setpoint;
  const next = now + (target - now) * 0.2 + (Math.random() - 0.5) * 0.1;
  return Math.round(next * 100) / 100;
}
