// Injected into the CommonJS bundles by scripts/build.mjs: stands in for import.meta.url, which
// has no value in CommonJS. It runs inside the bundle, where require and __filename exist.
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const importMetaUrl = require('node:url').pathToFileURL(__filename).href;
