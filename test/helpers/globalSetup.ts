import { execFileSync } from 'node:child_process';

/** Tests that spawn the agent or a simulator run the built CLI; build it once unless `npm test` already did. */
export default function setup(): void {
  if (process.env.LEAFBRIDGE_BUILT === '1') return;
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
}
