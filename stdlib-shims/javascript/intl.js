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
  }
};
