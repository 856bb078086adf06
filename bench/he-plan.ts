/**
 * `hepoly he-plan` from the sources (no dist/ build needed), for the figures in the report:
 *   npx tsx bench/he-plan.ts checkpoints/quickstart --goal throughput --measure
 */
import { main } from '../src/cli/main.js';

process.exitCode = await main(['he-plan', ...process.argv.slice(2)]);
