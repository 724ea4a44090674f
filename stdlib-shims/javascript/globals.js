// The Node-like globals that come from well-kept npm polyfills, bundled by build.rs like the
// modules; prelude.js installs them. TextEncoder and TextDecoder are UTF-8 only, as in the
// WHATWG spec's encoder (the decoder also takes the labels for UTF-8).
const { Buffer } = require('buffer');
const URL = require('core-js-pure/stable/url');
const URLSearchParams = require('core-js-pure/stable/url-search-params');
const structuredClone = require('core-js-pure/stable/structured-clone');

class TextEncoder {
  get encoding() {
    return 'utf-8';
  }

  encode(input = '') {
    const bytes = Buffer.from(String(input), 'utf8');
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  }
}

class TextDecoder {
  constructor(label = 'utf-8') {
    const name = String(label).trim().toLowerCase();
    if (!['utf-8', 'utf8', 'unicode-1-1-utf-8'].includes(name)) {
      throw new RangeError(`TextDecoder: only utf-8 is supported, not '${label}'`);
    }
  }

  get encoding() {
    return 'utf-8';
  }

  decode(input) {
    if (input === undefined) return '';
    const view = ArrayBuffer.isView(input)
      ? Buffer.from(input.buffer, input.byteOffset, input.byteLength)
      : Buffer.from(input);
    return view.toString('utf8');
  }
}

module.exports = { Buffer, URL, URLSearchParams, structuredClone, TextEncoder, TextDecoder };
