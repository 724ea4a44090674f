import io
import pandas as pd

def main(csv_text):
    df = pd.read_csv(io.StringIO(csv_text))
    buffer = io.BytesIO()
    df.to_csv(buffer, index=False)
    back = pd.read_json(io.StringIO(df.to_json(orient="records")))
    return {
        "shape": list(df.shape),
        "bytes": buffer.getvalue().decode(),
        "json_roundtrip": back.equals(df),
        "markdown": df.to_markdown(index=False),
        "html_has_table": df.to_html(index=False).startswith("<table"),
        "records": df.to_dict(orient="records"),
    }
