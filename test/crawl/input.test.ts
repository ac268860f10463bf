/** URL lists in every format (+ .gz), column mapping, extra columns, splitting into keyed input shards, URL dedup. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { DelimitedParser } from '../../datasets/input/delimited.js';
import { detectFormat, readUrlList, type UrlListRecord } from '../../datasets/input/url-list.js';
import { readInputShard, splitIntoInputShards } from '../../datasets/input/input-shards.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { rowKey } from '../../datasets/shards/schema.js';
import { LocalStorage } from '../../infra/storage.js';
import { ConfigError } from '../../infra/errors.js';
import { tempDir } from '../helpers/env.js';
import { pyJson } from './helpers.js';

const collect = async (it: AsyncIterable<UrlListRecord>) => {
  const out: UrlListRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
};

describe('DelimitedParser', () => {
  it('handles quotes, escaped quotes, embedded delimiters and newlines, CRLF, BOM, chunk boundaries', () => {
    const text =
      '\ufeffurl,caption,n\r\n"http://a/1.jpg","a, b",1\r\nhttp://a/2.jpg,"say ""hi""\nthere",2\nhttp://a/3.jpg,,3';
    for (const chunkSize of [1, 2, 3, 7, text.length]) {
      const p = new DelimitedParser(',');
      const rows: string[][] = [];
      for (let i = 0; i < text.length; i += chunkSize) rows.push(...p.push(text.slice(i, i + chunkSize)));
      rows.push(...p.end());
      assert.deepEqual(
        rows,
        [
          ['url', 'caption', 'n'],
          ['http://a/1.jpg', 'a, b', '1'],
          ['http://a/2.jpg', 'say "hi"\nthere', '2'],
          ['http://a/3.jpg', '', '3'],
        ],
        `chunk ${chunkSize}`,
      );
    }
  });
  it('fails on an unterminated quote', () => {
    const p = new DelimitedParser(',');
    p.push('"abc');
    assert.throws(() => p.end(), SyntaxError);
  });
  it('refuses a stray quote after a quoted field, naming the line, instead of merging rows', () => {
    const p = new DelimitedParser(',');
    assert.throws(
      () => p.push('url,caption\nhttp://a/1.jpg,"a caption\nhttp://a/2.jpg,"oops""\n'),
      /line 3: a quoted field is followed by "o"/,
    );
  });
});

describe('URL lists', () => {
  const tmp = tempDir('kiln-input-');
  after(() => tmp.cleanup());
  const records = [
    { url: 'http://x/1.jpg', caption: 'one, "quoted"', license: 'cc-by' },
    { url: 'http://x/2.jpg', caption: 'two', license: null },
    { url: 'http://x/3.jpg', caption: null, license: 'cc0' },
  ];
  const csvCell = (v: string | null) => (v === null ? '' : /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

  it('reads csv, tsv, jsonl and parquet, plain and gzipped, with the same records', async () => {
    const csv = [
      'url,caption,license',
      ...records.map((r) => [r.url, r.caption, r.license].map(csvCell).join(',')),
    ].join('\n');
    const tsv = ['url\tcaption\tlicense', ...records.map((r) => [r.url, r.caption ?? '', r.license ?? ''].join('\t'))]
      .join('\n')
      .replace('"quoted"', 'quoted');
    const jsonl = records.map((r) => JSON.stringify(r)).join('\n');
    const files: [string, Buffer | string][] = [
      ['l.csv', csv],
      ['l.tsv', tsv],
      ['l.jsonl', jsonl],
      ['l.csv.gz', gzipSync(csv)],
      ['l.jsonl.gz', gzipSync(jsonl)],
      ['l.tsv.gz', gzipSync(tsv)],
    ];
    for (const [name, body] of files) writeFileSync(join(tmp.path, name), body);
    const pq = join(tmp.path, 'l.parquet');
    pyJson(
      `
import json, sys, pyarrow as pa, pyarrow.parquet as pq
rows = json.loads(sys.argv[2])
table = pa.table({'url': [r['url'] for r in rows], 'caption': [r['caption'] for r in rows],
                  'license': [r['license'] for r in rows], 'n': pa.array([1, 2, 3], pa.int64())})
pq.write_table(table, sys.argv[1])
print('null')`,
      [pq, JSON.stringify(records)],
    );
    writeFileSync(`${pq}.gz`, gzipSync(await import('node:fs').then((fs) => fs.readFileSync(pq))));

    for (const name of ['l.csv', 'l.csv.gz', 'l.jsonl', 'l.jsonl.gz', 'l.parquet', 'l.parquet.gz']) {
      const got = await collect(readUrlList({ path: join(tmp.path, name) }));
      const want = records.map((r) =>
        name.includes('csv') ? { ...r, caption: r.caption ?? '', license: r.license ?? '' } : r,
      );
      assert.deepEqual(
        got.map(({ n: _n, ...rest }) => rest),
        want,
        name,
      );
      if (name.startsWith('l.parquet'))
        assert.deepEqual(
          got.map((r) => r.n),
          ['1', '2', '3'],
        );
    }
    for (const name of ['l.tsv', 'l.tsv.gz']) {
      const got = await collect(readUrlList({ path: join(tmp.path, name) }));
      assert.deepEqual(
        got.map((r) => r.url),
        records.map((r) => r.url),
        name,
      );
      assert.equal(got[0]!.caption, 'one, quoted');
    }
    assert.deepEqual(detectFormat({ path: 'file:///a/b.TSV.GZ' }), { path: '/a/b.TSV.GZ', format: 'tsv', gzip: true });
    assert.throws(() => detectFormat({ path: '/a/b.xlsx' }), ConfigError);
  });

  it('splits into keyed input shards, carries extra columns, marks duplicate URLs, maps columns', async () => {
    const storage = new LocalStorage(join(tmp.path, 'data'));
    const layout = new DatasetLayout(storage, 'split', 1);
    const rows = Array.from({ length: 10 }, (_, i) => ({
      link: `http://x/${i % 7}.jpg`,
      text: `t${i}`,
      license: `l${i}`,
      score: i / 2,
    }));
    const list = join(tmp.path, 'split.jsonl');
    writeFileSync(list, rows.map((r) => JSON.stringify(r)).join('\n'));
    const r = await splitIntoInputShards(storage, layout, {
      sources: [{ path: list }],
      urlColumn: 'link',
      captionColumn: 'text',
      rowsPerShard: 4,
    });
    assert.deepEqual(r, {
      shardCount: 3,
      rows: 10,
      duplicates: 3,
      rowsPerShard: 4,
      extraColumns: ['license', 'score'],
    });
    const all = [];
    for (let i = 0; i < 3; i++) all.push(...(await readInputShard(storage, layout.inputShardUri(i))).rows);
    assert.deepEqual(
      all.map((x) => x.key),
      rows.map((_, i) => rowKey(Math.floor(i / 4), i % 4, 4)),
    );
    assert.equal(all[0]!.key, '0000000');
    assert.equal(all[9]!.key, '0000021');
    assert.deepEqual(all[3], {
      key: '0000003',
      url: 'http://x/3.jpg',
      caption: 't3',
      extra: { license: 'l3', score: '1.5' },
    });
    assert.deepEqual(
      all.filter((x) => x.duplicateOf).map((x) => [x.key, x.duplicateOf]),
      [
        ['0000013', '0000000'],
        ['0000020', '0000001'],
        ['0000021', '0000002'],
      ],
    );

    const only = await splitIntoInputShards(storage, new DatasetLayout(storage, 'split', 2), {
      sources: [{ path: list }],
      urlColumn: 'link',
      captionColumn: null,
      extraColumns: ['license'],
      dedupUrls: false,
    });
    assert.deepEqual(only, { shardCount: 1, rows: 10, duplicates: 0, rowsPerShard: 10_000, extraColumns: ['license'] });
    const first = (await readInputShard(storage, new DatasetLayout(storage, 'split', 2).inputShardUri(0))).rows[0]!;
    assert.deepEqual(first, { key: '0000000000', url: 'http://x/0.jpg', caption: null, extra: { license: 'l0' } });
  });

  it('explains a missing url column or a clashing extra column', async () => {
    const storage = new LocalStorage(join(tmp.path, 'data2'));
    const list = join(tmp.path, 'bad.csv');
    writeFileSync(list, 'URL,TEXT,status\nhttp://x/1.jpg,a,ok\n');
    const layout = new DatasetLayout(storage, 'bad', 1);
    await assert.rejects(
      splitIntoInputShards(storage, layout, { sources: [{ path: list }] }),
      (e: unknown) => e instanceof ConfigError && /no column "url" \(columns: URL, TEXT, status\)/.test(e.message),
    );
    await assert.rejects(
      splitIntoInputShards(storage, layout, { sources: [{ path: list }], urlColumn: 'URL' }),
      (e: unknown) => e instanceof ConfigError && /"status" clashes/.test(e.message),
    );
    const ok = await splitIntoInputShards(storage, layout, {
      sources: [{ path: list }],
      urlColumn: 'URL',
      captionColumn: 'TEXT',
      extraColumns: [],
    });
    assert.equal(ok.rows, 1);
  });
});
