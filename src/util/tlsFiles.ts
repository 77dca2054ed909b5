import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { ConfigError, errorMessage } from './errors.js';
import type { Logger } from './logger.js';

/** The PEM files a TLS server is made of: its certificate chain and key, and the CAs its clients' come from. */
export interface TlsFilePaths {
  cert: string;
  key: string;
  ca?: string;
}

/** What `setSecureContext` takes: every TLS server that serves these files (tls.Server, https.Server). */
export interface SecureContextTarget {
  setSecureContext(options: SecureContextOptions): void;
}

/**
 * A server's certificate, key and client CA, read from files at start (a bad set stops the start) and read
 * again every `intervalMs`. A changed set that makes a valid context is handed to every target server, where
 * it applies to new handshakes only: connected clients keep their connections. A set that does not (a key
 * written before its certificate, a broken file) keeps the last good one and is logged once per version.
 */
export class TlsFiles {
  private digest = '';
  private failedDigest: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly targets = new Set<SecureContextTarget>();

  constructor(
    private readonly paths: TlsFilePaths,
    private readonly o: { logger: Logger; intervalMs: number; what: string },
  ) {}

  /** The context options from the files now; throws ConfigError when they cannot make one. */
  load(): SecureContextOptions {
    let files: Buffer[];
    try {
      files = this.names.map((file) => readFileSync(file));
    } catch (err) {
      throw new ConfigError([`${this.o.what}: ${errorMessage(err)}`]);
    }
    const options = toOptions(files);
    try {
      createSecureContext(options);
    } catch (err) {
      throw new ConfigError([
        `${this.o.what}: the certificate, key and CA files do not fit: ${errorMessage(err)}`,
      ]);
    }
    this.digest = digestOf(files);
    return options;
  }

  /** Reads the files every interval and applies a valid change to `targets`. */
  watch(...targets: SecureContextTarget[]): void {
    for (const t of targets) this.targets.add(t);
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.targets.clear();
  }

  /** One look at the files (the timer calls it; exposed for a reload on demand). */
  async check(): Promise<void> {
    let files: Buffer[];
    try {
      files = await Promise.all(this.names.map((file) => readFile(file)));
    } catch (err) {
      this.failed('unreadable', errorMessage(err));
      return;
    }
    const digest = digestOf(files);
    if (digest === this.digest) return;
    const options = toOptions(files);
    try {
      createSecureContext(options);
      for (const target of this.targets) target.setSecureContext(options);
    } catch (err) {
      this.failed(digest, errorMessage(err));
      return;
    }
    this.digest = digest;
    this.failedDigest = undefined;
    this.o.logger.info({ what: this.o.what, ...describe(files[0] as Buffer) }, 'TLS files reloaded');
  }

  private get names(): string[] {
    return [this.paths.cert, this.paths.key, ...(this.paths.ca ? [this.paths.ca] : [])];
  }

  private failed(version: string, why: string): void {
    if (version !== this.failedDigest)
      this.o.logger.error({ what: this.o.what, err: why }, 'TLS files not reloaded; the last good ones stay');
    this.failedDigest = version;
  }
}

function toOptions([cert, key, ca]: Buffer[]): SecureContextOptions {
  return { cert, key, ...(ca ? { ca } : {}) };
}

function digestOf(files: Buffer[]): string {
  const hash = createHash('sha256');
  for (const f of files) hash.update(createHash('sha256').update(f).digest());
  return hash.digest('hex');
}

/** The leaf certificate's subject and expiry, for the log (nothing secret). */
function describe(pem: Buffer): Record<string, string> {
  try {
    const cert = new X509Certificate(pem);
    return { subject: cert.subject.replace(/\n/g, ', '), validTo: cert.validTo };
  } catch {
    return {};
  }
}
