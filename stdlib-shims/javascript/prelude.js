// The globals every JavaScript run sees, installed once in the zygote. Evaluated as a function
// expression and called by src/zygote/javascript/mod.rs with the native pieces (the output writer,
// the OS random source, the broker, fetch's pieces, the loader of an npm module's bundle), the
// require() allowlist and the bundled polyfills; it returns the hooks the engine drives a run
// with, which user code cannot reach.
(function install(write, randomBytes, broker, allowedModules, polyfills, natives) {
  'use strict';
  const { fetch: fetchNatives, files: filesNatives, loadBundle } = natives;
  // Our own references: user code may replace JSON's methods for its run.
  const { parse: jsonParse, stringify: jsonStringify } = JSON;
  const { create, freeze, keys } = Object;
  // The server's whitelist, which a run may narrow (beginRun): a table without a prototype, so
  // no method user code can replace (a Set's `has`) decides what require() lets through.
  const nameTable = (names) => {
    const table = create(null);
    for (const name of names) table[name] = true;
    return table;
  };
  let allowed = nameTable(allowedModules);
  // Each npm module's exports: registered in the zygote (javascript-modules, javascript-intl),
  // or evaluated in the child by the run that first requires it (the javascript zygote).
  const bundled = create(null);
  function register(name, exports) {
    // Node's url also exports the WHATWG URL and URLSearchParams: the very globals.
    bundled[name] = name === 'url'
      ? freeze({ ...exports, URL: polyfills.URL, URLSearchParams: polyfills.URLSearchParams })
      : exports;
  }
  function bundledModule(bare) {
    if (!(bare in bundled)) {
      const exports = loadBundle(bare);
      if (exports === undefined) {
        throw new Error(`Module '${bare}' is on the allowlist but not bundled into this build`);
      }
      register(bare, exports);
    }
    return bundled[bare];
  }
  const hide = (name, value) => Object.defineProperty(globalThis, name, {
    value, writable: true, configurable: true, enumerable: false,
  });

  // ---- console: strings plain, objects as compact JSON, arguments joined by spaces ----
  function show(value) {
    if (typeof value === 'string') return value;
    if (value instanceof Error) {
      const head = `${value.name}: ${value.message}`;
      return value.stack ? `${head}\n${value.stack}`.trimEnd() : head;
    }
    if (typeof value === 'bigint') return `${value}n`;
    if (typeof value === 'function') return `[Function: ${value.name || 'anonymous'}]`;
    if (typeof value === 'symbol') return value.toString();
    if (value !== null && typeof value === 'object') {
      try {
        const text = jsonStringify(value, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));
        if (text !== undefined) return text;
      } catch (_) {
        // cyclic: fall through to String()
      }
    }
    return String(value);
  }

  const line = (args) => args.map(show).join(' ') + '\n';
  const toStdout = (...args) => write(1, line(args));
  const toStderr = (...args) => write(2, line(args));
  hide('console', {
    log: toStdout,
    info: toStdout,
    debug: toStdout,
    trace: toStdout,
    dir: toStdout,
    table: toStdout,
    warn: toStderr,
    error: toStderr,
    assert: (condition, ...args) => {
      if (!condition) toStderr('Assertion failed' + (args.length ? ':' : ''), ...args);
    },
  });

  // ---- require(), and the same modules for import ----
  function notAllowed(name, byImport) {
    const how = byImport ? ' import() and import statements load only the allowed modules.' : '';
    const error = new Error(`Module '${name}' is not allowed in sandbox.${how} ` +
      `Allowed modules: ${keys(allowed).join(', ')}`);
    error.name = 'ModuleNotAllowedError';
    error.code = 'MODULE_NOT_ALLOWED';
    return error;
  }

  function load(name, byImport) {
    if (typeof name !== 'string') throw new TypeError('require() expects a module name');
    const bare = name.startsWith('node:') ? name.slice(5) : name;
    // A string's methods are the run's to replace: what they return must still be a string.
    if (typeof bare !== 'string') throw new TypeError('require() expects a module name');
    // `fs` is the run's own files, on the APIs that have them (fs.js).
    if (bare === 'fs' && run.hasFiles) return fsModule();
    if (allowed[bare] !== true) throw notAllowed(name, byImport);
    return bundledModule(bare);
  }
  // What beginRun says of the run, in one object the child makes: assigning it writes one
  // variable of the zygote's (a page copied), however much the run has to say.
  let run = { script: false, hasFiles: false, inputs: undefined, seeded: false };
  // The run's files (fs.js), for a run that may have them: compiled on the first require.
  let fsApi = null;
  function fsModule() {
    if (fsApi === null) {
      fsApi = filesNatives.load()({
        inputs: run.inputs ?? {}, files: filesNatives.files, Buffer: polyfills.Buffer,
        URL: polyfills.URL,
        decodeUtf8: fetchNatives.decodeUtf8, encodeUtf8: fetchNatives.encodeUtf8,
      });
    }
    return fsApi;
  }
  const require = (name) => load(name, false);
  hide('require', require);
  // The module loader's way to the same modules (for import), whatever user code does to
  // `require`.
  Object.defineProperty(globalThis, Symbol.for('sandlot.module'), {
    value: (name) => load(name, true),
  });

  // ---- randomness: the OS's, fresh in every child ----
  const crypto = {
    getRandomValues(array) {
      if (!ArrayBuffer.isView(array) || array instanceof Float32Array ||
          array instanceof Float64Array || array instanceof DataView) {
        throw new TypeError('crypto.getRandomValues expects an integer typed array');
      }
      if (array.byteLength > 65536) {
        throw new RangeError('crypto.getRandomValues: at most 65536 bytes at a time');
      }
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength)
        .set(new Uint8Array(randomBytes(array.byteLength)));
      return array;
    },
    randomUUID() {
      const b = new Uint8Array(randomBytes(16));
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    },
  };
  hide('crypto', crypto);

  // Math.random as xoshiro128**, seeded from the OS in every child at its first use (QuickJS's
  // own state would be the zygote's, the same in every run). Whether it is seeded belongs to
  // the run's object, which each child makes anew, so a run that draws no number pays nothing.
  let s0 = 1, s1 = 2, s2 = 3, s3 = 4;
  const rotl = (x, k) => (x << k) | (x >>> (32 - k));
  function next() {
    if (!run.seeded) reseed();
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
    const t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 11);
    return result >>> 0;
  }
  function reseed() {
    const seed = new Uint32Array(randomBytes(16));
    s0 = seed[0]; s1 = seed[1]; s2 = seed[2]; s3 = seed[3];
    if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
    run.seeded = true;
  }
  Object.defineProperty(Math, 'random', {
    value: function random() {
      return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
    },
    writable: true, configurable: true, enumerable: false,
  });

  // ---- timers: a queue in the child, run by the engine until the deadline ----
  const timers = new Map();
  let nextId = 1;
  class Timeout {
    constructor(id) { this.id = id; }
    ref() { return this; }
    unref() { return this; }
    hasRef() { return true; }
    refresh() {
      const t = timers.get(this.id);
      if (t) t.due = Date.now() + t.delay;
      return this;
    }
    [Symbol.toPrimitive]() { return this.id; }
  }
  function schedule(fn, delay, args, repeat) {
    if (typeof fn !== 'function') throw new TypeError('The callback must be a function');
    const ms = Math.max(repeat ? 1 : 0, Number(delay) || 0);
    const id = nextId++;
    timers.set(id, { fn, args, delay: ms, due: Date.now() + ms, repeat });
    return new Timeout(id);
  }
  const clear = (handle) => { timers.delete(Number(handle)); };
  hide('setTimeout', (fn, delay, ...args) => schedule(fn, delay, args, false));
  hide('setInterval', (fn, delay, ...args) => schedule(fn, delay, args, true));
  hide('setImmediate', (fn, ...args) => schedule(fn, 0, args, false));
  hide('clearTimeout', clear);
  hide('clearInterval', clear);
  hide('clearImmediate', clear);

  /** Milliseconds until the earliest timer is due (0 if one is), or -1 with none left. */
  function nextTimer() {
    let due = Infinity;
    for (const t of timers.values()) due = Math.min(due, t.due);
    return due === Infinity ? -1 : Math.max(0, due - Date.now());
  }
  /** Runs every timer now due, earliest first; a throwing callback ends the run. */
  function fireTimers() {
    const now = Date.now();
    const due = [...timers.entries()].filter(([, t]) => t.due <= now)
      .sort((a, b) => a[1].due - b[1].due || a[0] - b[0]);
    for (const [id, t] of due) {
      if (!timers.has(id)) continue; // cleared by an earlier callback
      if (t.repeat) t.due = now + t.delay; else timers.delete(id);
      t.fn(...t.args);
    }
  }

  // ---- SystemHelper.httpRequest: HTTP performed by the server, which checks every destination ----
  async function httpRequest(url, options = {}) {
    const { method = 'GET', headers = {}, body = null, timeout } = options || {};
    const request = jsonStringify({
      url: String(url), method: String(method), headers, timeout: timeout ?? null,
      body: body === undefined ? null : body,
    });
    const answer = jsonParse(broker(request));
    if (answer.error) {
      const error = new Error(answer.error.message);
      if (answer.error.denied) {
        error.name = 'NetworkDeniedError';
        error.code = 'NETWORK_DENIED';
      }
      throw error;
    }
    return answer.ok;
  }
  hide('SystemHelper', Object.freeze({ httpRequest }));

  // ---- Node-like globals from the bundled polyfills ----
  for (const name of ['Buffer', 'URL', 'URLSearchParams', 'structuredClone', 'TextEncoder',
    'TextDecoder']) {
    hide(name, polyfills[name]);
  }
  hide('global', globalThis);

  // ---- process: frozen, minimal, not replaceable; exit() ends a script ----
  class ProcessExit {
    constructor(code) { this.code = code; }
  }
  // process.stdout / process.stderr: write() without the newline console adds.
  function stream(fd) {
    return Object.freeze({
      write(chunk, encoding, callback) {
        const text = typeof chunk === 'string' ? chunk
          : ArrayBuffer.isView(chunk) ? new TextDecoder().decode(chunk) : String(chunk);
        write(fd, text);
        const done = typeof encoding === 'function' ? encoding : callback;
        if (typeof done === 'function') queueMicrotask(done);
        return true;
      },
      isTTY: false,
      fd,
    });
  }
  const processCommon = {
    argv: Object.freeze(['node', 'sandlot']),
    platform: 'linux',
    arch: 'x64',
    version: 'v20.0.0',
    versions: Object.freeze({ node: '20.0.0' }),
    pid: 1,
    exitCode: undefined,
    cwd: () => '/sandbox',
    hrtime: Object.assign(
      (prev) => {
        const ns = BigInt(Math.round(performance.now() * 1e6));
        const now = [Number(ns / 1000000000n), Number(ns % 1000000000n)];
        if (!prev) return now;
        let s = now[0] - prev[0], n = now[1] - prev[1];
        if (n < 0) { s -= 1; n += 1e9; }
        return [s, n];
      },
      { bigint: () => BigInt(Math.round(performance.now() * 1e6)) }),
    nextTick: (fn, ...args) => queueMicrotask(() => fn(...args)),
    stdout: stream(1),
    stderr: stream(2),
  };
  // A script may end itself; main() may not, as in FastGPT (it has no process.exit there).
  const exit = (code = 0) => { throw new ProcessExit(Number(code) | 0); };
  // A run that may have files (fs.js) is told where its output directory is.
  const noEnv = Object.freeze({});
  const filesEnv = Object.freeze({ SANDLOT_OUTPUT_DIR: '/sandbox/output' });
  const processObject = Object.freeze(Object.defineProperties({ ...processCommon }, {
    exit: { get: () => (run.script ? exit : undefined), enumerable: true },
    env: { get: () => (run.hasFiles ? filesEnv : noEnv), enumerable: true },
  }));
  // Not replaceable: a run sees this `process` whatever it assigns.
  Object.defineProperty(globalThis, 'process', {
    value: processObject, writable: false, configurable: false, enumerable: false,
  });

  // ---- V8-only hooks user code may feature-test for; QuickJS's stay out of reach ----
  for (const hook of ['captureStackTrace', 'prepareStackTrace']) {
    if (Object.getOwnPropertyDescriptor(Error, hook)?.configurable) delete Error[hook];
  }

  // ---- the helpers old FastGPT code nodes call, on FastGPT's route only ----
  function installFastgptHelpers() {
    hide('delay', (ms) => {
      if (Number(ms) > 10000) throw new Error('delay(ms): ms must be at most 10000');
      return new Promise((resolve) => setTimeout(resolve, Number(ms) || 0));
    });
    // An estimate in the spirit of GPT tokenizers: a CJK character is about a token, other
    // text about four characters a token.
    hide('countToken', (text = '') => {
      const s = typeof text === 'string' ? text : JSON.stringify(text) ?? '';
      const cjk = (s.match(/[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]/g) || []).length;
      return cjk + Math.ceil((s.length - cjk) / 4);
    });
    hide('strToBase64', (str, prefix = '') =>
      `${prefix}${polyfills.Buffer.from(String(str), 'utf8').toString('base64')}`);
    // A signature as DingTalk and Feishu robots want it: base64 of HMAC(timestamp\nsecret).
    hide('createHmac', (algorithm, secret) => {
      const names = { sha1: 'HmacSHA1', sha256: 'HmacSHA256', sha512: 'HmacSHA512', md5: 'HmacMD5' };
      const CryptoJS = bundledModule('crypto-js');
      const fn = CryptoJS[names[String(algorithm).toLowerCase()]];
      if (!fn) throw new Error(`createHmac: unsupported algorithm '${algorithm}'`);
      const timestamp = Date.now().toString();
      const sign = encodeURIComponent(
        CryptoJS.enc.Base64.stringify(fn(`${timestamp}\n${secret}`, secret)));
      return { timestamp, sign };
    });
    hide('httpRequest', httpRequest);
    // FastGPT 4.14.8 sets fetch to undefined (its suite checks); its classes stay, as in Bun.
    hide('fetch', undefined);
  }

  // ---- fetch and its classes (fetch.js), over the same broker: compiled in the child the ----
  // first time a run reads one of these names, so the zygote (and every run) carries only these
  // getters. Assigning one replaces it, as for any global.
  const fetchNames = ['fetch', 'Request', 'Response', 'Headers', 'Blob', 'AbortController',
    'AbortSignal'];
  const fetchGetters = new Map();
  const { DOMException } = globalThis;
  let fetchApi = null;
  function fetchGlobal(name) {
    if (fetchApi === null) {
      fetchApi = fetchNatives.load()({
        broker, jsonParse, jsonStringify, URL: polyfills.URL,
        URLSearchParams: polyfills.URLSearchParams, decodeUtf8: fetchNatives.decodeUtf8,
        encodeUtf8: fetchNatives.encodeUtf8, DOMException,
      });
      for (const other of fetchNames) {
        if (Object.getOwnPropertyDescriptor(globalThis, other)?.get === fetchGetters.get(other)) {
          hide(other, fetchApi[other]);
        }
      }
    }
    return fetchApi[name];
  }
  for (const name of fetchNames) {
    const get = () => fetchGlobal(name);
    fetchGetters.set(name, get);
    Object.defineProperty(globalThis, name, {
      get, set: (value) => hide(name, value), configurable: true, enumerable: false,
    });
  }

  // What the engine drives a run with.
  return Object.freeze({
    registerModule: register,
    /** `runAllowed`: the modules the request narrowed require() to, or undefined for all. */
    beginRun(script, fastgpt, runAllowed, hasFiles, inputs) {
      run = { script, hasFiles, inputs, seeded: false };
      if (runAllowed) allowed = nameTable(runAllowed.filter((name) => allowed[name] === true));
      if (fastgpt) installFastgptHelpers();
    },
    /** The script's `main`, a function declaration's or a global `let`/`const`'s. */
    findMain: () => (typeof main === 'function' ? main : undefined),
    nextTimer,
    fireTimers,
    /** The exit code a caught value asks for, if it is process.exit()'s. */
    exitCode: (value) => (value instanceof ProcessExit ? value.code : undefined),
  });
})
