// Native errors, both kinds: what the user's input caused (the engine marks
// it, tournament::UserInputError) becomes a UserError, shown without a stack;
// anything else is an engine bug and stays an Error with the engine's
// message and this side's stack, shown as an internal error. Both through
// the addon's synchronous calls and its one async mechanism (Task).
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { describeError, UserError } from '../src/errors';
import { openModel } from '../src/engine/model';
import { loadAddon, native, USER_INPUT_CODE } from '../src/engine/native';
import { planCheckpointLoad } from '../src/engine/safetensors';
import { QWEN2_TINY } from './helpers/checkpoint-bench';
import { tmpDir } from './helpers/tmp';

describe('engine: native errors', function () {
  const { testing } = loadAddon();

  for (const async of [false, true]) {
    const how = async ? 'from a worker thread' : 'from the JS thread';

    it(`a user-input error ${how} becomes a UserError with the engine's message, printed without a stack`, async function () {
      const err = await native('checking', () => testing.nativeError('user', async)).then(
        () => assert.fail('no error'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UserError, String(err));
      assert.equal(err.message, 'checking: the input is wrong');
      const { text, exitCode } = describeError(err, false);
      assert.equal(text, 'error: checking: the input is wrong');
      assert.equal(exitCode, 1);
    });

    for (const [kind, message] of [['bug', /an engine invariant broke/], ['alloc', /bad_alloc/]] as const) {
      it(`an engine bug (${kind}) ${how} stays an Error with its message and the caller's stack: an internal error`, async function () {
        const err = await native('checking', () => testing.nativeError(kind, async)).then(
          () => assert.fail('no error'),
          (e: unknown) => e,
        );
        assert.ok(err instanceof Error && !(err instanceof UserError), String(err));
        assert.match(err.message, /^checking: /);
        assert.match(err.message, message);
        assert.notEqual((err.cause as { code?: string }).code, USER_INPUT_CODE);
        assert.match(err.stack ?? '', /engine-errors\.test/, 'the stack leads back to the caller');
        const quiet = describeError(err, false);
        assert.equal(quiet.exitCode, 2);
        assert.match(quiet.text, /^internal error: checking: .*\n\(run again with --verbose for the stack trace\)$/s);
        assert.match(describeError(err, true).text, /^internal error: .*\n\s+at /s);
      });
    }
  }

  it('real user input: an unknown device, and a checkpoint file cut short after it was planned', async function () {
    await assert.rejects(
      openModel({ modelDir: QWEN2_TINY, device: 'tpu', dtype: 'float32', attention: 'math', seed: 0 }),
      (e: unknown) => e instanceof UserError && /creating the model: unknown device 'tpu'/.test(e.message),
    );
    const dir = tmpDir('engine-errors-');
    for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(QWEN2_TINY, f), path.join(dir, f));
    const { model } = await openModel({ modelDir: dir, device: 'cpu', dtype: 'float32', attention: 'math', seed: 0, randomInit: true });
    const plan = planCheckpointLoad(dir, model.parameters());
    fs.truncateSync(path.join(dir, 'model.safetensors'), plan[plan.length - 1].offset + 2);
    await assert.rejects(
      native('loading the checkpoint', () => model.loadWeights(plan)),
      (e: unknown) => e instanceof UserError && /model\.safetensors: truncated while reading tensor/.test(e.message),
    );
  });
});
