// One lint config for the whole repo (flat config). Type-aware so floating promises are errors.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      '.venv/**',
      '.venv-*/**',
      'kiln-data/**',
      'fixtures/**',
      '**/*.js',
      '**/*.cjs',
      '**/*.mjs',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test's test()/describe() return promises the runner itself awaits.
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['test', 'it', 'describe', 'suite', 'before', 'after', 'beforeEach', 'afterEach'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Workflow code is replayed deterministically inside Temporal's sandbox: no Node built-ins,
    // and activities are referenced by type only (proxyActivities gives the callable stubs).
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({
            name,
            message: 'Workflows must not use Node built-ins (non-deterministic I/O).',
          })),
          patterns: [
            {
              group: ['**/activities/**', '**/activities'],
              allowTypeImports: true,
              message: 'Import activities with `import type` only.',
            },
            {
              group: ['**/infra/**', '**/datasets/**', '**/training/**', '**/eval/**'],
              allowTypeImports: true,
              message: 'Workflows import only types from other layers.',
            },
          ],
        },
      ],
    },
  },
  {
    // The job runner every `kiln run <stage>` imports: importing a stage command back is a cycle
    // (issue 16); stages are registered in cli/commands/run-stages.ts.
    files: ['cli/commands/run.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['./pipeline.js', './train.js', './filter.js', './crawl.js', './run-stages.js', './jobs.js'],
              message: 'run.ts must not import stage commands (import cycle); register stages in run-stages.ts.',
            },
          ],
        },
      ],
    },
  },
);
