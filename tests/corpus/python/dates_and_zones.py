import calendar
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

def main(stamp):
    t = datetime.fromisoformat(stamp)
    return {
        "shanghai": t.astimezone(ZoneInfo("Asia/Shanghai")).isoformat(),
        "new_york": t.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M %Z"),
        "week_later": (t + timedelta(days=7)).date().isoformat(),
        "weekday": calendar.day_name[t.weekday()],
        "month_days": calendar.monthrange(t.year, 2)[1],
        "parsed": datetime.strptime("2024/03/05 07:08", "%Y/%m/%d %H:%M").replace(tzinfo=timezone.utc).timestamp(),
    }
