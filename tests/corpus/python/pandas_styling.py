import pandas as pd

def main(rows):
    df = pd.DataFrame(rows)
    html = df.style.format({"score": "{:.1f}"}).highlight_max(subset=["score"], color="yellow").hide(axis="index").to_html()
    return {"formatted": "90.0" in html, "highlighted": "background-color: yellow" in html, "has_table": "<table" in html}
