import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../../src/api/metrics.js';

/** The Grafana dashboard in deploy/grafana/ queries only metrics the agent exports. */
describe('deploy/grafana/leafbridge-agents.json', () => {
  const dashboard = JSON.parse(readFileSync('deploy/grafana/leafbridge-agents.json', 'utf8')) as {
    panels: { title: string; targets: { expr: string }[] }[];
  };

  it('every metric a panel queries is one the agent exports', async () => {
    const registry = createMetrics({ received: {}, brokerClients: () => 0, refused: {} });
    const exported = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    const queried = dashboard.panels.flatMap((p) =>
      p.targets.flatMap((t) => [...t.expr.matchAll(/leafbridge_[a-z0-9_]+/g)].map((m) => [p.title, m[0]])),
    );
    expect(queried.length).toBeGreaterThanOrEqual(dashboard.panels.length);
    const missing = queried.filter(([, name]) => !exported.has(name as string));
    expect(missing).toEqual([]);
  });

  it('counters are read as rates or increases, gauges as they are', async () => {
    const registry = createMetrics({ received: {}, brokerClients: () => 0, refused: {} });
    const types = new Map((await registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]));
    for (const p of dashboard.panels) {
      for (const t of p.targets) {
        for (const [name] of t.expr.matchAll(/leafbridge_[a-z0-9_]+/g)) {
          if (types.get(name) === 'counter') expect(t.expr, p.title).toMatch(/\b(rate|increase)\(/);
        }
      }
    }
  });
});
