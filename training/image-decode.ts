/**
 * Stored image bytes (JPEG, or anything sharp reads) -> RGB float32 [H, W, 3] in [-1, 1], resized
 * and centre-cropped to a square of the training resolution. sharp's output is deterministic for
 * the same bytes and settings, which the resumability guarantee relies on.
 */
import sharp from 'sharp';

/** Decode to `resolution` x `resolution` RGB in [-1, 1] (row-major HWC); null when undecodable. */
export async function decodeTrainingImage(bytes: Uint8Array, resolution: number): Promise<Float32Array | null> {
  try {
    const { data, info } = await sharp(bytes, { failOn: 'error' })
      .resize(resolution, resolution, { fit: 'cover', position: 'centre' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    const pixels = resolution * resolution;
    const out = new Float32Array(pixels * 3);
    if (info.channels === 3) {
      for (let i = 0; i < out.length; i++) out[i] = data[i]! / 127.5 - 1;
    } else if (info.channels === 1) {
      for (let i = 0; i < pixels; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = data[i]! / 127.5 - 1;
    } else {
      return null;
    }
    return out;
  } catch {
    return null;
  }
}
