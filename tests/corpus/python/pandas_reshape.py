import pandas as pd

def main(rows):
    df = pd.DataFrame(rows)
    pivot = df.pivot_table(index="region", columns="quarter", values="sales", aggfunc="sum", fill_value=0)
    long = pivot.reset_index().melt(id_vars="region", var_name="quarter", value_name="sales")
    cross = pd.crosstab(df["region"], df["quarter"])
    stacked = df.set_index(["region", "quarter"])["sales"].groupby(level=[0, 1]).sum().unstack()
    return {
        "pivot": pivot.to_dict(),
        "long_rows": len(long),
        "cross": cross.values.tolist(),
        "stacked_q1": stacked["Q1"].to_dict(),
    }
