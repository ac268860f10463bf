/**
 * Magic-byte sniffing: the image container, from the first bytes, before any decoder sees them.
 * Content-Type headers lie (HTML served as image/jpeg); the bytes do not. SVG is not accepted
 * (a document format with external references, not a raster image).
 */
export type ImageContainer = 'jpeg' | 'png' | 'webp' | 'gif' | 'avif' | 'heic' | 'tiff';

const ascii = (b: Uint8Array, start: number, end: number) => String.fromCharCode(...b.subarray(start, end));

/** The image container of `b`, or undefined when it is not a supported raster image. */
export function sniffImageFormat(b: Uint8Array): ImageContainer | undefined {
  if (b.length < 12) return undefined;
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b[0] === 0x89 && ascii(b, 1, 4) === 'PNG' && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a)
    return 'png';
  if (ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP') return 'webp';
  if (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a') return 'gif';
  if (ascii(b, 4, 8) === 'ftyp') {
    const brand = ascii(b, 8, 12);
    if (brand === 'avif' || brand === 'avis') return 'avif';
    if (['heic', 'heix', 'hevc', 'hevx', 'mif1', 'msf1'].includes(brand)) return 'heic';
    return undefined;
  }
  if (
    (b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0x00) ||
    (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0x00 && b[3] === 0x2a)
  )
    return 'tiff';
  return undefined;
}

/** A short printable description of what the bytes start with, for error messages. */
export function describeBytes(b: Uint8Array): string {
  const head = Buffer.from(b.subarray(0, 16));
  const text = head.toString('latin1');
  return /^[\x20-\x7e\s]+$/.test(text) ? JSON.stringify(text.trim()) : head.toString('hex');
}
