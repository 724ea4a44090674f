function main({ words }) {
  const collator = new Intl.Collator('en', { sensitivity: 'base' });
  const numeric = new Intl.Collator('en', { numeric: true });
  const rules = new Intl.PluralRules('en-US');
  const ordinal = new Intl.PluralRules('en-US', { type: 'ordinal' });
  return {
    sorted: [...words].sort(collator.compare),
    files: ['file10', 'file2', 'file1'].sort(numeric.compare),
    same: collator.compare('Resume', 'resume') === 0,
    local: 'a'.localeCompare('B', 'en'),
    plural: [0, 1, 2].map(n => rules.select(n)),
    ordinal: [1, 2, 3, 4, 11, 22].map(n => ordinal.select(n)),
  };
}
