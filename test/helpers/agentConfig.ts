/** A minimal agent config for tests: ports 0 on loopback, anonymous devices, the given upstream. */
export function agentConfig(
  dataDir: string,
  upstreamUrl: string | undefined,
  extra: Record<string, unknown> = {},
) {
  return {
    node: 'edge-1',
    dataDir,
    broker: { listen: '127.0.0.1:0' },
    // Anyone on loopback may use the API, as anonymous devices may use the broker: these tests are about
    // other things (test/integration/httpAuth.test.ts checks who may use it).
    http: { listen: '127.0.0.1:0', auth: { anonymous: 'read-write' } },
    ...(upstreamUrl
      ? { upstream: { url: upstreamUrl, reconnect: { minDelay: '100ms', maxDelay: '1s' } } }
      : {}),
    auth: { allowAnonymous: true },
    // Never a real kubelet's directory in tests; tests that want device plugins give a test kubelet's.
    devicePlugins: { dir: `${dataDir}/no-kubelet` },
    // Never whatever cluster $KUBECONFIG points at; tests that want one give the test API server's.
    kubernetes: 'off',
    ...extra,
  };
}
