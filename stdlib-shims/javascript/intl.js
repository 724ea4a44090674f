// Intl for QuickJS, which has none: FormatJS's spec-compliant polyfills (Intl.getCanonicalLocales,
// Locale, PluralRules, NumberFormat, DateTimeFormat, and the locale-aware toLocaleString of
// Number, BigInt and Date), with the locale data of English and Chinese and the time zones in
// common use. Bundled by build.rs like the modules; evaluated once in the javascript-intl zygote,
// and in a child of the lean javascript zygote when its run first reaches Intl (locale.js).
// Intl.Collator, which FormatJS does not provide, is locale.js's.
globalThis.Intl = globalThis.Intl || {};
require('@formatjs/intl-getcanonicallocales/polyfill-force.js');
require('@formatjs/intl-locale/polyfill-force.js');
require('@formatjs/intl-pluralrules/polyfill-force.js');
require('@formatjs/intl-pluralrules/locale-data/en.js');
require('@formatjs/intl-pluralrules/locale-data/zh.js');
require('@formatjs/intl-numberformat/polyfill-force.js');
require('@formatjs/intl-numberformat/locale-data/en.js');
require('@formatjs/intl-numberformat/locale-data/zh.js');
require('@formatjs/intl-datetimeformat/polyfill-force.js');
require('@formatjs/intl-datetimeformat/locale-data/en.js');
require('@formatjs/intl-datetimeformat/locale-data/zh.js');
// Time zones: every zone of Asia and the major ones elsewhere. The whole of FormatJS's "golden"
// set unpacks to ~22 MB in every zygote and child; another zone is a RangeError, as in an
// engine built without it.
const addTZData = Intl.DateTimeFormat.__addTZData;
const ZONES_ELSEWHERE = new Set([
  'Europe/London', 'Europe/Dublin', 'Europe/Lisbon', 'Europe/Paris', 'Europe/Berlin',
  'Europe/Madrid', 'Europe/Rome', 'Europe/Amsterdam', 'Europe/Brussels', 'Europe/Zurich',
  'Europe/Vienna', 'Europe/Stockholm', 'Europe/Oslo', 'Europe/Copenhagen', 'Europe/Helsinki',
  'Europe/Warsaw', 'Europe/Prague', 'Europe/Athens', 'Europe/Istanbul', 'Europe/Moscow',
  'America/New_York', 'America/Chicago', 'America/Denver', 'America/Phoenix',
  'America/Los_Angeles', 'America/Anchorage', 'America/Toronto', 'America/Vancouver',
  'America/Mexico_City', 'America/Sao_Paulo', 'America/Buenos_Aires', 'America/Bogota',
  'America/Lima', 'America/Santiago', 'Pacific/Honolulu', 'Pacific/Auckland',
  'Australia/Sydney', 'Australia/Melbourne', 'Australia/Brisbane', 'Australia/Perth',
  'Australia/Adelaide', 'Africa/Cairo', 'Africa/Johannesburg', 'Africa/Lagos',
  'Africa/Nairobi', 'Africa/Casablanca',
]);
Intl.DateTimeFormat.__addTZData = (data) => addTZData({
  ...data,
  zones: data.zones.filter((zone) => {
    const name = zone.slice(0, zone.indexOf('|'));
    return name.startsWith('Asia/') || ZONES_ELSEWHERE.has(name);
  }),
});
require('@formatjs/intl-datetimeformat/add-golden-tz.js');
Intl.DateTimeFormat.__addTZData = addTZData;

// A Date's toLocaleString, toLocaleDateString and toLocaleTimeString, and a number's
// toLocaleString, build a formatter at every call, as the spec describes them: 4-7 ms in QuickJS
// for a DateTimeFormat, at every turn of a loop over dates. The formatter depends only on the
// locales, the options and the defaults, and none of it leaves the call, so it is kept per such
// key; a key is only made of plain values (anything else is FormatJS's own call, every time).
// The javascript-intl zygote's warm-up fills it for every child.
const DateTimeFormat = Intl.DateTimeFormat;
const NumberFormat = Intl.NumberFormat;
const dateOptionsFor = (options, required, defaults) => {
  // ToDateTimeOptions of ECMA-402 (FormatJS's is not exported), on options already known plain.
  const out = Object.create(options ?? null);
  const has = (names) => names.some((name) => out[name] !== undefined);
  let needDefaults = true;
  if ((required === 'date' || required === 'any') && has(['weekday', 'year', 'month', 'day'])) needDefaults = false;
  if ((required === 'time' || required === 'any')
    && has(['dayPeriod', 'hour', 'minute', 'second', 'fractionalSecondDigits'])) needDefaults = false;
  if (out.dateStyle !== undefined || out.timeStyle !== undefined) needDefaults = false;
  if (required === 'date' && out.timeStyle) throw new TypeError('Intl.DateTimeFormat date was required but timeStyle was included');
  if (required === 'time' && out.dateStyle) throw new TypeError('Intl.DateTimeFormat time was required but dateStyle was included');
  if (needDefaults && (defaults === 'date' || defaults === 'all')) for (const name of ['year', 'month', 'day']) out[name] = 'numeric';
  if (needDefaults && (defaults === 'time' || defaults === 'all')) for (const name of ['hour', 'minute', 'second']) out[name] = 'numeric';
  return out;
};
// The key of (locales, options), or undefined when either is more than plain values: a getter
// or a proxy must be read at every call, as the spec reads it.
const keyOf = (locales, options, defaults) => {
  const parts = [defaults];
  if (typeof locales === 'string') parts.push(locales);
  else if (Array.isArray(locales) && Object.getPrototypeOf(locales) === Array.prototype
    && locales.every((l) => typeof l === 'string')) parts.push(locales.length, ...locales);
  else if (locales !== undefined) return undefined;
  if (options === undefined) return JSON.stringify(parts);
  if (options === null || typeof options !== 'object'
    || Object.getPrototypeOf(options) !== Object.prototype) return undefined;
  for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(options))) {
    if (!('value' in d)) return undefined;
    const kind = typeof d.value;
    if (kind === 'undefined') continue; // read as absent, like no property
    if (d.value !== null && kind !== 'string' && kind !== 'number' && kind !== 'boolean') return undefined;
    parts.push(name, kind, String(d.value));
  }
  return JSON.stringify(parts);
};
const kept = new Map();
const keep = (key, make) => {
  let formatter = kept.get(key);
  if (formatter === undefined) {
    formatter = make();
    if (kept.size < 256) kept.set(key, formatter);
  }
  return formatter;
};
for (const [name, required, defaults] of [['toLocaleString', 'any', 'all'],
  ['toLocaleDateString', 'date', 'date'], ['toLocaleTimeString', 'time', 'time']]) {
  const own = Date.prototype[name];
  const method = {
    [name](locales, options) {
      const key = keyOf(locales, options, [name, DateTimeFormat.__defaultLocale,
        DateTimeFormat.__defaultTimeZone].join());
      if (key === undefined) return own.call(this, locales, options);
      let formatter;
      try {
        formatter = keep(key, () => new DateTimeFormat(locales, dateOptionsFor(options, required, defaults)));
        return formatter.format(this);
      } catch {
        return 'Invalid Date'; // as FormatJS's own answers any failure
      }
    },
  }[name];
  Object.defineProperty(Date.prototype, name, { value: method, writable: true, configurable: true });
}
for (const prototype of [Number.prototype, BigInt.prototype]) {
  const own = prototype.toLocaleString;
  const method = {
    toLocaleString(locales, options) {
      const key = keyOf(locales, options, ['number', NumberFormat.__defaultLocale].join());
      if (key === undefined) return own.call(this, locales, options);
      return keep(key, () => new NumberFormat(locales, options)).format(this);
    },
  }.toLocaleString;
  Object.defineProperty(prototype, 'toLocaleString', { value: method, writable: true, configurable: true });
}

// The first formatter of each kind unpacks its data (the time zones' most of all: ~200 ms). The
// javascript-intl zygote calls this once, for every child; a run of the lean zygote that loads
// this bundle on first use (locale.js) unpacks only what it formats.
module.exports.warmUp = function warmUp() {
  for (const locale of ['en-US', 'zh-CN']) {
    new Intl.NumberFormat(locale, { style: 'currency', currency: 'USD' }).format(1234.5);
    new Intl.NumberFormat(locale, { style: 'percent' }).format(0.5);
    new Intl.DateTimeFormat(locale, {
      dateStyle: 'full', timeStyle: 'long', timeZone: 'Asia/Shanghai',
    }).format(0);
    new Intl.DateTimeFormat(locale).format(0);
    new Intl.PluralRules(locale).select(1);
    (1234.5).toLocaleString(locale);
    new Date(0).toLocaleString(locale, { timeZone: 'UTC' });
    // What code nodes ask most (kept for every child): dates in Beijing time, numbers.
    for (const options of [undefined, { timeZone: 'Asia/Shanghai' }, { timeZone: 'UTC' }]) {
      new Date(0).toLocaleString(locale, options);
      new Date(0).toLocaleDateString(locale, options);
      new Date(0).toLocaleTimeString(locale, options);
    }
  }
};
