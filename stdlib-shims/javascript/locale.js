// The locale-aware part of the globals, installed once in each JavaScript zygote after the
// prelude. Evaluated as a function expression and called by src/zygote/javascript/locale.rs.
//
// Intl.Collator and String.prototype.localeCompare are ours in both zygotes. The rest of Intl
// (getCanonicalLocales, Locale, PluralRules, NumberFormat, DateTimeFormat) and the locale-aware
// toLocaleString of Number, BigInt and Date are FormatJS's, from the Intl bundle (intl.js):
// - the javascript-intl zygote evaluated that bundle before this runs (`loadIntl` is null);
// - the lean javascript zygote does not carry it (2.8 MB of code and data on the heap, paid at
//   every fork and exit): `loadIntl` evaluates it, in the child, the first time a run uses one
//   of those names. Until then each is a stand-in that loads the bundle and hands over to the
//   real one, so code that reaches Intl without naming it (the server routes code that names it
//   to the javascript-intl zygote) gets the same answers, only later.
(function installLocale(loadIntl) {
  'use strict';
  if (globalThis.Intl === undefined) globalThis.Intl = {};
  const intl = globalThis.Intl;

  // ---- Intl.Collator, which FormatJS does not polyfill: Unicode order, with the options ----
  // numeric (natural order of digit runs), sensitivity and ignorePunctuation. Locale-specific
  // tailorings (pinyin order for zh) are not known: strings compare by their code points.
  const compareText = (x, y) => {
    const [lx, ly] = [x.toLowerCase(), y.toLowerCase()];
    return lx === ly ? 0 : lx < ly ? -1 : 1;
  };
  const compareNumeric = (x, y) => {
    const [xs, ys] = [x.split(/(\d+)/), y.split(/(\d+)/)];
    for (let i = 0; i < Math.min(xs.length, ys.length); i++) {
      const order = i % 2 === 1 ? Math.sign(Number(xs[i]) - Number(ys[i]))
        : compareText(xs[i], ys[i]);
      if (order !== 0) return order;
    }
    return Math.sign(xs.length - ys.length);
  };
  class Collator {
    constructor(locales, options = {}) {
      const [locale] = Intl.getCanonicalLocales(locales ?? []);
      const usage = options.usage ?? 'sort';
      const sensitivity = options.sensitivity ?? 'variant';
      if (!['base', 'accent', 'case', 'variant'].includes(sensitivity)) {
        throw new RangeError(`Value ${sensitivity} out of range for Intl.Collator options property sensitivity`);
      }
      this._options = {
        locale: locale ?? 'en-US', usage, sensitivity,
        ignorePunctuation: Boolean(options.ignorePunctuation), collation: 'default',
        numeric: Boolean(options.numeric), caseFirst: options.caseFirst ?? 'false',
      };
      Object.defineProperty(this, 'compare', { value: (a, b) => this._compare(String(a), String(b)) });
    }
    _key(s) {
      const { sensitivity, ignorePunctuation } = this._options;
      let key = s.normalize('NFD');
      if (ignorePunctuation) key = key.replace(/[\p{P}\s]/gu, '');
      if (sensitivity === 'base' || sensitivity === 'case') key = key.replace(/\p{M}/gu, '');
      if (sensitivity === 'base' || sensitivity === 'accent') key = key.toLowerCase();
      return key;
    }
    _compare(a, b) {
      const [x, y] = [this._key(a), this._key(b)];
      if (x === y) return 0;
      const primary = this._options.numeric ? compareNumeric(x, y) : compareText(x, y);
      if (primary !== 0 || this._options.sensitivity === 'base') return primary;
      // Same but for case: lower case first, as ICU's default.
      return x < y ? 1 : -1;
    }
    resolvedOptions() { return { ...this._options }; }
    static supportedLocalesOf(locales) { return Intl.getCanonicalLocales(locales ?? []); }
  }
  Object.defineProperty(intl, 'Collator', { value: Collator, writable: true, configurable: true });
  const localeCompare = String.prototype.localeCompare;
  Object.defineProperty(String.prototype, 'localeCompare', {
    value: function (that, locales, options) {
      if (locales === undefined && options === undefined) return localeCompare.call(this, that);
      return new Collator(locales, options).compare(this, that);
    },
    writable: true, configurable: true,
  });

  if (loadIntl === null) return;

  // ---- the lean zygote: stand-ins that load the Intl bundle on first use ----
  // What the bundle installs; tests/javascript_intl.rs checks that it installs nothing else.
  const MEMBERS = ['getCanonicalLocales', 'Locale', 'PluralRules', 'NumberFormat',
    'DateTimeFormat'];
  const METHODS = [[Number.prototype, 'toLocaleString'], [BigInt.prototype, 'toLocaleString'],
    [Date.prototype, 'toLocaleString'], [Date.prototype, 'toLocaleDateString'],
    [Date.prototype, 'toLocaleTimeString']];
  // Every stand-in, with the property it stands in; a method's stand-in's real function.
  const standIns = [];
  const real = new Map();
  let state = 'lean'; // then 'loading', 'loaded', or the error that stopped the load
  const quiet = { writable: true, configurable: true, enumerable: false };

  function load() {
    if (state === 'loaded' || state === 'loading') return;
    if (state !== 'lean') throw state;
    // The bundle expects no Intl member yet. What a run put in a stand-in's place before this
    // is put back after (the bundle defines its own over it).
    const replaced = [];
    for (const [target, name, standIn] of standIns) {
      const now = Object.getOwnPropertyDescriptor(target, name);
      const ours = now !== undefined && (now.get === standIn || now.value === standIn);
      if (!ours && now !== undefined) replaced.push([target, name, now]);
      if (ours && target === intl) delete intl[name];
    }
    state = 'loading';
    try {
      loadIntl();
    } catch (error) {
      state = error;
      throw error;
    }
    state = 'loaded';
    for (const [target, name, standIn] of standIns) {
      if (target !== intl && target[name] !== standIn) real.set(standIn, target[name]);
    }
    for (const [target, name, descriptor] of replaced) {
      Object.defineProperty(target, name, descriptor);
    }
  }

  for (const name of MEMBERS) {
    // An accessor, so that `new Intl.NumberFormat`, `instanceof` and the static methods reach
    // the real constructor.
    const get = () => {
      load();
      return intl[name];
    };
    Object.defineProperty(intl, name, {
      get,
      set(value) { Object.defineProperty(intl, name, { value, ...quiet }); },
      configurable: true,
      enumerable: false,
    });
    standIns.push([intl, name, get]);
  }
  for (const [target, name] of METHODS) {
    const native = target[name];
    // A function, so that reading the method loads nothing: a call loads the bundle and calls
    // the bundle's own (the engine's, should the bundle have none).
    const standIn = {
      [name](...args) {
        load();
        return (real.get(standIn) ?? native).apply(this, args);
      },
    }[name];
    Object.defineProperty(target, name, { value: standIn, ...quiet });
    standIns.push([target, name, standIn]);
  }
})
