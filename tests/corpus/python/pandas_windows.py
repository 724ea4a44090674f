import pandas as pd

def main(values):
    s = pd.Series(values, index=pd.date_range("2024-01-01", periods=len(values), freq="D"))
    weekly = s.resample("W").sum()
    return {
        "rolling": s.rolling(3).mean().round(3).dropna().tolist(),
        "expanding": s.expanding().max().tolist(),
        "ewm": round(float(s.ewm(span=3).mean().iloc[-1]), 4),
        "shift": s.shift(1).fillna(0).tolist(),
        "change": s.pct_change().round(3).dropna().tolist(),
        "weekly": {k.strftime("%Y-%m-%d"): v for k, v in weekly.items()},
    }
