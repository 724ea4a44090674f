const { URL, URLSearchParams } = require('url');
const url = require('url');

function main({ link }) {
  const u = new URL(link);
  u.searchParams.append('page', '2');
  const params = new URLSearchParams({ q: 'sandlot 沙箱', tag: 'a&b' });
  const legacy = url.parse(link, true);
  return {
    host: u.host,
    path: u.pathname,
    q: u.searchParams.get('q'),
    href: u.href,
    params: params.toString(),
    legacyQuery: legacy.query,
    formatted: url.format({ protocol: 'https', hostname: 'example.com', pathname: '/x', query: { a: 1 } }),
    relative: new URL('../b?c=1', 'https://example.com/a/b/c').href,
  };
}
