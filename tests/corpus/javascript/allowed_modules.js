const _ = require('lodash');
const dayjs = require('dayjs');
const CryptoJS = require('crypto-js');
const qs = require('qs');
const { v4: uuidv4, validate } = require('uuid');

function main({ orders }) {
  const byUser = _.groupBy(orders, 'user');
  return {
    totals: _.mapValues(byUser, list => _.sumBy(list, 'amount')),
    top: _.maxBy(orders, 'amount').id,
    chunks: _.chunk(_.map(orders, 'id'), 2),
    template: _.template('Hi <%= name %>!')({ name: 'Ann' }),
    due: dayjs('2024-01-31').add(1, 'month').format('YYYY-MM-DD'),
    diff: dayjs('2024-03-01').diff(dayjs('2024-02-01'), 'day'),
    sha256: CryptoJS.SHA256('hello').toString(),
    hmac: CryptoJS.HmacSHA256('data', 'key').toString().slice(0, 16),
    b64: CryptoJS.enc.Base64.stringify(CryptoJS.enc.Utf8.parse('沙箱')),
    query: qs.stringify({ a: [1, 2], b: { c: 'd' } }, { encode: false }),
    parsed: qs.parse('x[y]=1&x[z]=2'),
    uuid: validate(uuidv4()),
  };
}
