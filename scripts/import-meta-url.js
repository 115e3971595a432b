// Injected into the CommonJS bundles by scripts/build.mjs: stands in for import.meta.url.
export const importMetaUrl = require('node:url').pathToFileURL(__filename).href;
