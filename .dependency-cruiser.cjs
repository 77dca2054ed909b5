/**
 * Import rules, checked by `npm run check:imports`: no cycles, and every import goes down a floor.
 * docs/architecture.md describes the floors; FLOORS below is where they are written down, and the rules that
 * keep them are generated from it.
 */
const { readdirSync } = require('node:fs');

/**
 * src/ bottom up, one entry per floor: each folder with the folders of its own floor it builds on (each of
 * them listed before it, so a floor has no circle). A folder imports itself, the floors below its own, and
 * those; never a floor above, never a sibling it does not name.
 */
const FLOORS = [
  // The ground: helpers, the agent's config schema, and the shared vocabulary (resources, the handler
  // contract, sightings, names, topics). Every feature imports them; they import no feature.
  { floor: 'ground', folders: { util: [], types: [], config: ['util'], model: ['util', 'config'] } },
  // What the features keep things in: the agent's SQLite, the Kubernetes API.
  { floor: 'infrastructure', folders: { database: [], kubeclient: [] } },
  {
    floor: 'features',
    folders: {
      registry: [],
      broker: [],
      install: [],
      controller: [],
      discovery: ['registry'],
      deviceplugin: ['registry'],
      sync: ['broker'],
      api: ['registry', 'sync'],
      hub: ['sync'],
    },
  },
];
/** The files directly under src/ (the Agent, the handler list) wire the features; only the CLI is above. */
const COMPOSITION = '^src/[^/]+\\.ts$';

const inTable = new Set(FLOORS.flatMap((f) => Object.keys(f.folders)));
const unplaced = readdirSync(`${__dirname}/src`, { withFileTypes: true })
  .filter((e) => e.isDirectory() && e.name !== 'cli' && !inTable.has(e.name))
  .map((e) => e.name);
if (unplaced.length > 0)
  throw new Error(`.dependency-cruiser.cjs: place src/${unplaced.join(', src/')} on a floor`);

const floorRules = FLOORS.flatMap(({ floor, folders }, i) => {
  const below = FLOORS.slice(0, i).flatMap((f) => Object.keys(f.folders));
  const listed = Object.keys(folders);
  return Object.entries(folders).map(([folder, buildsOn]) => {
    const late = buildsOn.filter((b) => listed.indexOf(b) < 0 || listed.indexOf(b) >= listed.indexOf(folder));
    if (late.length > 0)
      throw new Error(`.dependency-cruiser.cjs: ${folder} builds on ${late} (not listed before it)`);
    const may = [folder, ...below, ...buildsOn];
    return {
      name: `floors-${folder}`,
      comment: `src/${folder}/ (${floor}) imports only src/${may.join('/, src/')}/.`,
      severity: 'error',
      from: { path: `^src/${folder}/` },
      to: { path: '^(src|discovery-handlers|firmware-stubs)/', pathNot: `^src/(${may.join('|')})/` },
    };
  });
});

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    ...floorRules,
    {
      name: 'floors-composition',
      comment: 'The composition root (src/agent.ts, src/builtinHandlers.ts) imports every floor but the CLI.',
      severity: 'error',
      from: { path: COMPOSITION },
      to: { path: '^(src/cli/|firmware-stubs/)' },
    },
    {
      name: 'handlers-only-from-composition',
      comment:
        'The handler list (src/builtinHandlers.ts) is the one place src/ names the discovery handlers.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/builtinHandlers\\.ts$' },
      to: { path: '^discovery-handlers/' },
    },
    {
      name: 'simulators-only-for-simulate-and-demo',
      comment: 'Only the `simulate` and `demo` commands load the firmware stubs.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/(simulateCommand|demoCommand|demoDevices)\\.ts$' },
      to: { path: '^firmware-stubs/' },
    },
    {
      name: 'examples-only-for-the-demo',
      comment:
        'The demo runs an example external handler (examples/tcp-handler); nothing else in src/ loads examples/.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/demoDevices\\.ts$' },
      to: { path: '^examples/' },
    },
    {
      name: 'commands-load-lazily',
      comment:
        'src/cli/main.ts imports each command module when it runs, so the agent does not carry the others.',
      severity: 'error',
      from: { path: '^src/cli/main\\.ts$' },
      to: { path: '^src/cli/[^/]+Command\\.ts$', dependencyTypesNot: ['dynamic-import'] },
    },
    {
      name: 'handlers-stay-small',
      comment:
        'Discovery handlers import only the model (the handler contract, resources) and util, never the agent.',
      severity: 'error',
      from: { path: '^discovery-handlers/' },
      to: { path: '^src/', pathNot: '^src/(model|util)/' },
    },
    {
      name: 'stubs-stay-apart',
      comment: 'Firmware stubs are devices: they speak protocols, they do not import the agent.',
      severity: 'error',
      from: { path: '^firmware-stubs/' },
      to: { path: '^(src|discovery-handlers)/', pathNot: '^src/util/' },
    },
    {
      name: 'src-not-tests',
      severity: 'error',
      from: { path: '^(src|discovery-handlers|firmware-stubs)/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
