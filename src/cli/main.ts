import { builtinHandlers } from '../builtinHandlers.js';
import { configReference } from '../config/reference.js';
import { handlersReference } from '../discovery/reference.js';
import { LeafbridgeError } from '../util/errors.js';
import { hashPassword } from '../util/password.js';

const USAGE = `usage: leafbridge <command> [options]

commands:
  agent --config FILE      run the edge agent
  controller               the cluster controller: broker Pods/Jobs and Services per device, lost nodes
  hub --broker URL         the cloud twin hub: edges' reports → Device status, spec.desired → edges
  demo                     the agent with simulated sensors and an embedded cloud broker, on 127.0.0.1
  manifests [options]      print the install as Kubernetes YAML (| kubectl apply -f -)
  get devices|configs      kubectl-like tables (-o wide|json|yaml, -l SELECTOR): from the agent's API
                           (--server URL) or from the cluster (--cluster, --kubeconfig FILE, -n NS, -A)
  simulate KIND [...]      simulated devices: camera, plc, serial, mqtt-sensor, modbus
  config-reference         print the configuration reference (Markdown), generated from the schema
  handlers-reference       print the discovery handlers' details reference (Markdown)
  token [--name N] [--role R]  a bearer token for the HTTP API and its tokens-file entry (docs/security.md)
  hash-password [PASSWORD] print a password hash for auth.devices / auth.users (reads stdin without an argument)
`;

type Command = (argv: string[]) => Promise<number>;

// Each command's module loads only when it runs: the agent does not carry the demo's simulators, the manifests'
// object models or the controller (together ~15 MB of the agent's resident memory when imported up front).
const commands: Record<string, Command> = {
  agent: async (argv) => (await import('./agentCommand.js')).agentCommand(argv),
  controller: async (argv) => (await import('./controllerCommand.js')).controllerCommand(argv),
  demo: async (argv) => (await import('./demoCommand.js')).demoCommand(argv),
  get: async (argv) => (await import('./getCommand.js')).getCommand(argv),
  hub: async (argv) => (await import('./hubCommand.js')).hubCommand(argv),
  manifests: async (argv) => (await import('./manifestsCommand.js')).manifestsCommand(argv),
  simulate: async (argv) => (await import('./simulateCommand.js')).simulateCommand(argv),
  token: async (argv) => (await import('./tokenCommand.js')).tokenCommand(argv, readStdin),
  'config-reference': async () => {
    process.stdout.write(configReference());
    return 0;
  },
  'handlers-reference': async () => {
    process.stdout.write(handlersReference(builtinHandlers));
    return 0;
  },
  'hash-password': async (argv) => {
    const password = argv[0] ?? (await readStdin()).replace(/\r?\n$/, '');
    if (!password) {
      process.stderr.write('hash-password: empty password\n');
      return 2;
    }
    process.stdout.write(`${await hashPassword(password)}\n`);
    return 0;
  },
};

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<number> {
  const [name, ...argv] = process.argv.slice(2);
  const command = name ? commands[name] : undefined;
  if (!command) {
    process.stderr.write(USAGE);
    return name === '--help' || name === 'help' ? 0 : 2;
  }
  return command(argv);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // A LeafbridgeError says what is wrong and what to do; anything else gets its stack, for a bug report.
    const text =
      err instanceof LeafbridgeError
        ? `${err.code}: ${err.message}`
        : err instanceof Error
          ? err.stack
          : String(err);
    process.stderr.write(`leafbridge: ${text}\n`);
    process.exitCode = 1;
  },
);
