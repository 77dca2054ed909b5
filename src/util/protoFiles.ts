import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';

/**
 * A .proto file of ours: beside the module that uses it (`<moduleDir>/proto/<file>`, in dist/ once the build
 * copies it), else `src/<srcDir>/proto/<file>` found by walking up from that module (running from src/ under
 * vitest, or from dist/ before the copy). Undefined when neither exists.
 */
export function findProto(moduleDir: string, srcDir: string, file: string): string | undefined {
  const beside = join(moduleDir, 'proto', file);
  if (existsSync(beside)) return beside;
  for (let dir = moduleDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'src', srcDir, 'proto', file);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

/** A proto file loaded as every service of ours reads it: field names as written, longs as numbers, enums as names, defaults filled in. */
export function loadProto(file: string): protoLoader.PackageDefinition {
  return protoLoader.loadSync(file, {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
}
