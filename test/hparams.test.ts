// hparams validation: every key of hparams.json is checked, and a missing,
// unknown or bad key is an error naming it (its full dotted path), never a
// silent default.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { calibrationFor, loadHparams, LAYER_RECORD_KEYS, parseHparams, recordsLayers, recordsTrajectory, TRAJECTORY_KEYS } from '../src/config/hparams';
import { PROJECT_ROOT } from '../src/util/paths';
import { UserError } from '../src/errors';
import { tmpDir } from './helpers/tmp';

const SHIPPED = path.join(PROJECT_ROOT, 'hparams', 'hparams.json');
type Json = Record<string, unknown>;
const shipped = (): Json => JSON.parse(fs.readFileSync(SHIPPED, 'utf8')) as Json;

/** Dotted paths of every leaf and of every object in `obj`. */
function paths(obj: Json, prefix = ''): { leaves: string[]; objects: string[] } {
  const out = { leaves: [] as string[], objects: [prefix] };
  for (const [k, v] of Object.entries(obj)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sub = paths(v as Json, `${prefix}${k}.`);
      out.leaves.push(...sub.leaves);
      out.objects.push(...sub.objects);
    } else {
      out.leaves.push(`${prefix}${k}`);
    }
  }
  return out;
}

/** A copy of `obj` with `edit` applied to the object holding the dotted path's last key. */
function edited(obj: Json, dotted: string, edit: (parent: Json, key: string) => void): Json {
  const copy = JSON.parse(JSON.stringify(obj)) as Json;
  const keys = dotted.split('.');
  let parent = copy;
  for (const k of keys.slice(0, -1)) parent = parent[k] as Json;
  edit(parent, keys[keys.length - 1]);
  return copy;
}

function rejects(obj: unknown, re: RegExp, what: string): UserError {
  let err: unknown = null;
  try {
    parseHparams(obj, 'hp.json');
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof UserError, `${what}: accepted, or not a UserError (${String(err)})`);
  assert.match((err as Error).message, re, what);
  return err as UserError;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('hparams validation', function () {
  it('loads the shipped hparams/hparams.json', function () {
    assert.deepEqual(loadHparams(SHIPPED), shipped());
  });

  it('names a missing key by its full path, for every key', function () {
    const { leaves } = paths(shipped());
    assert.ok(leaves.length >= 30, `only ${leaves.length} keys found`);
    for (const p of leaves) {
      rejects(edited(shipped(), p, (o, k) => delete o[k]), new RegExp(`^hp\\.json: missing key "${esc(p)}"$`), `without ${p}`);
    }
  });

  it('names a key of the wrong type by its full path, with what it must be and what it got, for every key', function () {
    // The trajectory's and the records' limits may be null (not applied where not calibrated): a string is wrong for them.
    for (const p of paths(shipped()).leaves) {
      const wrong = /((head|mlp|attention|mlp_record|attention_record)_trajectory_excess|head_(input|grad)_error|layer_(forward|backward)_error|layer_small_term_(share|energy)|mlp_grad_small_term_excess)$/.test(p) ? 'x' : null;
      rejects(edited(shipped(), p, (o, k) => (o[k] = wrong)), new RegExp(`^hp\\.json: "${esc(p)}" must be .+, got ${esc(JSON.stringify(wrong))}$`), `${p} = ${JSON.stringify(wrong)}`);
    }
  });

  it('names an out-of-range value and a misspelt key', function () {
    rejects(edited(shipped(), 'optimizer.lr', (o, k) => (o[k] = 0)), /^hp\.json: "optimizer\.lr" must be a number in \(0, 1\], got 0$/, 'lr 0');
    rejects(edited(shipped(), 'eval_steps', (o, k) => (o[k] = 2.5)), /^hp\.json: "eval_steps" must be an integer in \[1, 100000\], got 2\.5$/, 'eval_steps 2.5');
    rejects(edited(shipped(), 'verification.cuda.probe_loss_abs', (o, k) => (o[k] = '0.15')), /"verification\.cuda\.probe_loss_abs" must be a number .*, got "0\.15"$/, 'a string threshold');
    const typo = edited(shipped(), 'evaluation_runs', (o) => (o.evaluation_run = 3));
    const e = rejects(typo, /^hp\.json: unknown key "evaluation_run"$/, 'evaluation_run');
    assert.match(e.hint ?? '', /known keys: .*evaluation_runs/);
  });

  it('names an unknown key at every level by its full path', function () {
    for (const p of paths(shipped()).objects) {
      const obj = p ? edited(shipped(), `${p}extra_key`, (o, k) => (o[k] = 1)) : { ...shipped(), extra_key: 1 };
      rejects(obj, new RegExp(`^hp\\.json: unknown key "${esc(p)}extra_key"$`), `${p}extra_key`);
    }
  });

  it('refuses a section that is not an object, and a file that is not one', function () {
    rejects(edited(shipped(), 'verification', (o, k) => (o[k] = [1])), /^hp\.json: verification\.? must be a JSON object$/, 'verification as a list');
    rejects([], /the file must be a JSON object/, 'a list');
  });

  it('checks every calibration record, naming the bad field by its place in the list', function () {
    const rec = (o: Json) => edited(shipped(), 'verification.cpu.calibrations', (p, k) => (p[k] = [{ ...(p[k] as Json[])[0], ...o }]));
    rejects(rec({ date: '2.12.2026' }), /^hp\.json: "verification\.cpu\.calibrations\[0\]\.date" must be a date YYYY-MM-DD, got "2\.12\.2026"$/, 'a bad date');
    rejects(rec({ device: '' }), /"verification\.cpu\.calibrations\[0\]\.device" must be a non-empty string/, 'no device');
    rejects(rec({ thresholds: { probe_loss_abs: 0.1 } }), /missing key "verification\.cpu\.calibrations\[0\]\.thresholds\.cell_loss_abs"$/, 'thresholds in part');
    rejects(rec({ by: 'me' }), /unknown key "verification\.cpu\.calibrations\[0\]\.by"$/, 'an unknown field');
    rejects(edited(shipped(), 'verification.cuda.calibrations', (p, k) => (p[k] = {})), /"verification\.cuda\.calibrations" must be a JSON list, got \{\}$/, 'not a list');
  });

  it('counts the shipped CPU thresholds as calibrated on the CPU, and a record only while its thresholds are in force', function () {
    const hp = loadHparams(SHIPPED);
    assert.ok(calibrationFor(hp.verification.cpu, 'cpu'), 'the CPU demo and local tournament need calibrated CPU thresholds');
    assert.equal(calibrationFor(hp.verification.cpu, 'NVIDIA H200'), undefined);
    assert.equal(calibrationFor({ ...hp.verification.cpu, cell_loss_abs: hp.verification.cpu.cell_loss_abs * 2 }, 'cpu'), undefined, 'a hand edit voids the record');
  });

  it('records the trajectory where a limit reads it: the shipped CPU and CUDA thresholds do, none set does not', function () {
    const hp = loadHparams(SHIPPED);
    assert.equal(recordsTrajectory(hp.verification.cpu), true);
    const none = { ...hp.verification.cpu, ...Object.fromEntries(TRAJECTORY_KEYS.map((k) => [k, null])) };
    assert.equal(recordsTrajectory(none), false);
    for (const k of TRAJECTORY_KEYS) assert.equal(recordsTrajectory({ ...none, [k]: 1 }), true, `${k} alone`);
    assert.equal(recordsTrajectory(hp.verification.cuda), true, 'CUDA records since its limits were calibrated on an H200 (README, The trajectory)');
    assert.equal(recordsLayers(hp.verification.cpu), true, 'the CPU reads the layers\' record');
    const none2 = { ...hp.verification.cpu, ...Object.fromEntries(LAYER_RECORD_KEYS.map((k) => [k, null])) };
    assert.equal(recordsLayers(none2), false);
    for (const k of LAYER_RECORD_KEYS) assert.equal(recordsLayers({ ...none2, [k]: 1 }), true, `${k} alone`);
    assert.equal(recordsLayers(hp.verification.cuda), false, 'CUDA does not take the layers\' record until its limits are calibrated on a card (README, The layers\' record)');
  });

  it('names the file it read', function () {
    const d = tmpDir('hparams');
    const file = path.join(d, 'hparams.json');
    fs.writeFileSync(file, JSON.stringify(edited(shipped(), 'netuid', (o, k) => (o[k] = 70000))));
    assert.throws(() => loadHparams(file), (e: unknown) => e instanceof UserError && e.message.startsWith(`${file}: "netuid" must be an integer in [0, 65535], got 70000`));
    assert.throws(() => loadHparams(path.join(d, 'absent.json')), (e: unknown) => e instanceof UserError && /absent\.json does not exist/.test(e.message));
  });
});
