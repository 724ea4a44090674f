function main({ millis }) {
  const d = new Date(millis);
  return {
    medium: new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeZone: 'UTC' }).format(d),
    full: new Intl.DateTimeFormat('en-US', { dateStyle: 'full', timeZone: 'UTC' }).format(d),
    zh: new Intl.DateTimeFormat('zh-CN', { dateStyle: 'long', timeZone: 'Asia/Shanghai' }).format(d),
    zhWeekday: new Intl.DateTimeFormat('zh-CN', { weekday: 'long', timeZone: 'Asia/Shanghai' }).format(d),
    parts: new Intl.DateTimeFormat('en-US', { year: 'numeric', month: '2-digit', day: '2-digit', timeZone: 'America/New_York' })
      .formatToParts(d).filter(p => p.type !== 'literal').map(p => p.type + '=' + p.value),
    dateString: d.toLocaleDateString('en-US', { timeZone: 'UTC' }),
    shanghaiHour: d.toLocaleString('en-US', { hour: 'numeric', hour12: false, timeZone: 'Asia/Shanghai' }),
    zone: new Intl.DateTimeFormat('en-US', { timeZone: 'Asia/Tokyo' }).resolvedOptions().timeZone,
  };
}
