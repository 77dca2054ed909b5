import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { accepts, DetailsError, parseDetails } from '../../examples/tcp-handler/targets.js';
import { freePort } from '../helpers/processes.js';

/** examples/tcp-handler: the details it accepts from the agent (YAML, as Akri sends them) and its probe. */
describe('examples/tcp-handler details and probe', () => {
  it('reads targets and the interval from the YAML details', () => {
    expect(
      parseDetails('targets: ["127.0.0.1:5020", "[::1]:502", "gw.plant.local:80"]\nintervalMs: 500\n'),
    ).toEqual({
      targets: [
        { host: '127.0.0.1', port: 5020 },
        { host: '::1', port: 502 },
        { host: 'gw.plant.local', port: 80 },
      ],
      intervalMs: 500,
    });
    expect(parseDetails('targets: [a:1]').intervalMs).toBe(2_000);
  });

  it('names every problem of bad details at once', () => {
    const problems = (yaml: string) => {
      try {
        parseDetails(yaml);
        return 'accepted';
      } catch (err) {
        expect(err).toBeInstanceOf(DetailsError);
        return (err as Error).message;
      }
    };
    expect(problems('')).toBe('targets: a list of host:port');
    expect(problems('targets: [a, "b:99999", 7]\nintervalMs: 5')).toBe(
      'targets[0]: not host:port; targets[1]: not host:port; targets[2]: not host:port; intervalMs: an integer from 100 to 3600000',
    );
    expect(problems('[1, 2]')).toMatch(/^details must be a mapping/);
    expect(problems('targets: [')).toMatch(/^details are not YAML/);
    expect(problems(`targets: [${Array.from({ length: 300 }, (_, i) => `"h:${i + 1}"`).join(',')}]`)).toBe(
      'targets: at most 256',
    );
  });

  it('sees a listening port as open and a refused one as closed', async () => {
    const server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const open = (server.address() as { port: number }).port;
    const closed = await freePort();
    try {
      expect(await accepts('127.0.0.1', open, 2_000)).toBe(true);
      expect(await accepts('127.0.0.1', closed, 2_000)).toBe(false);
    } finally {
      server.close();
    }
  });
});
