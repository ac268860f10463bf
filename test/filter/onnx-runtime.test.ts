import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseOnnxDevice, parseOnnxDeviceRequest, probeCuda } from '../../infra/onnx-runtime.js';

void test('device requests parse; unknown values are ConfigErrors naming the source', () => {
  const table: [string | undefined, string][] = [
    [undefined, 'auto'],
    ['', 'auto'],
    ['AUTO', 'auto'],
    ['cpu', 'cpu'],
    [' cuda ', 'cuda'],
  ];
  for (const [v, want] of table) assert.equal(parseOnnxDeviceRequest(v, 'KILN_ONNX_DEVICE'), want, String(v));
  assert.throws(
    () => parseOnnxDeviceRequest('tpu', 'KILN_ONNX_DEVICE'),
    (e: Error & { code?: string }) => e.code === 'KILN_CONFIG' && /KILN_ONNX_DEVICE is "tpu"/.test(e.message),
  );
});

void test('cpu when asked (option beats env var)', async () => {
  const c = await chooseOnnxDevice({ device: 'cpu', env: { KILN_ONNX_DEVICE: 'cuda' } });
  assert.equal(c.device, 'cpu');
  assert.equal(c.requested, 'cpu');
  assert.ok(c.backends.includes('cpu'));
  assert.match(c.ortVersion, /^\d+\.\d+\.\d+/);
});

void test('env var is used when no option is given', async () => {
  const c = await chooseOnnxDevice({ env: { KILN_ONNX_DEVICE: 'cpu' } });
  assert.equal(c.requested, 'cpu');
  assert.equal(c.device, 'cpu');
});

void test('auto picks CUDA exactly when a CUDA session can be created; explicit cuda fails loudly otherwise', async () => {
  const probe = await probeCuda();
  const auto = await chooseOnnxDevice({ env: {} });
  assert.equal(auto.requested, 'auto');
  assert.equal(auto.device, probe.ok ? 'cuda' : 'cpu');
  assert.ok(auto.reason.length > 0);
  if (probe.ok) {
    assert.equal((await chooseOnnxDevice({ device: 'cuda' })).device, 'cuda');
  } else {
    await assert.rejects(
      chooseOnnxDevice({ device: 'cuda' }),
      (e: Error & { code?: string }) => e.code === 'KILN_CONFIG' && /CUDA was requested/.test(e.message),
    );
  }
});
