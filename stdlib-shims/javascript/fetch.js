// fetch, Request, Response, Headers, Blob, AbortController and AbortSignal, as Node 20 has them,
// over the server's broker (SystemHelper.httpRequest's): the server checks, counts and performs
// every request. Compiled in a child the first time a run reads one of these globals
// (prelude.js), and called with the prelude's own references, which user code cannot replace.
// Bodies are whole (no streaming); a refusal rejects with TypeError('fetch failed') whose cause
// says why, as Node's does (code NETWORK_DENIED for the broker's refusals).
(function installFetch(natives) {
  'use strict';
  const { broker, jsonParse, jsonStringify, URL, URLSearchParams, decodeUtf8, encodeUtf8,
    DOMException } = natives;
  const NETWORK = Symbol('network'); // a Response init's {type, url, redirected}
  const PEEK = Symbol('peek'); // a body's data, unconsumed
  const ADOPT = Symbol('adopt');
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const NULL_BODY = [101, 103, 204, 205, 304];
  const tag = (value) => Object.prototype.toString.call(value).slice(8, -1);

  // A body's data: {text} or {bytes} (a Uint8Array), each made from the other when asked.
  const textOf = (data) => data.text ?? (data.text = decodeUtf8(data.bytes));
  const bytesOf = (data) => data.bytes ?? (data.bytes = new Uint8Array(encodeUtf8(data.text)));
  const copy = (view) => new Uint8Array(view.buffer.slice(view.byteOffset,
    view.byteOffset + view.byteLength));

  // ---- Headers: names case-insensitive, iterated sorted and lower-cased ----
  function headerName(name) {
    const text = String(name);
    if (!TOKEN.test(text)) throw new TypeError(`Headers: invalid header name: "${text}"`);
    return text.toLowerCase();
  }
  function headerValue(value) {
    const text = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, '');
    if (/[\0\r\n]/.test(text)) throw new TypeError(`Headers: invalid header value: "${text}"`);
    return text;
  }
  class Headers {
    #map = new Map(); // name → [values]
    constructor(init = undefined) {
      if (init === undefined || init === null) return;
      if (init instanceof Headers) {
        for (const [name, values] of init.#map) this.#map.set(name, [...values]);
      } else if (typeof init !== 'object' && typeof init !== 'function') {
        throw new TypeError('Headers: expected an object, a list of [name, value] pairs or Headers');
      } else if (typeof init[Symbol.iterator] === 'function') {
        for (const pair of init) {
          const entry = typeof pair === 'string' ? [] : [...pair];
          if (entry.length !== 2) throw new TypeError('Headers: each header must be a [name, value] pair');
          this.append(entry[0], entry[1]);
        }
      } else {
        for (const name of Object.keys(init)) this.append(name, init[name]);
      }
    }
    append(name, value) {
      const [key, text] = [headerName(name), headerValue(value)];
      const values = this.#map.get(key);
      if (values) values.push(text); else this.#map.set(key, [text]);
    }
    set(name, value) { this.#map.set(headerName(name), [headerValue(value)]); }
    get(name) { return this.#map.get(headerName(name))?.join(', ') ?? null; }
    has(name) { return this.#map.has(headerName(name)); }
    delete(name) { this.#map.delete(headerName(name)); }
    getSetCookie() { return [...(this.#map.get('set-cookie') ?? [])]; }
    * entries() {
      for (const name of [...this.#map.keys()].sort()) {
        const values = this.#map.get(name);
        if (!values) continue;
        if (name === 'set-cookie') for (const value of values) yield [name, value];
        else yield [name, values.join(', ')];
      }
    }
    * keys() { for (const [name] of this.entries()) yield name; }
    * values() { for (const [, value] of this.entries()) yield value; }
    forEach(callback, thisArg = undefined) {
      for (const [name, value] of this.entries()) callback.call(thisArg, value, name, this);
    }
    [Symbol.iterator]() { return this.entries(); }
    get [Symbol.toStringTag]() { return 'Headers'; }
  }

  // ---- Blob: bytes and a type, in memory ----
  const blobs = new WeakMap();
  function partBytes(part) {
    if (part instanceof Blob) return blobs.get(part);
    if (part instanceof ArrayBuffer) return new Uint8Array(part.slice(0));
    if (ArrayBuffer.isView(part)) return copy(part);
    return new Uint8Array(encodeUtf8(String(part)));
  }
  class Blob {
    #type;
    constructor(parts = [], options = {}) {
      const chunks = [...parts].map(partBytes);
      const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const chunk of chunks) { bytes.set(chunk, at); at += chunk.length; }
      blobs.set(this, bytes);
      const type = String(options?.type ?? '');
      this.#type = /^[\x20-\x7e]*$/.test(type) ? type.toLowerCase() : '';
    }
    get size() { return blobs.get(this).length; }
    get type() { return this.#type; }
    async arrayBuffer() { return blobs.get(this).slice().buffer; }
    async bytes() { return blobs.get(this).slice(); }
    async text() { return decodeUtf8(blobs.get(this)); }
    slice(start = 0, end = undefined, type = '') {
      return new Blob([blobs.get(this).slice(start, end)], { type });
    }
    get [Symbol.toStringTag]() { return 'Blob'; }
  }

  // What fetch sends for a body, and the content type it implies.
  function extract(body) {
    if (body === undefined || body === null) return [null, null];
    if (typeof body === 'string') return [{ text: body }, 'text/plain;charset=UTF-8'];
    if (body instanceof URLSearchParams || tag(body) === 'URLSearchParams') {
      return [{ text: String(body) }, 'application/x-www-form-urlencoded;charset=UTF-8'];
    }
    if (body instanceof Blob) return [{ bytes: blobs.get(body) }, body.type || null];
    if (body instanceof ArrayBuffer) return [{ bytes: new Uint8Array(body.slice(0)) }, null];
    if (ArrayBuffer.isView(body)) return [{ bytes: copy(body) }, null];
    // Anything else is its string, as in fetch (an object is "[object Object]", not JSON).
    return [{ text: String(body) }, 'text/plain;charset=UTF-8'];
  }

  // ---- the body of a Request or Response: read once, whole ----
  class Body {
    #data; #used = false; #stream = null;
    constructor(data) { this.#data = data; }
    get bodyUsed() { return this.#used; }
    // A stand-in for a ReadableStream: one chunk, by getReader().read() or for await.
    get body() {
      if (this.#data === null) return null;
      if (this.#stream) return this.#stream;
      let done = false;
      const read = async () => {
        if (done) return { done: true, value: undefined };
        done = true;
        return { done: false, value: bytesOf(this.#take()).slice() };
      };
      const reader = { read, releaseLock() {}, cancel: async () => { done = true; },
        closed: Promise.resolve() };
      this.#stream = { locked: false, getReader: () => reader, cancel: reader.cancel,
        [Symbol.asyncIterator]: () => ({ next: read, return: async () => ({ done: true }) }) };
      return this.#stream;
    }
    #take() {
      if (this.#used) throw new TypeError('Body is unusable: Body has already been read');
      this.#used = true;
      return this.#data;
    }
    [PEEK]() {
      if (this.#used) throw new TypeError('Body has already been consumed.');
      return this.#data;
    }
    [ADOPT](data) { this.#data = data; }
    async arrayBuffer() {
      const data = this.#take();
      return data ? bytesOf(data).slice().buffer : new ArrayBuffer(0);
    }
    async bytes() { return new Uint8Array(await this.arrayBuffer()); }
    async text() {
      const data = this.#take();
      return data ? textOf(data) : '';
    }
    async json() { return jsonParse(await this.text()); }
    async blob() {
      const type = this.headers.get('content-type') ?? '';
      return new Blob([await this.arrayBuffer()], { type });
    }
    async formData() { throw new TypeError('formData() is not supported in this sandbox'); }
  }

  // ---- Request ----
  const METHODS = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'];
  const REDIRECTS = ['follow', 'manual', 'error'];
  class Request extends Body {
    #method; #url; #headers; #redirect; #signal;
    constructor(input, init = {}) {
      const options = init ?? {};
      const from = input instanceof Request ? input : null;
      let url = from?.url;
      if (!from) {
        try {
          url = new URL(String(input)).href;
        } catch (_) {
          throw new TypeError(`Failed to parse URL from ${String(input)}`);
        }
      }
      let method = options.method === undefined ? from?.method ?? 'GET' : String(options.method);
      if (!TOKEN.test(method)) throw new TypeError(`'${method}' is not a valid HTTP method.`);
      const upper = method.toUpperCase();
      if (['CONNECT', 'TRACE', 'TRACK'].includes(upper)) {
        throw new TypeError(`'${method}' HTTP method is unsupported.`);
      }
      if (METHODS.includes(upper)) method = upper;
      const headers = new Headers(options.headers === undefined ? from?.headers : options.headers);
      let data = null;
      if (options.body !== undefined && options.body !== null) {
        if (method === 'GET' || method === 'HEAD') {
          throw new TypeError('Request with GET/HEAD method cannot have body.');
        }
        const [extracted, type] = extract(options.body);
        data = extracted;
        if (type !== null && !headers.has('content-type')) headers.set('content-type', type);
      } else if (from && options.body === undefined) {
        data = from[PEEK]();
      }
      const redirect = String(options.redirect ?? from?.redirect ?? 'follow');
      if (!REDIRECTS.includes(redirect)) {
        throw new TypeError(`Request: redirect must be "follow", "manual" or "error", not "${redirect}"`);
      }
      super(data);
      this.#method = method;
      this.#url = url;
      this.#headers = headers;
      this.#redirect = redirect;
      this.#signal = options.signal ?? from?.signal ?? new AbortController().signal;
    }
    get method() { return this.#method; }
    get url() { return this.#url; }
    get headers() { return this.#headers; }
    get redirect() { return this.#redirect; }
    get signal() { return this.#signal; }
    clone() {
      const clone = new Request(this.#url, { method: this.#method, headers: this.#headers,
        redirect: this.#redirect, signal: this.#signal });
      clone[ADOPT](this[PEEK]());
      return clone;
    }
    get [Symbol.toStringTag]() { return 'Request'; }
  }
  for (const [name, value] of Object.entries({ cache: 'default', credentials: 'same-origin',
    destination: '', integrity: '', keepalive: false, mode: 'cors', referrer: 'about:client',
    referrerPolicy: '', duplex: 'half' })) {
    Object.defineProperty(Request.prototype, name, { get: () => value, configurable: true });
  }

  // ---- Response ----
  class Response extends Body {
    #status; #statusText; #headers; #type; #url; #redirected;
    constructor(body = null, init = {}) {
      const options = init ?? {};
      const network = options[NETWORK];
      const status = options.status === undefined ? 200 : Number(options.status);
      if (!network && !(Number.isInteger(status) && status >= 200 && status <= 599)) {
        throw new RangeError('init["status"] must be in the range of 200 to 599, inclusive.');
      }
      const headers = new Headers(options.headers);
      const [data, type] = network ? [body, null] : extract(body);
      if (!network && data !== null && NULL_BODY.includes(status)) {
        throw new TypeError(`Response constructor: Invalid response status code ${status}`);
      }
      if (type !== null && !headers.has('content-type')) headers.set('content-type', type);
      super(data);
      this.#status = status;
      this.#statusText = String(options.statusText ?? '');
      this.#headers = headers;
      this.#type = network?.type ?? 'default';
      this.#url = network?.url ?? '';
      this.#redirected = network?.redirected ?? false;
    }
    get status() { return this.#status; }
    get ok() { return this.#status >= 200 && this.#status <= 299; }
    get statusText() { return this.#statusText; }
    get headers() { return this.#headers; }
    get type() { return this.#type; }
    get url() { return this.#url; }
    get redirected() { return this.#redirected; }
    clone() {
      return new Response(this[PEEK](), { status: this.#status, statusText: this.#statusText,
        headers: this.#headers,
        [NETWORK]: { type: this.#type, url: this.#url, redirected: this.#redirected } });
    }
    static error() {
      return new Response(null, { status: 0, [NETWORK]: { type: 'error' } });
    }
    static json(data, init = {}) {
      const text = jsonStringify(data);
      if (text === undefined) throw new TypeError('Value is not JSON serializable');
      const headers = new Headers(init?.headers);
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
      return new Response(text, { ...init, headers });
    }
    static redirect(url, status = 302) {
      if (![301, 302, 303, 307, 308].includes(status)) {
        throw new RangeError(`Invalid status code ${status}`);
      }
      return new Response(null, { status, headers: { location: new URL(String(url)).href } });
    }
    get [Symbol.toStringTag]() { return 'Response'; }
  }

  // ---- AbortController, AbortSignal: a timeout signal turns aborted when read after its ----
  // deadline (no timer keeps a script alive), and fetch passes what is left to the broker.
  const CREATE = Symbol('create');
  let abortSignal, deadlineOf;
  class AbortSignal {
    #aborted = false; #reason = undefined; #listeners = []; #deadline = Infinity;
    onabort = null;
    constructor(token) {
      if (token !== CREATE) throw new TypeError('Illegal constructor');
    }
    get aborted() {
      if (!this.#aborted && Date.now() >= this.#deadline) {
        abortSignal(this, new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
      }
      return this.#aborted;
    }
    get reason() { return this.aborted ? this.#reason : undefined; }
    throwIfAborted() { if (this.aborted) throw this.#reason; }
    addEventListener(type, listener) {
      if (type === 'abort' && listener) this.#listeners.push(listener);
    }
    removeEventListener(type, listener) {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    }
    static abort(reason = new DOMException('This operation was aborted', 'AbortError')) {
      const signal = new AbortSignal(CREATE);
      abortSignal(signal, reason);
      return signal;
    }
    static timeout(ms) {
      const signal = new AbortSignal(CREATE);
      signal.#deadline = Date.now() + Number(ms);
      return signal;
    }
    static any(signals) {
      const signal = new AbortSignal(CREATE);
      for (const other of signals) {
        if (other.aborted) { abortSignal(signal, other.reason); break; }
        signal.#deadline = Math.min(signal.#deadline, deadlineOf(other));
        other.addEventListener('abort', () => abortSignal(signal, other.reason));
      }
      return signal;
    }
    static {
      abortSignal = (signal, reason) => {
        if (signal.#aborted) return;
        signal.#aborted = true;
        signal.#reason = reason === undefined
          ? new DOMException('This operation was aborted', 'AbortError') : reason;
        const event = { type: 'abort', target: signal };
        if (typeof signal.onabort === 'function') signal.onabort(event);
        for (const listener of signal.#listeners) {
          if (typeof listener === 'function') listener.call(signal, event);
          else listener?.handleEvent?.(event);
        }
      };
      deadlineOf = (signal) => (signal instanceof AbortSignal ? signal.#deadline : Infinity);
    }
    get [Symbol.toStringTag]() { return 'AbortSignal'; }
  }
  class AbortController {
    #signal = new AbortSignal(CREATE);
    get signal() { return this.#signal; }
    abort(reason = undefined) { abortSignal(this.#signal, reason); }
  }

  // ---- fetch: one brokered request, redirects followed (and checked) by the server ----
  function failed(message, code = undefined) {
    const cause = new Error(message);
    if (code) {
      cause.name = 'NetworkDeniedError';
      cause.code = code;
    }
    return new TypeError('fetch failed', { cause });
  }
  async function fetch(input, init = undefined) {
    const request = new Request(input, init);
    await undefined; // an abort() right after fetch() still counts
    const signal = request.signal;
    if (signal?.aborted) throw signal.reason;
    const left = deadlineOf(signal) - Date.now();
    // No prototype: a header named `constructor` or `__proto__` is a header like any other.
    const headers = Object.create(null);
    for (const [name, value] of request.headers) {
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    headers.accept ??= '*/*';
    const message = {
      url: request.url.split('#')[0], method: request.method, headers, raw: true,
      follow: request.redirect === 'follow',
      timeout: left === Infinity ? null : Math.max(left, 1) / 1000,
    };
    const data = request[PEEK]();
    if (data !== null && data.bytes === undefined) message.body = data.text;
    else if (data !== null) message.body_base64 = data.bytes.toBase64();
    const answer = jsonParse(broker(jsonStringify(message)));
    if (answer.error) {
      if (signal?.aborted) throw signal.reason;
      throw failed(answer.error.message, answer.error.denied ? 'NETWORK_DENIED' : undefined);
    }
    const { status, status_text: statusText, url, redirected } = answer.ok;
    const response = new Response(
      request.method === 'HEAD' || NULL_BODY.includes(status) ? null
        : { bytes: Uint8Array.fromBase64(answer.ok.body_base64) },
      { status, statusText, headers: answer.ok.headers,
        [NETWORK]: { type: 'basic', url: new URL(url).href.split('#')[0], redirected } });
    if (request.redirect === 'error' && status >= 300 && status < 400 &&
        response.headers.has('location')) {
      throw failed('unexpected redirect');
    }
    return response;
  }

  return { fetch, Request, Response, Headers, Blob, AbortController, AbortSignal };
})
