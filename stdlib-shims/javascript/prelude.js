// The globals every JavaScript run sees, installed once in the zygote: console and require().
// Evaluated as a function expression and called with the native output writer and the
// require() allowlist, so neither is reachable from user code.
(function install(write, allowedModules) {
  'use strict';
  const allowed = new Set(allowedModules);
  // Filled by the bundled npm modules; a whitelisted name that is missing here is reported as
  // not bundled rather than silently undefined.
  const bundled = Object.create(null);

  function show(value) {
    if (typeof value === 'string') return value;
    if (value instanceof Error) {
      const head = `${value.name}: ${value.message}`;
      return value.stack ? `${head}\n${value.stack}`.trimEnd() : head;
    }
    if (typeof value === 'bigint') return `${value}n`;
    if (typeof value === 'function') return `[Function: ${value.name || 'anonymous'}]`;
    if (value !== null && typeof value === 'object') {
      try {
        const text = JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));
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
  const console = {
    log: toStdout,
    info: toStdout,
    debug: toStdout,
    trace: toStdout,
    dir: toStdout,
    warn: toStderr,
    error: toStderr,
  };
  Object.defineProperty(globalThis, 'console', {
    value: console, writable: true, configurable: true, enumerable: false,
  });

  function notAllowed(name) {
    const error = new Error(
      `Module '${name}' is not allowed in sandbox. Allowed modules: ${[...allowed].join(', ')}`);
    error.name = 'ModuleNotAllowedError';
    error.code = 'MODULE_NOT_ALLOWED';
    return error;
  }

  function require(name) {
    if (typeof name !== 'string') throw new TypeError('require() expects a module name');
    const bare = name.startsWith('node:') ? name.slice(5) : name;
    if (!allowed.has(bare)) throw notAllowed(name);
    if (!(bare in bundled)) {
      throw new Error(`Module '${bare}' is on the allowlist but not bundled into this build`);
    }
    return bundled[bare];
  }
  Object.defineProperty(globalThis, 'require', {
    value: require, writable: true, configurable: true, enumerable: false,
  });
})
