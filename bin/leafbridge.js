#!/usr/bin/env node
import { relaunchWithHeapLimits } from '../dist/src/cli/runtime.js';

if (!relaunchWithHeapLimits(process.argv)) await import('../dist/src/cli/main.js');
