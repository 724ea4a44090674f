class Money {
  #cents;
  constructor(cents) { this.#cents = cents; }
  static of(text) { return new Money(Math.round(parseFloat(text) * 100)); }
  plus(other) { return new Money(this.#cents + other.#cents); }
  toString() { return (this.#cents / 100).toFixed(2); }
}

function main({ lines }) {
  const re = /(?<key>\w+)=(?<value>[^;]+)/g;
  const pairs = Object.fromEntries([...lines.matchAll(re)].map(m => [m.groups.key, m.groups.value]));
  const counts = new Map();
  for (const ch of 'mississippi') counts.set(ch, (counts.get(ch) ?? 0) + 1);
  const { a, ...rest } = { a: 1, b: 2, c: 3 };
  return {
    pairs,
    total: String(Money.of('1.10').plus(Money.of('2.25'))),
    counts: Object.fromEntries([...counts].sort()),
    rest,
    at: [1, 2, 3].at(-1),
    flat: [[1, [2]], [3]].flat(Infinity),
    json: JSON.parse(JSON.stringify({ d: new Date(0) })).d,
    iso: new Date(Date.UTC(2024, 1, 29)).toISOString(),
    big: (2n ** 64n).toString(),
    optional: ({ x: { y: null } }).x?.y?.z ?? 'none',
  };
}
