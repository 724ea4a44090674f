function main({ amount }) {
  return {
    usd: new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(amount),
    cny: new Intl.NumberFormat('zh-CN', { style: 'currency', currency: 'CNY' }).format(amount),
    percent: new Intl.NumberFormat('en-US', { style: 'percent', maximumFractionDigits: 1 }).format(0.1234),
    compact: new Intl.NumberFormat('en-US', { notation: 'compact' }).format(1234567),
    compactZh: new Intl.NumberFormat('zh-CN', { notation: 'compact' }).format(1234567),
    grouped: amount.toLocaleString('en-US'),
    groupedZh: amount.toLocaleString('zh-CN', { maximumFractionDigits: 1 }),
    fixed: (0.5).toLocaleString('en-US', { minimumFractionDigits: 2 }),
    unit: new Intl.NumberFormat('en-US', { style: 'unit', unit: 'kilometer-per-hour' }).format(50),
  };
}
