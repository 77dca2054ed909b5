import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { crdFiles } from '../../src/install/crds.js';
import { CHART_DIR, chartFiles } from '../../src/install/helmChart.js';
import { DISTRIBUTIONS, defaultInstallOptions, packageVersion } from '../../src/install/manifests.js';
import { ROOT } from '../helpers/processes.js';

/**
 * The generated files of deploy/helm/leafbridge. The chart as a whole (its hand-written templates too) is
 * rendered by helm and compared with the code's objects in test/cluster/install.test.ts.
 */

const CHART = join(ROOT, 'deploy', CHART_DIR);
const files = chartFiles(builtinHandlers);

describe('deploy/helm/leafbridge holds what the code generates (regenerate: npx vitest run test/unit/helmChart.test.ts -u)', () => {
  it.each(files.map((f) => [f.path, f.text]))('%s', async (path, text) => {
    await expect(text).toMatchFileSnapshot(join(CHART, path));
  });

  it('no stale files in crds/, and the CRDs are those of deploy/crds', () => {
    const crds = files.filter((f) => f.path.startsWith('crds/')).map((f) => f.path.slice('crds/'.length));
    expect(readdirSync(join(CHART, 'crds')).sort()).toEqual(crds.sort());
    expect(crds.sort()).toEqual(
      crdFiles(builtinHandlers)
        .map((f) => f.file)
        .sort(),
    );
    for (const f of crdFiles(builtinHandlers)) {
      const chartCrd = files.find((c) => c.path === `crds/${f.file}`)!;
      expect(parse(chartCrd.text)).toEqual(parse(f.text));
    }
  });

  it('a values file per distribution; Chart.yaml carries the package version', () => {
    const values = readdirSync(CHART).filter((f) => /^values-.+\.yaml$/.test(f));
    expect(values.sort()).toEqual(
      Object.keys(DISTRIBUTIONS)
        .map((d) => `values-${d}.yaml`)
        .sort(),
    );
    const chart = parse(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as Record<string, string>;
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'leafbridge', appVersion: packageVersion() });
  });

  it('values.yaml sets every value the schema knows, and nothing else', () => {
    const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as {
      properties: Record<string, unknown>;
    };
    expect(Object.keys(values).sort()).toEqual(Object.keys(schema.properties).sort());
    // The defaults that are plain values (the rest: test/cluster/install.test.ts renders and compares).
    const d = defaultInstallOptions();
    expect(values).toMatchObject({
      namespace: d.namespace,
      handlers: d.handlers,
      externalHandlers: d.externalHandlers,
      devicePluginDir: d.devicePluginDir,
      controller: { enabled: d.controller },
      hub: { enabled: false },
    });
  });
});
