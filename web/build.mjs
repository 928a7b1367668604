// Copies the packages' browser files (ES modules and WebAssembly) from node_modules into vendor/,
// so the page loads nothing from a CDN; writes vendor/versions.json. Run by `npm run build`.
import {cpSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';

const PACKAGES = {
  'tasks-audio': ['@mediapipe/tasks-audio', ['audio_bundle.mjs', 'wasm', 'LICENSE', 'README.md']],
  'litertjs-core': ['@litertjs/core', ['dist', 'wasm', 'LICENSE', 'README.md']],
  'litertjs-wasm-utils': ['@litertjs/wasm-utils', ['dist', 'LICENSE', 'README.md']],
};

rmSync('vendor', {recursive: true, force: true});
const versions = {};
for (const [folder, [name, entries]] of Object.entries(PACKAGES)) {
  const source = `node_modules/${name}`;
  versions[name] = JSON.parse(readFileSync(`${source}/package.json`, 'utf8')).version;
  mkdirSync(`vendor/${folder}`, {recursive: true});
  for (const entry of entries) {
    try {
      cpSync(`${source}/${entry}`, `vendor/${folder}/${entry}`, {recursive: true});
    } catch (error) {
      if (error.code !== 'ENOENT' || !['LICENSE', 'README.md'].includes(entry)) throw error;
    }
  }
}
writeFileSync('vendor/versions.json', JSON.stringify(versions, null, 2) + '\n');
console.log('vendor/:', versions);
