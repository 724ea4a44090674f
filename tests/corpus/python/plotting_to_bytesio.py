import base64
import io

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

def main(values):
    df = pd.DataFrame({"x": range(len(values)), "y": values})
    ax = df.plot(x="x", y="y", kind="line", title="trend")
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png", dpi=50)
    plt.close("all")
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.bar(["a", "b"], values[:2])
    svg = io.StringIO()
    fig.savefig(svg, format="svg")
    png = buffer.getvalue()
    return {
        "png": png[:8] == b"\x89PNG\r\n\x1a\n",
        "png_b64_prefix": base64.b64encode(png[:3]).decode(),
        "svg": svg.getvalue().lstrip().startswith("<?xml"),
        "title": ax.get_title() == "",
    }
