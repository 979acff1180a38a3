// Every CLI command module, one file each. Add a line here for a new command.
import type { CommandModule } from 'yargs';
import { setupBenchmarkCommand } from './setup-benchmark';
import { localBenchCommand } from './local-bench';
import { minerCommand } from './miner';
import { evaluateCommand } from './evaluate';
import { statusCommand } from './status';
import { calibrateCommand } from './calibrate';

export const commands: CommandModule<any, any>[] = [
  setupBenchmarkCommand,
  localBenchCommand,
  minerCommand,
  evaluateCommand,
  calibrateCommand,
  statusCommand,
];
