/** Options every benchmark takes from `npm run bench -- NAME [flags]`. */
export interface BenchOptions {
  /** auto: CPU-profile the agent when a target is missed; always; never. */
  profile: 'auto' | 'always' | 'never';
  /** Repetitions of each measured phase (pairs interleaved): figures are medians over them, with the spread. */
  reps: number;
}
