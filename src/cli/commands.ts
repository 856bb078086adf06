import type { CommandModule } from 'yargs';
import { trainCommand } from './train.js';
import { evalCommand } from './eval.js';
import { summaryCommand } from './summary.js';
import { heValidateCommand } from './he-validate.js';
import { hePlanCommand } from './he-plan.js';
import { pruneCommand } from './prune.js';
import { federateCommand } from './federate.js';
import { makeDataCommand } from './make-data.js';
import { sampleCommand } from './sample.js';
import { reportCommand } from './report.js';
import { opsCommand } from './ops.js';
import { schemaCommand } from './schema.js';
import { importCommand } from './import.js';
import { exportCommand } from './export.js';
import { serveCommand } from './serve.js';
import { workerCommand } from './worker.js';
import { predictCommand } from './predict.js';
import { teachersCommand } from './teachers.js';

/**
 * Every `hepoly` command, in the order `hepoly --help` lists them. A new command is its own file
 * declaring `defineCommand(...)` (see ./command.ts) and one line here.
 */
export const COMMANDS: CommandModule[] = [
  trainCommand,
  evalCommand,
  summaryCommand,
  heValidateCommand,
  hePlanCommand,
  pruneCommand,
  federateCommand,
  makeDataCommand,
  sampleCommand,
  reportCommand,
  opsCommand,
  teachersCommand,
  schemaCommand,
  importCommand,
  exportCommand,
  serveCommand,
  workerCommand,
  predictCommand,
];
