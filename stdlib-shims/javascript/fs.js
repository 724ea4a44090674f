// `require('fs')` for a run: the files its request gave, read-only beside the code, and the
// files it writes into output/, which the host keeps in the run's output file (the server
// returns them, even when the run times out or is killed). Nothing here reaches a disk: the
// jail lets a child open no file. Compiled in a child the first time a run requires 'fs'
// (prelude.js), and called with the prelude's own references.
(function installFs(natives) {
  'use strict';
  const { inputs, files, Buffer, URL, decodeUtf8, encodeUtf8 } = natives;
  const RUN_DIR = '/sandbox';
  const OUTPUT_DIR = `${RUN_DIR}/output`;
  // Output files by name: {index, bytes (a Uint8Array), size}.
  const outputs = new Map();

  function fsError(code, syscall, path, detail) {
    const messages = {
      ENOENT: 'no such file or directory', EACCES: 'permission denied',
      EISDIR: 'illegal operation on a directory', EEXIST: 'file already exists',
      ENOTDIR: 'not a directory', ENOSPC: 'no space left on device', EFBIG: 'file too large',
      EINVAL: 'invalid argument',
    };
    const error = new Error(`${code}: ${detail || messages[code]}, ${syscall} '${path}'`);
    error.code = code;
    error.syscall = syscall;
    error.path = path;
    return error;
  }

  // [kind, name] for a path the run's files answer: 'run', 'output', 'input', 'output_file'.
  function where(path) {
    if (path instanceof URL) path = path.pathname;
    if (typeof path !== 'string') {
      if (path && ArrayBuffer.isView(path)) path = decodeUtf8(path);
      else throw new TypeError('The "path" argument must be of type string, Buffer or URL');
    }
    const parts = [];
    const full = path.startsWith('/') ? path : `${RUN_DIR}/${path}`;
    for (const part of full.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') parts.pop();
      else parts.push(part);
    }
    const normal = `/${parts.join('/')}`;
    if (normal === RUN_DIR) return ['run', ''];
    if (normal === OUTPUT_DIR) return ['output', ''];
    const slash = normal.lastIndexOf('/');
    const parent = normal.slice(0, slash);
    const name = normal.slice(slash + 1);
    if (parent === OUTPUT_DIR) return ['output_file', name];
    if (parent === RUN_DIR && Object.prototype.hasOwnProperty.call(inputs, name)) {
      return ['input', name];
    }
    return null;
  }

  const encodingOf = (options) => (typeof options === 'string' ? options : options?.encoding);

  function toBytes(data, encoding) {
    if (typeof data === 'string') {
      return encoding && !/^utf-?8$/i.test(encoding)
        ? new Uint8Array(Buffer.from(data, encoding))
        : new Uint8Array(encodeUtf8(data));
    }
    if (ArrayBuffer.isView(data)) {
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    throw new TypeError('The "data" argument must be of type string or an instance of ' +
      'Buffer, TypedArray, or DataView');
  }

  function fromBytes(bytes, options) {
    const encoding = encodingOf(options);
    if (!encoding || encoding === 'buffer') return Buffer.from(bytes);
    if (/^utf-?8$/i.test(encoding)) return decodeUtf8(bytes);
    return Buffer.from(bytes).toString(encoding);
  }

  // The host refuses with 'ENOSPC: why', 'EFBIG: why' or 'EINVAL: why'.
  function call(syscall, path, op, ...args) {
    const answer = files(op, ...args);
    if (typeof answer === 'string') {
      const colon = answer.indexOf(':');
      throw fsError(answer.slice(0, colon), syscall, path, answer.slice(colon + 2));
    }
    return answer;
  }

  function bytesOf(path, syscall) {
    const found = where(path);
    if (found === null) throw fsError('ENOENT', syscall, String(path));
    const [kind, name] = found;
    if (kind === 'run' || kind === 'output') throw fsError('EISDIR', syscall, String(path));
    if (kind === 'input') return new Uint8Array(inputs[name]);
    const file = outputs.get(name);
    if (!file) throw fsError('ENOENT', syscall, String(path));
    return file.bytes.subarray(0, file.size);
  }

  function outputName(path, syscall) {
    const found = where(path);
    if (found !== null && found[0] === 'output_file') return found[1];
    if (found !== null && found[0] === 'input') {
      throw fsError('EACCES', syscall, String(path), "the run's input files are read-only; " +
        'write into output/ instead');
    }
    if (found !== null) throw fsError('EISDIR', syscall, String(path));
    throw fsError('EACCES', syscall, String(path), 'a run writes only into output/');
  }

  function append(name, path, syscall, bytes) {
    const file = outputs.get(name);
    call(syscall, path, 1, file.index, file.size, bytes);
    if (file.bytes.length < file.size + bytes.length) {
      const grown = new Uint8Array(Math.max(file.size + bytes.length, file.bytes.length * 2));
      grown.set(file.bytes.subarray(0, file.size));
      file.bytes = grown;
    }
    file.bytes.set(bytes, file.size);
    file.size += bytes.length;
  }

  function writeFileSync(path, data, options) {
    const name = outputName(path, 'open');
    const flag = (typeof options === 'object' && options?.flag) || 'w';
    if (flag.startsWith('a')) return appendFileSync(path, data, options);
    if (flag.startsWith('wx') && outputs.has(name)) throw fsError('EEXIST', 'open', String(path));
    const bytes = toBytes(data, encodingOf(options));
    outputs.set(name, { index: call('open', path, 0, name), bytes: new Uint8Array(0), size: 0 });
    if (bytes.length) append(name, path, 'write', bytes);
    call('close', path, 2, outputs.get(name).index);
  }

  function appendFileSync(path, data, options) {
    const name = outputName(path, 'open');
    const bytes = toBytes(data, encodingOf(options));
    if (!outputs.has(name)) {
      outputs.set(name, { index: call('open', path, 0, name), bytes: new Uint8Array(0), size: 0 });
    }
    if (bytes.length) append(name, path, 'write', bytes);
    call('close', path, 2, outputs.get(name).index);
  }

  const readFileSync = (path, options) => fromBytes(bytesOf(path, 'open'), options);

  function existsSync(path) {
    try {
      const found = where(path);
      return found !== null && (found[0] !== 'output_file' || outputs.has(found[1]));
    } catch (_) {
      return false;
    }
  }

  function readdirSync(path) {
    const found = where(path);
    if (found !== null && found[0] === 'run') return [...Object.keys(inputs), 'output'].sort();
    if (found !== null && found[0] === 'output') return [...outputs.keys()].sort();
    if (found !== null) throw fsError('ENOTDIR', 'scandir', String(path));
    throw fsError('ENOENT', 'scandir', String(path));
  }

  function mkdirSync(path, options) {
    const found = where(path);
    if (found !== null && (found[0] === 'run' || found[0] === 'output')) {
      if (options?.recursive) return undefined;
      throw fsError('EEXIST', 'mkdir', String(path));
    }
    throw fsError('EACCES', 'mkdir', String(path), 'output/ holds files only, no directories');
  }

  function statSync(path) {
    const found = where(path);
    if (found === null || (found[0] === 'output_file' && !outputs.has(found[1]))) {
      throw fsError('ENOENT', 'stat', String(path));
    }
    const directory = found[0] === 'run' || found[0] === 'output';
    const size = directory ? 0 : bytesOf(path, 'stat').length;
    return { size, isFile: () => !directory, isDirectory: () => directory };
  }

  const sync = { readFileSync, writeFileSync, appendFileSync, existsSync, readdirSync,
    mkdirSync, statSync };
  const promised = (f) => (...args) => new Promise((resolve) => resolve(f(...args)));
  const promises = {
    readFile: promised(readFileSync), writeFile: promised(writeFileSync),
    appendFile: promised(appendFileSync), readdir: promised(readdirSync),
    mkdir: promised(mkdirSync), stat: promised(statSync),
  };
  // Node's callback forms: the callback last, called after this turn.
  const callback = (f) => (...args) => {
    const done = args.pop();
    if (typeof done !== 'function') throw new TypeError('The "cb" argument must be a function');
    promised(f)(...args).then((value) => done(null, value), (error) => done(error));
  };
  return Object.freeze({
    ...sync,
    readFile: callback(readFileSync), writeFile: callback(writeFileSync),
    appendFile: callback(appendFileSync), readdir: callback(readdirSync),
    mkdir: callback(mkdirSync), stat: callback(statSync),
    exists: (path, done) => Promise.resolve().then(() => done(existsSync(path))),
    promises: Object.freeze(promises),
  });
})
