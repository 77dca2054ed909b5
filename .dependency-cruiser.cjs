/** Import rules: no cycles, and the layers only import downwards. */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'handlers-stay-small',
      comment:
        'Discovery handlers import only the model (the handler interface, resources) and shared utilities, never the agent.',
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
      name: 'lower-layers-stay-low',
      comment: 'util, config and store never import the layers above them.',
      severity: 'error',
      from: { path: '^src/(util|config|store)/' },
      to: { path: '^src/(broker|sync|api|cli|agent|discovery|kubeclient)' },
    },
    {
      name: 'kubeclient-stays-low',
      comment:
        'The Kubernetes client (connections, errors, list+watch) sits under every caller: it imports only util.',
      severity: 'error',
      from: { path: '^src/kubeclient/' },
      to: { path: '^src/', pathNot: '^src/(kubeclient|util)/' },
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
