/**
 * Sample grids: a PNG mosaic of generated images (one per evaluation), made with sharp and
 * written through ArtifactStorage next to the run report so the report can show it from disk.
 */
import sharp from 'sharp';
import type { ArtifactStorage, WrittenObject } from '../infra/storage.js';
import type { RgbImage } from './clean-resize.js';

export interface SampleGridOptions {
  /** Images per row (default: ceil(sqrt(n))). */
  columns?: number;
  /** Cell edge in pixels (default 128); small samples are upscaled with nearest-neighbour. */
  cell?: number;
  /** Gap between cells in pixels (default 4). */
  gap?: number;
}

/** Compose images into one PNG (row-major order, dark background). */
export async function sampleGridPng(images: readonly RgbImage[], o: SampleGridOptions = {}): Promise<Buffer> {
  if (images.length === 0) throw new RangeError('a sample grid needs at least one image');
  const cols = o.columns ?? Math.ceil(Math.sqrt(images.length));
  const rows = Math.ceil(images.length / cols);
  const cell = o.cell ?? 128;
  const gap = o.gap ?? 4;
  const tiles = await Promise.all(
    images.map(async (img, i) => {
      const upscale = img.width < cell && img.height < cell;
      const input =
        img.data instanceof Uint8Array
          ? img.data
          : Uint8Array.from(img.data, (v) => Math.max(0, Math.min(255, Math.round(v))));
      const png = await sharp(input, { raw: { width: img.width, height: img.height, channels: 3 } })
        .resize(cell, cell, {
          fit: 'contain',
          kernel: upscale ? 'nearest' : 'lanczos3',
          background: { r: 24, g: 24, b: 27 },
        })
        .png()
        .toBuffer();
      return { input: png, left: gap + (i % cols) * (cell + gap), top: gap + Math.floor(i / cols) * (cell + gap) };
    }),
  );
  return sharp({
    create: {
      width: gap + cols * (cell + gap),
      height: gap + rows * (cell + gap),
      channels: 3,
      background: { r: 24, g: 24, b: 27 },
    },
  })
    .composite(tiles)
    .png({ compressionLevel: 9 })
    .toBuffer();
}

/** Report-relative path of the grid for an evaluation step (e.g. samples/step-000005000.png). */
export function sampleGridPath(step: number): string {
  return `samples/step-${String(step).padStart(9, '0')}.png`;
}

/**
 * Write the grid for `step` under `<reportDirUri>/samples/`, atomically. Returns the written object
 * and the path to reference from the report (relative, so the report opens from disk).
 */
export async function writeSampleGrid(
  storage: ArtifactStorage,
  reportDirUri: string,
  step: number,
  images: readonly RgbImage[],
  o: SampleGridOptions = {},
): Promise<WrittenObject & { relativePath: string }> {
  const relativePath = sampleGridPath(step);
  const [dir, name] = relativePath.split('/') as [string, string];
  const written = await storage.writeAtomic(storage.child(reportDirUri, dir, name), await sampleGridPng(images, o));
  return { ...written, relativePath };
}
